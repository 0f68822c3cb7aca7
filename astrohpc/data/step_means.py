"""The emulator's training cube: prognostic snapshots with diagnostics averaged over the step.

A GCM's snapshot at step t is the state the emulator steps from; a flux or precipitation at one
instant of the day is not what a one-day step's budget needs. When the sweep writes means over
the same interval as its snapshots (ExoPlaSim: `gcm.means_interval_days` = `snapshot_interval_days`),
record t of the means cube is the mean over (t − 1, t] — exactly the step that ends at snapshot t.
`merge_step_means` copies the snapshot cube and replaces the channels of `variables` (every level)
with the means cube's, so that x[t] holds the state at t and the step-mean diagnostics of the step
into t. Everything else (grid, time, runs, static fields, parameters) stays the snapshot cube's; a
new cube_id is written (statistics must be computed again: `astrohpc data stats`).

The file attribute `step_mean_variables` (JSON list) names the replaced variables.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from astrohpc.atomic_write import atomic_path
from astrohpc.data import schema
from astrohpc.data.cube import open_file, read_meta
from astrohpc.errors import DataError

STEP_MEAN_ATTR = "step_mean_variables"


def check_aligned(snap, means) -> None:
    """DataError unless the two cubes hold the same runs, channels and days."""
    where = f"{snap.path} and {means.path}"
    if list(snap.run_names) != list(means.run_names):
        raise DataError(f"{where} hold different runs: convert both from the same finished runs")
    if snap.channel_names != means.channel_names:
        raise DataError(f"{where} have different channels: convert both with the same data: settings")
    if snap.shape != means.shape or not np.allclose(snap.time_days, means.time_days, equal_nan=True):
        raise DataError(f"{where}: the means are not on the snapshots' days — the means interval must equal the "
                        "snapshot interval (gcm.means_interval_days = gcm.snapshot_interval_days)")


def merge_step_means(snapshots: str | Path, means: str | Path, output: str | Path, variables: Sequence[str]) -> Path:
    """Write `output`: the snapshot cube with every level of `variables` taken from the means cube."""
    snap, mean = read_meta(snapshots, stats=False), read_meta(means, stats=False)
    check_aligned(snap, mean)
    if not variables:
        raise DataError("no step-mean variables given (data.step_mean_variables)")
    channels = snap.channels_of(list(variables))  # DataError naming an unknown variable
    output = Path(output)
    with atomic_path(output) as tmp:
        shutil.copyfile(snapshots, tmp)
        import h5py

        with h5py.File(tmp, "r+", locking=False) as out, open_file(means) as src:
            fields_out, fields_in = out[schema.FIELDS], src[schema.FIELDS]
            for r, count in enumerate(snap.time_count.tolist()):
                fields_out[r, :count, channels] = fields_in[r, :count, channels]
            out.attrs["cube_id"] = uuid.uuid4().hex
            out.attrs[STEP_MEAN_ATTR] = json.dumps(list(variables))
            out.attrs["step_mean_source"] = str(Path(means).resolve())
    return output
