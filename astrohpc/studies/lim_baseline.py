"""The linear inverse model as a baseline of the studies (astrohpc.analysis.lim): fitted on the
export's training runs, stepped like the emulator.

    fit_lim        the LIM on the training runs' one-step pairs of the model's prognostic channels
    lim_trajectory a free LIM forecast of one run from its first state: [steps, C, lat, lon] in the
                   model's channels, the prognostic channels the LIM's, the forcings the run's own
                   (what the emulator is given too), every other channel (diagnostics) the `fill`
                   field (the training climatology: a LIM predicts no diagnostic)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np


def fit_lim(model: Any, meta: Any, param_norm: dict, train_runs: Sequence[int], seed: int = 0,
            states: Optional[Sequence[np.ndarray]] = None) -> Any:
    """The LIM on the training runs' one-step pairs (x_t, forcing_{t+1}, params) -> x_{t+1} of the
    model's prognostic channels, read from `meta`'s cube in the model's channel order (`states`:
    those runs' states [T, C, lat, lon] already read, in the order of `train_runs`)."""
    from astrohpc.analysis.lim import LinearInverseModel
    from astrohpc.studies.skill import read_run

    prog, forcing = model.predicted.tolist(), model.forcing.tolist()
    xs, fs, ps, ys = [], [], [], []
    z = meta.normalized_params(param_norm)
    for i, run in enumerate(train_runs):
        run_states = (read_run(meta, run, model.plan.cube_channels) if states is None else states[i]).astype(
            np.float32)
        xs.append(run_states[:-1, prog])
        ys.append(run_states[1:, prog])
        fs.append(run_states[1:, forcing])
        ps.append(np.repeat(z[run:run + 1], len(run_states) - 1, axis=0))
    return LinearInverseModel(seed=seed).fit(np.concatenate(xs), np.concatenate(fs), np.concatenate(ps),
                                             np.concatenate(ys), meta.area_weight)


class _Assembly:
    """Full model states from the LIM's prognostic channels, the forcing given and `fill` for every
    other channel (the diagnostics, which a LIM does not predict)."""

    def __init__(self, model: Any, fill: np.ndarray):
        self.prog, self.forcing = model.predicted.numpy(), model.forcing.numpy()
        self.other = np.setdiff1d(np.arange(len(model.table.variables)), np.concatenate([self.prog, self.forcing]))
        self.fill = fill

    def __call__(self, out: np.ndarray, x: np.ndarray, f: np.ndarray) -> np.ndarray:
        """out [B, C, lat, lon] filled in place from x [B, prog, ...] and f [B, forcing, ...]."""
        out[:, self.prog], out[:, self.forcing], out[:, self.other] = x, f, self.fill[self.other]
        return out


def lim_trajectory(lim: Any, model: Any, truth: np.ndarray, params: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The LIM's forecast of states 1 … T−1 of `truth` [T, C, lat, lon] (model channels, physical)
    from truth[0]; params [1, P] normalised as the model reads them; fill [C, lat, lon]."""
    assemble = _Assembly(model, fill)
    x = np.asarray(truth[:1, assemble.prog], np.float64)
    z = np.asarray(params, np.float64)
    out = np.empty((truth.shape[0] - 1, *truth.shape[1:]))
    for k in range(1, truth.shape[0]):
        f = truth[k:k + 1, assemble.forcing]
        x = lim.step(x, f, z)
        assemble(out[k - 1:k], x, f)
    return out


def lim_rollout(lim: Any, model: Any, x0: np.ndarray, params: np.ndarray, forcing: Any, steps: int,
                fill: np.ndarray, area: np.ndarray, reference: np.ndarray, window: int) -> dict[str, Any]:
    """A free LIM rollout of members x0 [B, C, lat, lon] (model channels, physical) for `steps` steps,
    forced like the emulator (forcing(k) -> [B, F, lat, lon] or [F, lat, lon], k = 1 … steps).

    Per member: the step of its first state outside the rollout's temperature limits
    (astrohpc.studies.rollout.DivergenceLimits) or non-finite (None: none), the global-mean ts
    series [steps] (NaN after the flag), and the RMSE per channel of its last `window` states' mean
    against `reference` [C, lat, lon] (None when it did not reach the window). A baseline for the
    rollout study: how close the climate of a linear model gets to the GCM's."""
    from astrohpc.studies.rollout import DivergenceLimits, temperature_channels
    from astrohpc.studies.scores import rmse_bias

    assemble = _Assembly(model, fill)
    limits = DivergenceLimits()
    temps = temperature_channels(model)
    names = list(model.table.variables)
    ts_channel = names.index("ts") if "ts" in names else None
    w = np.asarray(area, np.float64) / np.sum(area)
    b = x0.shape[0]
    x = np.asarray(x0[:, assemble.prog], np.float64)
    z = np.asarray(params, np.float64)
    flags: list[Any] = [None] * b
    ts = np.full((steps, b), np.nan)
    total = np.zeros((b, x0.shape[1], *x0.shape[2:]))
    count = np.zeros(b)
    state = np.asarray(x0, np.float64).copy()
    for k in range(1, steps + 1):
        f = np.asarray(forcing(k), np.float64)
        f = np.broadcast_to(f, (b, *f.shape)) if f.ndim == 3 else f
        x = lim.step(x, f, z)
        assemble(state, x, f)
        for m in range(b):
            if flags[m] is not None:
                continue
            t = state[m, temps]
            if not np.isfinite(state[m]).all() or (temps and (t.min() < limits.t_min_K or t.max() > limits.t_max_K)):
                flags[m] = k
                continue
            if ts_channel is not None:
                ts[k - 1, m] = float((state[m, ts_channel] * w).sum())
            if k > steps - window:
                total[m] += state[m]
                count[m] += 1
    rmse = [rmse_bias(total[m] / count[m], reference, area)[0] if count[m] else None for m in range(b)]
    return {"flags": flags, "ts": ts, "climatology_rmse": rmse, "count": count}
