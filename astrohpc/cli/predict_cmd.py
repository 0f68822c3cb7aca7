"""`astrohpc predict CONFIG [KEY=VALUE ...] [-o OUT.nc]`: a trained surrogate's prediction as CF NetCDF.

A climate surrogate (a climate study's export/gp.pt, or a climate network's export/best.pt):
planet parameters -> time-mean fields with their spread. An emulator: an initial state (a cube
run, or a GCM NetCDF file) + parameters + steps -> a trajectory (restartable). A planet outside
the training envelope is flagged in the file and warned about here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

log = logging.getLogger("astrohpc.predict")


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="predict with an exported surrogate: a new planet's climate, or an "
                                            "emulator's trajectory from a state (CF-1.8 NetCDF)")
    parser.add_argument("config", help="inference YAML (predict: model, params/planets/planets_csv, init, steps; "
                                       "see configs/predict/)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. predict.params.instellation_W_m2=1500")
    parser.add_argument("-o", "--output", default=None, help="the NetCDF file to write (default: predict.output)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar for an emulator's rollout")
    parser.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from astrohpc.config import load_config
    from astrohpc.predict.run import predict
    from astrohpc.predict.settings import PredictConfig

    cfg = load_config(args.config, args.overrides, schema=PredictConfig)
    record = predict(cfg, args.output, progress=not args.no_progress and sys.stderr.isatty())
    for i, (flag, reason) in enumerate(zip(record["ood_flags"], record["ood_reasons"])):
        if flag:
            log.warning("planet %d is outside the training envelope — treat its prediction with caution: %s",
                        i + 1, reason)
    if record.get("diverged_at_step", -1) >= 0:
        log.warning("the rollout diverged at step %d (%s): later states are NaN", record["diverged_at_step"],
                    record["divergence_reason"])
    print(json.dumps(record, indent=2))
    return 0
