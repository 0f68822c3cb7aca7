"""`astrohpc config show FILE [KEY=VALUE ...]`: print the resolved configuration."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("config", help="inspect configuration files")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="print the resolved config (extends and overrides applied)")
    show.add_argument("file", help="YAML config file")
    show.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. planet.instellation_W_m2=1200")
    show.add_argument("--hash", action="store_true", help="also print the config hash")
    show.set_defaults(func=_show)


def _show(args: argparse.Namespace) -> int:
    from astrohpc.config import config_hash, load_config, to_yaml

    cfg = load_config(args.file, args.overrides)
    print(to_yaml(cfg), end="")
    if args.hash:
        print(f"# config_hash: {config_hash(cfg)}")
    return 0
