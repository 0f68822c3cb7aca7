"""The `astrohpc` command: a thin shell that parses, calls one library function, and prints.

Each command group lives in its own module with a `register(subparsers)` function; library
errors (AstrohpcError) become one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Sequence

from astrohpc import __version__
from astrohpc.cli import (
    config_cmd,
    data_cmd,
    doctor_cmd,
    export_cmd,
    gcm_cmd,
    parity_cmd,
    predict_cmd,
    report_cmd,
    slurm_cmd,
    study_cmd,
    submit_cmd,
    train_cmd,
)
from astrohpc.errors import AstrohpcError

COMMAND_MODULES = (doctor_cmd, config_cmd, slurm_cmd, gcm_cmd, data_cmd, train_cmd, submit_cmd, study_cmd, report_cmd,
                   parity_cmd, export_cmd, predict_cmd)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="astrohpc", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"astrohpc {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMAND_MODULES:
        module.register(sub)
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every subcommand without a description its one-line help, so that `astrohpc X --help`
    says what X does, not only its usage."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if not child.description and helps.get(name):
                    child.description = helps[name][0].upper() + helps[name][1:] + "."
                _describe(child)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) >= 2 and argv[0] == "report" and argv[1] not in report_cmd.VERBS and not argv[1].startswith("-"):
        argv.insert(1, "run")  # `astrohpc report DIR` is `astrohpc report run DIR`
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may follow options (`submit train CFG --dry-run a.b=1`): argparse leaves them over
    stray = [a for a in extra if not re.fullmatch(r"[A-Za-z_][\w.]*=.*", a)]
    if stray or (extra and not isinstance(getattr(args, "overrides", None), list)):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except AstrohpcError as exc:
        print(f"astrohpc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("astrohpc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
