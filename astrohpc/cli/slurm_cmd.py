"""`astrohpc slurm render|submit`: render a template with options, optionally submit it."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("slurm", help="render and submit sbatch scripts from slurm/ templates")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, helptext in (("render", "print the rendered script"), ("submit", "render, write and submit")):
        p = verbs.add_parser(verb, help=helptext)
        p.add_argument("--template", default="job.sbatch", help="template under slurm/ (default job.sbatch)")
        p.add_argument("-o", "--option", action="append", default=[], metavar="NAME=VALUE",
                       help="sbatch option, e.g. -o array=0-3 -o time=00:05:00 (repeatable)")
        p.add_argument("--script", default=None, help="where to write the script (submit; default runs/slurm/)")
        p.add_argument("command", nargs=argparse.REMAINDER, help="the command the job runs (after --)")
        p.set_defaults(func=_render if verb == "render" else _submit)


def _render_from_args(args: argparse.Namespace) -> str:
    from astrohpc.errors import SlurmError
    from astrohpc.launch import render_sbatch

    options = {}
    for item in args.option:
        if "=" not in item:
            raise SlurmError(f"option {item!r}: expected NAME=VALUE, e.g. time=00:05:00")
        name, value = item.split("=", 1)
        options[name] = value
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    return render_sbatch(args.template, command, **options)


def _render(args: argparse.Namespace) -> int:
    print(_render_from_args(args), end="")
    return 0


def _submit(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from astrohpc.launch import submit, write_script

    text = _render_from_args(args)
    script = Path(args.script or f"runs/slurm/job-{time.strftime('%Y%m%dT%H%M%S')}.sbatch")
    write_script(script, text)
    print(submit(script))
    return 0
