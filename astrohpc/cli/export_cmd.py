"""`astrohpc export upgrade OLD.pt --cube CUBE`: an export of an older format made self-contained."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("export", help="exported surrogates: upgrade an older export to a self-contained one")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    upgrade = verbs.add_parser("upgrade", help="rewrite an export of format 1 (which needed its training cube) with "
                                               "the cube's layout inside, so that loading needs no cube")
    upgrade.add_argument("export", help="the older export (RUN_DIR/export/best.pt)")
    upgrade.add_argument("--cube", required=True, help="its training cube (or one with the same channels and grid)")
    upgrade.add_argument("-o", "--output", default=None, help="where to write (default: EXPORT with .v2 before .pt)")
    upgrade.set_defaults(func=_upgrade)


def _upgrade(args: argparse.Namespace) -> int:
    from astrohpc.train.export import upgrade_export

    print(f"wrote {upgrade_export(args.export, args.cube, args.output)}")
    return 0
