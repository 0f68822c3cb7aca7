"""`astrohpc doctor`: one line per component; non-zero exit if a required one is missing."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from astrohpc.doctor import CHECKS, CORE

    parser = sub.add_parser("doctor", help="check the software stack (run this first on a login node)")
    parser.add_argument("--require", default="", metavar="A,B",
                        help=f"components that must be present besides the core ({', '.join(CORE)}); "
                             f"choices: {', '.join(CHECKS)} or 'all'")
    parser.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from astrohpc.doctor import CHECKS, CORE, run_checks
    from astrohpc.errors import AstrohpcError

    asked = [r for r in args.require.split(",") if r]
    required = set(CHECKS) if "all" in asked else set(CORE) | set(asked)
    unknown = required - set(CHECKS)
    if unknown:
        raise AstrohpcError(f"doctor --require: unknown component(s) {', '.join(sorted(unknown))}; "
                            f"choices: {', '.join(CHECKS)}, all")
    failed = []
    for result in run_checks():
        mark = "ok  " if result.ok else ("FAIL" if result.name in required else "--  ")
        print(f"{mark} {result.name:<10} {result.detail}")
        if not result.ok and result.name in required:
            failed.append(result.name)
    if failed:
        print(f"missing required component(s): {', '.join(failed)}")
        return 1
    return 0
