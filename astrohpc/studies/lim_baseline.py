"""The linear inverse model as a baseline of the studies (astrohpc.analysis.lim): fitted on the
export's training runs, stepped like the emulator.

    fit_lim        the LIM on the training runs' one-step pairs of the model's prognostic channels
    lim_trajectory a free LIM forecast of one run from its first state: [steps, C, lat, lon] in the
                   model's channels, the prognostic channels the LIM's, the forcings the run's own
                   (what the emulator is given too), every other channel (diagnostics) the `fill`
                   field (the training climatology: a LIM predicts no diagnostic)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def fit_lim(model: Any, meta: Any, param_norm: dict, train_runs: Sequence[int], seed: int = 0) -> Any:
    """The LIM on the training runs' one-step pairs (x_t, forcing_{t+1}, params) -> x_{t+1} of the
    model's prognostic channels, read from `meta`'s cube in the model's channel order."""
    from astrohpc.analysis.lim import LinearInverseModel
    from astrohpc.studies.skill import read_run

    prog, forcing = model.predicted.tolist(), model.forcing.tolist()
    xs, fs, ps, ys = [], [], [], []
    z = meta.normalized_params(param_norm)
    for run in train_runs:
        states = read_run(meta, run, model.plan.cube_channels).astype(np.float32)
        xs.append(states[:-1, prog])
        ys.append(states[1:, prog])
        fs.append(states[1:, forcing])
        ps.append(np.repeat(z[run:run + 1], len(states) - 1, axis=0))
    return LinearInverseModel(seed=seed).fit(np.concatenate(xs), np.concatenate(fs), np.concatenate(ps),
                                             np.concatenate(ys), meta.area_weight)


def lim_trajectory(lim: Any, model: Any, truth: np.ndarray, params: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """The LIM's forecast of states 1 … T−1 of `truth` [T, C, lat, lon] (model channels, physical)
    from truth[0]; params [1, P] normalised as the model reads them; fill [C, lat, lon]."""
    prog, forcing = model.predicted.numpy(), model.forcing.numpy()
    other = np.setdiff1d(np.arange(truth.shape[1]), np.concatenate([prog, forcing]))
    x = np.asarray(truth[:1, prog], np.float64)
    z = np.asarray(params, np.float64)
    out = np.empty((truth.shape[0] - 1, *truth.shape[1:]))
    for k in range(1, truth.shape[0]):
        x = lim.step(x, truth[k:k + 1, forcing], z)
        out[k - 1, prog] = x[0]
        out[k - 1, forcing] = truth[k, forcing]
        out[k - 1, other] = fill[other]
    return out


def lim_rollout(lim: Any, model: Any, x0: np.ndarray, params: np.ndarray, forcing: Any, steps: int,
                fill: np.ndarray, area: np.ndarray, reference: np.ndarray, window: int,
                t_limits: tuple[float, float] = (50.0, 1000.0)) -> dict[str, Any]:
    """A free LIM rollout of members x0 [B, C, lat, lon] (model channels, physical) for `steps` steps,
    forced like the emulator (forcing(k) -> [B, F, lat, lon] or [F, lat, lon], k = 1 … steps).

    Per member: the step of its first state outside `t_limits` (any temperature channel) or
    non-finite (None: none), the global-mean ts series [steps] (NaN after the flag), and the RMSE
    per channel of its last `window` states' mean against `reference` [C, lat, lon] (None when it
    did not reach the window). A baseline for the rollout study: a LIM is linear and damped, so it
    stays bounded — the question is how close its climate is."""
    from astrohpc.studies.rollout import temperature_channels
    from astrohpc.studies.scores import rmse_bias

    prog, forc = model.predicted.numpy(), model.forcing.numpy()
    temps = temperature_channels(model)
    names = list(model.table.variables)
    ts_channel = names.index("ts") if "ts" in names else None
    w = np.asarray(area, np.float64) / np.sum(area)
    b = x0.shape[0]
    x = np.asarray(x0[:, prog], np.float64)
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
        state[:, prog], state[:, forc] = x, f
        other = np.setdiff1d(np.arange(state.shape[1]), np.concatenate([prog, forc]))
        state[:, other] = fill[other]
        for m in range(b):
            if flags[m] is not None:
                continue
            t = state[m, temps]
            if not np.isfinite(state[m]).all() or (temps and (t.min() < t_limits[0] or t.max() > t_limits[1])):
                flags[m] = k
                continue
            if ts_channel is not None:
                ts[k - 1, m] = float((state[m, ts_channel] * w).sum())
            if k > steps - window:
                total[m] += state[m]
                count[m] += 1
    rmse = [rmse_bias(total[m] / count[m], reference, area)[0] if count[m] else None for m in range(b)]
    return {"flags": flags, "ts": ts, "climatology_rmse": rmse, "count": count}
