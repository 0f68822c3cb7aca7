"""Per-epoch validation on held-out runs: area-weighted RMSE per variable and level, in physical
units, beside a baseline the surrogate must beat.

emulator: every window of the validation runs is stepped `unroll` times from the GCM state (with
    the correctors, in float32 as trained); the RMSE at each lead is pooled over windows, and so is
    persistence's (the initial state held) — the baseline of a one-step forecast.
climate: the predicted time-mean fields of each validation run against the GCM's; the baseline is
    the training climatology (the mean over the training runs' time means).

RMSE = sqrt(Σ w·e² / Σ w) over windows (or runs), batch and grid, w the cell area; NaN (levels
below the surface) left out. Under DDP each rank scores its share and the sums are all-reduced,
so every rank returns the same numbers. `loss` is the training objective on the same data (the
best-weights criterion).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from astrohpc.models.objective import climate_loss, emulator_loss


class _Sums:
    """Σ w e² and Σ w per (name, channel), reduced over ranks at the end."""

    def __init__(self) -> None:
        self.sq: dict[str, torch.Tensor] = {}
        self.w: dict[str, torch.Tensor] = {}
        self.loss = torch.zeros((), dtype=torch.float64)
        self.batches = torch.zeros((), dtype=torch.float64)

    def add(self, name: str, pred: torch.Tensor, truth: torch.Tensor, area: torch.Tensor) -> None:
        """pred, truth: [B, C, lat, lon] physical."""
        err = (pred.double() - truth.double())
        finite = torch.isfinite(err)
        w = torch.broadcast_to(area.double(), err.shape) * finite
        sq = (w * torch.where(finite, err, torch.zeros_like(err)) ** 2).sum(dim=(0, 2, 3)).cpu()
        self.sq[name] = self.sq.get(name, 0) + sq
        self.w[name] = self.w.get(name, 0) + w.sum(dim=(0, 2, 3)).cpu()

    def reduce(self) -> None:
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        names = sorted(self.sq)
        flat = torch.cat([torch.cat([self.sq[n], self.w[n]]) for n in names] + [self.loss[None], self.batches[None]])
        device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
        flat = flat.to(device)
        dist.all_reduce(flat)
        flat = flat.cpu()
        at = 0
        for n in names:
            c = len(self.sq[n])
            self.sq[n], self.w[n] = flat[at:at + c], flat[at + c:at + 2 * c]
            at += 2 * c
        self.loss, self.batches = flat[at], flat[at + 1]

    def rmse(self, name: str) -> np.ndarray:
        return np.sqrt((self.sq[name] / self.w[name].clamp(min=1e-300)).numpy())


def _table(channel_names: list[str], units: list[str], sums: _Sums, pairs: dict[str, str]) -> list[dict[str, Any]]:
    """Rows per channel: {"channel", "units", model RMSE, baseline RMSE}."""
    rows = []
    values = {key: sums.rmse(name) for key, name in pairs.items()}
    for c, channel in enumerate(channel_names):
        rows.append({"channel": channel, "units": units[c], **{k: float(v[c]) for k, v in values.items()}})
    return rows


def validate_emulator(stepper: Any, loader: Any, device: torch.device, unroll: int, units: list[str],
                      channel_names: list[str], physics: Optional[Any] = None) -> dict[str, Any]:
    """See the module doc. loader: batches of WindowDataset(input_steps=1, target_steps=unroll)."""
    from astrohpc.models.objective import batch_planet

    sums = _Sums()
    area = stepper.grid.area_weight.to(device)
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, device)
            sums.loss += float(emulator_loss(stepper, batch, physics)["loss"])
            sums.batches += 1
            planet, static = batch_planet(batch), batch.get("static")
            x0 = x = batch["input"][:, -1]
            for t in range(unroll):
                x = stepper(x, batch["target"][:, t, stepper.forcing], batch["params"], static, planet)
                truth = batch["target"][:, t]
                if t in (0, unroll - 1):
                    sums.add(f"model@{t + 1}", x, truth, area)
                    sums.add(f"persistence@{t + 1}", x0, truth, area)
    sums.reduce()
    pairs = {"rmse": "model@1", "persistence_rmse": "persistence@1"}
    if unroll > 1:
        pairs.update({f"rmse_lead{unroll}": f"model@{unroll}",
                      f"persistence_rmse_lead{unroll}": f"persistence@{unroll}"})
    rows = _table(channel_names, units, sums, pairs) if sums.sq else []
    return {"loss": float(sums.loss / sums.batches.clamp(min=1)), "channels": rows,
            "beats_baseline": _beats(rows, "rmse", "persistence_rmse")}


def validate_climate(model: Any, loader: Any, device: torch.device, climatology: torch.Tensor, units: list[str],
                     channel_names: list[str], physics: Optional[Any] = None,
                     head_weights: Optional[dict] = None) -> dict[str, Any]:
    """See the module doc. climatology: [C, lat, lon] physical, the training runs' mean."""
    from astrohpc.models.uncertainty import GaussianPrediction

    sums = _Sums()
    area = model.grid.area_weight.to(device)
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, device)
            sums.loss += float(climate_loss(model, batch, physics, head_weights)["loss"])
            sums.batches += 1
            out = model.physical(model(batch["params"], batch.get("spinup"), batch.get("static")))
            if "datacube" in out:
                fields = out["datacube"]
                fields = fields.mean if isinstance(fields, GaussianPrediction) else fields
                sums.add("model", fields, batch["mean"], area)
                sums.add("climatology", climatology.to(device)[None].expand_as(batch["mean"]), batch["mean"], area)
    sums.reduce()
    rows = _table(channel_names, units, sums, {"rmse": "model", "climatology_rmse": "climatology"}) if sums.sq else []
    return {"loss": float(sums.loss / sums.batches.clamp(min=1)), "channels": rows,
            "beats_baseline": _beats(rows, "rmse", "climatology_rmse")}


def _beats(rows: list[dict], model: str, baseline: str) -> Optional[dict[str, int]]:
    """How many channels the model beats its baseline on (ties count as not beating)."""
    if not rows:
        return None
    better = sum(1 for r in rows if r[model] < r[baseline])
    return {"channels_better": better, "channels": len(rows)}


def to_device(batch: Any, device: torch.device) -> Any:
    """A collated batch (tensors, dicts of tensors, ints) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def validate_rollout(stepper: Any, meta: Any, runs: list[int], param_norm: dict, steps: int, stability_steps: int,
                     device: torch.device) -> dict[str, Any]:
    """The emulator's validation rollout (train.select_by: rollout).

    Each run of `runs` is stepped from its first state, with the GCM's own forcing, for `steps`
    steps (0: to its end); the score is the area-weighted RMSE of every prognostic and diagnostic
    channel in units of that channel's std, averaged over channels and steps, then over runs.
    The same member then continues with the forcing computed from its orbit (physics.insolation)
    to `stability_steps` steps in all: it is stable when every state stays finite and every
    temperature channel stays within the cube's range widened by half its span on each side.
    Float64 states, no_grad, eval mode (the caller's mode is restored)."""
    from astrohpc.data.cube import LazyCube
    from astrohpc.physics.constants import FIELDS as PLANET_FIELDS
    from astrohpc.physics.constants import PlanetConstants
    from astrohpc.physics.insolation import DAY_S, Orbit, toa_insolation

    plan = stepper.plan
    channels = list(plan.cube_channels)
    scored = torch.cat([stepper.predicted, stepper.diagnostic]).cpu()
    std = stepper.normalizer.std[0, scored].to(device)  # [C, 1, 1]
    area = stepper.grid.area_weight.to(device=device, dtype=torch.float64)
    temps = [i for i, v in enumerate(plan.table.variables) if v in ("ts", "tas", "ta")]
    lo = np.nanmin(meta.stats["fields"]["min"][[channels[i] for i in temps]]) if temps else -np.inf
    hi = np.nanmax(meta.stats["fields"]["max"][[channels[i] for i in temps]]) if temps else np.inf
    lo, hi = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
    params_all = meta.normalized_params(param_norm)
    cube = LazyCube(meta.path)
    was_training = stepper.training
    stepper.eval()
    per_run = []
    try:
        with torch.no_grad():
            for run in runs:
                count = int(meta.time_count[run])
                n = count - 1 if steps == 0 else min(steps, count - 1)
                truth = torch.as_tensor(cube.read(run, 0, n + 1)[:, channels], dtype=torch.float64, device=device)
                params = torch.as_tensor(params_all[run:run + 1], dtype=torch.float32, device=device)
                static = None
                if plan.static:
                    static = torch.as_tensor(np.stack([meta.static[s][run] for s in plan.static])[None],
                                             dtype=torch.float64, device=device)
                values = {k: float(meta.params[k][run]) for k in meta.params}
                planet = (PlanetConstants.from_run_params({k: torch.tensor([values[k]]) for k in PLANET_FIELDS})
                          if all(k in values for k in PLANET_FIELDS) else None)
                x = truth[:1]
                sq = torch.zeros(len(scored), dtype=torch.float64, device=device)
                for t in range(1, n + 1):
                    x = stepper(x, truth[t:t + 1, stepper.forcing], params, static, planet)
                    err = ((x[0, scored] - truth[t, scored]) / std) ** 2
                    sq += (torch.nan_to_num(err) * area).sum(dim=(-2, -1)) / area.sum()
                score = float(torch.sqrt(sq / n).mean())
                stable_to, reason = stability_steps, None
                if stability_steps > n:
                    orbit = Orbit.from_params(values, timestep_minutes=float(meta.time_step_s[run]) / 60.0)
                    lat = torch.as_tensor(np.asarray(meta.lat, np.float64))
                    lon = torch.as_tensor(np.asarray(meta.lon, np.float64))
                    day0, step_days = float(meta.time_days[run, 0]), stepper.step_s / DAY_S
                    for k in range(n + 1, stability_steps + 1):
                        field = toa_insolation(day0 + k * step_days, lat, lon, orbit).to(device)
                        x = stepper(x, field.expand(1, len(stepper.forcing), *field.shape), params, static, planet)
                        if not torch.isfinite(x).all():
                            stable_to, reason = k, "non-finite"
                            break
                        t_now = x[0, temps]
                        if temps and (t_now.min() < lo or t_now.max() > hi):
                            stable_to, reason = k, "temperature"
                            break
                per_run.append({"run": meta.run_names[run], "steps": n, "score": score,
                                "stable_steps": stable_to, "unstable": reason})
    finally:
        cube.close()
        stepper.train(was_training)
    return {"score": float(np.mean([r["score"] for r in per_run])),
            "stable": all(r["unstable"] is None for r in per_run), "runs": per_run,
            "stability_steps": stability_steps}
