"""The fitted GP climate surrogate as one self-contained file: `export/gp.pt` of a climate study.

    format          "astrohpc-climate-gp/1"
    gp              GPClimate.state_dict() (EOFs, kernels' hyperparameters, training data)
    meta            the cube of time means' layout (astrohpc.data.meta_state): channels with units,
                    grid and area weights, run parameters and transforms
    channels        the cube channels the GP predicts, in its channel order
    params, transforms   the planet parameters it reads, and how (log10 or identity)
    train_runs      the runs it was fitted on (every run inside the envelope)
    box, box_source the envelope, [P, 2] in transformed parameters: the sweep's design box, else the
                    training runs' box widened by one stratum (astrohpc.studies.climate_loo)
    sigma_threshold, sigma_channel   a prediction whose area-weighted mean σ of that channel exceeds
                    the threshold (study.ood_std_factor × the largest leave-one-out σ) is flagged
    average_days, config, provenance, cube

Read with torch.load(weights_only=True); written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

FORMAT = "astrohpc-climate-gp/1"


def export_gp(path: str | Path, model: Any, meta: Any, info: dict[str, Any]) -> Path:
    """Write `model` (a fitted GPClimate), the cube layout `meta` and `info` (the module doc's
    other keys) to `path` atomically."""
    from astrohpc.data.meta_state import meta_state
    from astrohpc.train.export import plain, write_payload

    return write_payload(path, {"format": FORMAT, "gp": model.state_dict(), "meta": meta_state(meta), **plain(info)})
