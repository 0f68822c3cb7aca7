"""`astrohpc predict CONFIG [KEY=VALUE ...] [-o OUT.nc]`: one inference request, one NetCDF file.

A climate surrogate writes the time-mean fields of every planet asked for; an emulator writes
the trajectory from its initial state (restartable: astrohpc.predict.emulator). Returns a short
record for the CLI: the file, what was predicted, and the out-of-envelope verdicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from astrohpc.errors import ConfigError


def predict(cfg: Any, output: Optional[str | Path] = None, progress: bool = False) -> dict[str, Any]:
    """Run the request `cfg` (a PredictConfig) and write its NetCDF file (`output`, else predict.output)."""
    import torch

    from astrohpc.predict.fields_netcdf import write_dataset
    from astrohpc.predict.surrogate import load_surrogate

    p = cfg.predict
    if not p.model:
        raise ConfigError("predict.model is not set: give an export (RUN_DIR/export/best.pt, or a climate study's "
                          "STUDY_DIR/export/gp.pt)")
    out = Path(output or p.output or "")
    if not str(output or p.output or ""):
        raise ConfigError("no output file: give -o OUT.nc or predict.output")
    if p.threads:
        torch.set_num_threads(p.threads)
    surrogate = load_surrogate(p.model)
    if surrogate.kind == "climate":
        if out.exists():
            raise ConfigError(f"{out}: exists; choose another output or remove it (nothing is overwritten)")
        if p.init.cube or p.init.netcdf:
            raise ConfigError(f"{p.model} is a climate surrogate: it predicts from parameters alone; predict.init is "
                              "for an emulator")
        ds = surrogate.predict(params=p.params, planets=p.planets, csv=p.planets_csv)
        write_dataset(out, ds)
        flags = [int(v) for v in ds["ood_flag"].values]
        reasons = [str(r) for r in ds["ood_reason"].values]
        return {"output": str(out), "kind": "climate", "planets": len(flags), "ood_flags": flags,
                "ood_reasons": reasons, "variables": [v for v in ds.data_vars if not v.startswith("ood_")]}
    if p.planets or p.planets_csv:
        raise ConfigError("an emulator rolls out one planet from one state: give its parameters in predict.params")
    init = {k: v for k, v in (("cube", p.init.cube), ("run", p.init.run), ("time", p.init.time),
                              ("netcdf", p.init.netcdf), ("data", p.init.data), ("time_step_s", p.init.time_step_s))
            if v is not None}
    ds = surrogate.rollout(init, p.steps, params=p.params, output_every=p.output_every, output=out,
                           segment_steps=p.segment_steps, progress=progress)
    return {"output": str(out), "kind": "emulator", "steps": p.steps, "states": int(ds.sizes["time"]),
            "ood_flags": [int(ds.attrs["ood_flag"])], "ood_reasons": [str(ds.attrs["ood_reason"])],
            "diverged_at_step": int(ds.attrs["diverged_at_step"]), "divergence_reason": ds.attrs["divergence_reason"]}
