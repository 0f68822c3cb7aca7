"""`astrohpc data ...` (being written)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("data", help="(not yet available)")
