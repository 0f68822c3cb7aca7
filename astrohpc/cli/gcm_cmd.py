"""`astrohpc gcm ...` (being written)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("gcm", help="(not yet available)")
