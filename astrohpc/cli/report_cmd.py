"""`astrohpc report DIR` (= `report run DIR`): REPORT.md of a whole run folder; `astrohpc report sweep
SWEEP_DIR`: tables and plots from what one sweep wrote."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="turn run folders into a Markdown report with tables and plots")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    sweep = verbs.add_parser("sweep", help="report on a GCM sweep folder (manifest.json, datacube)")
    sweep.add_argument("sweep_dir", help="a finished sweep folder (manifest.json)")
    sweep.add_argument("-o", "--out", default=None, help="output folder (default SWEEP_DIR/report)")
    sweep.add_argument("--bench", nargs="*", default=[], metavar="JSON", help="benchmark JSON files to tabulate")
    sweep.add_argument("--note", action="append", default=[], help="a paragraph to add (repeatable)")
    sweep.add_argument("--train", action="append", default=[], metavar="RUN_DIR",
                       help="a training run directory to report on (repeatable)")
    sweep.add_argument("--study", action="append", default=[], metavar="STUDY_DIR",
                       help="a study folder (parity, ...) to report on (repeatable)")
    sweep.set_defaults(func=_sweep)
    run = verbs.add_parser("run", help="REPORT.md of a run folder (e.g. runs/demo): its sweep, trainings, studies "
                                       "and benchmarks, found by what they hold; `astrohpc report DIR` for short")
    run.add_argument("run_dir", help="a run folder, e.g. runs/demo (its sweep, trainings and studies are found inside)")
    run.add_argument("--note", action="append", default=[], help="a paragraph to add (repeatable)")
    run.set_defaults(func=_run)


VERBS = ("sweep", "run")


def _run(args: argparse.Namespace) -> int:
    from astrohpc.analysis.run_report import build_run_report

    print(build_run_report(args.run_dir, args.note))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from pathlib import Path

    from astrohpc.analysis.sweep_report import build_sweep_report

    out = Path(args.out) if args.out else Path(args.sweep_dir) / "report"
    print(build_sweep_report(args.sweep_dir, out, [Path(b) for b in args.bench], args.note,
                             [Path(t) for t in args.train], [Path(d) for d in args.study]))
    return 0
