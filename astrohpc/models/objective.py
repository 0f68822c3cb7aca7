"""The training objective of each task: data loss + weighted physics loss, on a collated batch.

emulator (batches of astrohpc.data.dataset.WindowDataset, normalize=False, static when used):
    x_0 = the last input state; for each target step t the stepper predicts x̂_t (the raw step),
    the correctors turn it into x̃_t, which the next step starts from (the multi-step loss
    runs through the correctors, as a rollout does). With `noise` > 0 each step starts from its
    state plus Gaussian noise of `noise` × each prognostic channel's std. Data term: area-weighted
    mean square of (x̃_t − x_t)/σ_Δ over the prognostic channels that change (σ_Δ: the cube's
    step-change std; "residual normalisation") and of (x̃_t − x_t)/σ over the diagnostic channels
    (σ: the field's std), each channel weighted by the stepper's `loss_weight`, averaged over steps.
    Physics term: the PhysicsLoss of each raw step (x̃_{t−1} -> x̂_t),
    so the net itself learns the physics the correctors would otherwise impose.
climate (batches of astrohpc.data.runs.RunDataset):
    per head, the area-weighted (datacube) or plain (scalar, spectral) mean square error in
    normalised units — or the Gaussian NLL for a Gaussian head — weighted by head_weights; the
    physics term of the de-normalised predicted mean fields (static fields added).

Both return {"loss": differentiable total, "data", "physics", each term…} with the parts as
float tensors detached, ready for logging.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from astrohpc.models.climate import ClimateSurrogate
from astrohpc.models.stepper import EmulatorStepper
from astrohpc.models.uncertainty import GaussianPrediction, gaussian_nll
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.losses import PhysicsLoss


def area_weighted_mse(pred: torch.Tensor, target: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """Mean over batch and channels of the area-weighted mean square error over [lat, lon];
    NaN targets (levels below the surface) are left out. pred, target: [..., lat, lon]."""
    finite = torch.isfinite(target)
    w = torch.broadcast_to(area.to(pred.dtype), pred.shape) * finite
    err = torch.where(finite, pred - torch.nan_to_num(target), torch.zeros_like(pred)) ** 2
    return (w * err).sum() / w.sum().clamp(min=torch.finfo(pred.dtype).tiny)


def batch_planet(batch: Mapping[str, Any]) -> Optional[PlanetConstants]:
    """The batch's per-sample planet constants ([B] float64), or None when the cube has none."""
    return PlanetConstants.from_run_params(batch["planet"]) if "planet" in batch else None


def _parts(loss: torch.Tensor, data: torch.Tensor, physics: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {"loss": loss, "data": data.detach()}
    out.update({f"physics/{k}": v.detach() for k, v in physics.items()})
    return out


def emulator_loss(stepper: EmulatorStepper, batch: Mapping[str, Any], physics: Optional[PhysicsLoss] = None,
                  correct: bool = True, noise: float = 0.0) -> dict[str, torch.Tensor]:
    """See the module doc. batch: input [B, Ti, C, lat, lon], target [B, T, C, lat, lon] (physical,
    the stepper's channels), params [B, P], static [B, S, lat, lon] if the stepper has static
    fields, planet {name: [B]} for the correctors and physics."""
    planet = batch_planet(batch)
    static = batch.get("static")
    x = batch["input"][:, -1]
    target = batch["target"]
    pred_idx = torch.cat([stepper.predicted, stepper.diagnostic])
    norm = stepper.normalizer
    scale = torch.cat([norm.diff_std[:, stepper.predicted], norm.std[:, stepper.diagnostic]], dim=1).to(x.dtype)
    weight = getattr(stepper, "loss_weight", None)
    root_w = (torch.ones_like(scale) if weight is None else weight[None, pred_idx, None, None].to(x.dtype).sqrt())
    changes = (scale > 0).to(x.dtype) * root_w
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    noise_scale = norm.std[:, stepper.predicted].to(x.dtype) * noise
    area = stepper.grid.area_weight.to(device=x.device, dtype=x.dtype)
    data = x.new_zeros(())
    phys_total = torch.zeros((), dtype=torch.float64, device=x.device)
    terms: dict[str, torch.Tensor] = {}
    steps = target.shape[1]
    for t in range(steps):
        forcing_next = target[:, t, stepper.forcing]
        if noise > 0:
            x = x.clone()
            x[:, stepper.predicted] = x[:, stepper.predicted] + noise_scale * torch.randn_like(x[:, stepper.predicted])
        raw = stepper.predict(x, forcing_next, batch["params"], static)
        if physics is not None and physics.weights:
            result = physics(stepper.physics_state(x, static), stepper.physics_state(raw, static), stepper.grid,
                             planet, stepper.step_s)
            phys_total = phys_total + result.pop("total") / steps
            for k, v in result.items():
                terms[k] = terms.get(k, 0.0) + v.detach() / steps
        nxt = stepper.correct(x, raw, static, planet) if correct else raw
        data = data + area_weighted_mse(nxt[:, pred_idx] / safe * changes,
                                        target[:, t, pred_idx] / safe * changes, area) / steps
        x = nxt
    loss = data + phys_total.to(data.dtype)
    return {**_parts(loss, data, {**terms, "total": phys_total}), "steps": torch.tensor(steps)}


def _head_loss(value: Any, target: torch.Tensor, area: Optional[torch.Tensor]) -> torch.Tensor:
    if isinstance(value, GaussianPrediction):
        finite = torch.isfinite(target)
        weights = finite.to(value.mean.dtype) if area is None else \
            torch.broadcast_to(area.to(value.mean.dtype), target.shape) * finite
        return gaussian_nll(value.mean, value.sigma, torch.nan_to_num(target), weights=weights)
    if area is None:
        finite = torch.isfinite(target)
        return ((value - torch.nan_to_num(target)) ** 2 * finite).sum() / finite.sum().clamp(min=1)
    return area_weighted_mse(value, target, area)


def climate_loss(model: ClimateSurrogate, batch: Mapping[str, Any], physics: Optional[PhysicsLoss] = None,
                 head_weights: Optional[Mapping[str, float]] = None) -> dict[str, torch.Tensor]:
    """See the module doc. batch: params, mean [B, C, lat, lon] physical, spinup, static, spectrum, planet."""
    static = batch.get("static")
    out = model(batch["params"], batch.get("spinup"), static)
    targets = model.targets(batch["mean"], batch.get("spectrum"))
    weights = dict(head_weights or {})
    area = model.grid.area_weight
    data = None
    parts = {}
    for head, value in out.items():
        w = float(weights.get(head, 1.0))
        term = _head_loss(value, targets[head], area if head == "datacube" else None)
        parts[f"head/{head}"] = term.detach()
        data = w * term if data is None else data + w * term
    phys: dict[str, torch.Tensor] = {}
    loss = data
    if physics is not None and physics.weights and "datacube" in out:
        fields = model.physical({"datacube": out["datacube"]})["datacube"]
        fields = fields.mean if isinstance(fields, GaussianPrediction) else fields
        state = model.table.to_state(fields)
        if static is not None:
            state.update({name: static[:, i] for i, name in enumerate(model.static_names)})
        phys = physics(state, state, model.grid, batch_planet(batch), 0.0)
        loss = loss + phys["total"].to(loss.dtype)
    return {**_parts(loss, data, phys), **parts}
