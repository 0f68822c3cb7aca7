"""`astrohpc parity compare REF.nc CAND.nc --var NAME`: one variable of two GCM outputs, scored."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("parity", help="compare GCM outputs on the same grid (reference vs candidate)")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    compare = verbs.add_parser("compare", help="area-weighted RMSE, bias, max |diff| and pattern correlation of "
                                               "one variable (candidate - reference), with every alignment step")
    compare.add_argument("reference", help="reference NetCDF file (its grid and weights are used)")
    compare.add_argument("candidate", help="candidate NetCDF file on the same grid")
    compare.add_argument("--var", required=True, help="variable name in both files")
    compare.add_argument("--time-mean", action="store_true",
                         help="compare time means (default: time steps paired by position, same count required)")
    compare.add_argument("--tolerance-deg", type=float, default=1e-3,
                         help="coordinates this close (degrees) count as equal; more is an error (default 1e-3)")
    compare.add_argument("--json", default=None, metavar="OUT", help="also write the full result as JSON")
    compare.set_defaults(func=_compare)


def _compare(args: argparse.Namespace) -> int:
    from astrohpc.analysis.compare_fields import compare_fields, comparison_table
    from astrohpc.atomic_write import write_json

    result = compare_fields(args.reference, args.candidate, args.var, time_mean=args.time_mean,
                            tolerance_deg=args.tolerance_deg)
    print(comparison_table(result))
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0
