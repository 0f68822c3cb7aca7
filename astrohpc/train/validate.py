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
