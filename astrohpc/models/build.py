"""Surrogates from config: the `model:` section (ModelSettings) + a cube's metadata -> modules.

One `build_*` per component, each usable alone:

    plan_channels      which cube channels are predicted, given (forcings) and static
    build_normalizer   the channel statistics (pooled over the training runs when given)
    build_net          the network: ChannelUNet or SurrogateTransformer behind net(z, params)
    build_correctors   the hard correctors (CorrectorChain) or None
    build_physics_loss the weighted physics loss terms (PhysicsLoss)
    build_emulator     EmulatorStepper (task: emulator)
    build_climate      ClimateSurrogate (task: climate)
    build              whichever the task asks for

Everything a trained model needs to run again (channel plan, parameter normalisation, statistics)
is in the returned module's buffers or in `ChannelPlan`, which `describe()` turns into plain data
for the exported weights (the trainer, issue 9, saves it beside them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from astrohpc.data.cube import channel_label
from astrohpc.errors import ConfigError
from astrohpc.models.channels import ChannelTable, Normalizer
from astrohpc.models.climate import ClimateSurrogate
from astrohpc.models.layout import DatacubeLayout
from astrohpc.models.settings import ModelSettings
from astrohpc.models.stepper import EmulatorStepper, static_normalization
from astrohpc.models.uncertainty import GaussianPrediction
from astrohpc.physics.correctors import CorrectorChain
from astrohpc.physics.energy import flux_timing
from astrohpc.physics.grid import SphereGrid
from astrohpc.physics.losses import PhysicsLoss


@dataclass(frozen=True)
class ChannelPlan:
    """cube_channels: the cube channels the model reads, in cube order (WindowDataset(variables=
    variables) yields exactly these); predicted / forcing: indices into them; static: static
    field names; params: the parameter names (normalised as `param_norm`); scalars: the 2-D
    channels whose global means the scalar head predicts (indices into cube_channels)."""

    variables: tuple[str, ...]
    cube_channels: tuple[int, ...]
    predicted: tuple[int, ...]
    forcing: tuple[int, ...]
    static: tuple[str, ...]
    params: tuple[str, ...]
    scalars: tuple[int, ...]
    table: ChannelTable
    diagnostic: tuple[int, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"variables": list(self.variables), "cube_channels": list(self.cube_channels),
                "predicted": list(self.predicted), "forcing": list(self.forcing), "diagnostic": list(self.diagnostic),
                "static": list(self.static),
                "params": list(self.params), "scalars": list(self.scalars),
                "channel_names": [channel_label(v, lev)
                                  for v, lev in zip(self.table.variables, self.table.levels)]}


def plan_channels(settings: ModelSettings, meta: Any) -> ChannelPlan:
    """The channel plan of `settings` on the cube `meta`; ConfigError naming what the cube lacks."""
    cube_vars = list(dict.fromkeys(meta.variables))
    emulator = settings.task == "emulator"
    forcings = list(settings.forcings) if emulator else []
    diagnostics = list(settings.diagnostics) if emulator else []
    missing = [v for v in [*settings.variables, *forcings, *diagnostics] if v not in cube_vars]
    if missing:
        raise ConfigError(f"model: the cube {meta.path} has no variable {', '.join(missing)}; it has "
                          f"{', '.join(cube_vars)} (convert with them in data.variables, or change model.variables"
                          f"{'/forcings/diagnostics' if emulator else ''})")
    step_means = [v for v in getattr(meta, "step_means", []) if v in cube_vars]
    if emulator:
        fed_back = [v for v in [*settings.variables, *forcings] if v in step_means]
        if fed_back:
            raise ConfigError(f"model: {', '.join(fed_back)} in the cube {meta.path} are means over the step into "
                              "each state (its step_mean_variables), not states: an emulator cannot feed them back "
                              "or take them as forcings — list them in model.diagnostics")
    predicted_vars = list(settings.variables) or [v for v in cube_vars if v not in forcings and v not in diagnostics
                                                  and not (emulator and v in step_means)]
    wanted = set(predicted_vars) | set(forcings) | set(diagnostics)
    variables = tuple(v for v in cube_vars if v in wanted)  # cube order: channels read in one slice
    channels = meta.channels_of(list(variables))
    table = ChannelTable.from_meta(meta, channels)
    predicted = tuple(i for i, v in enumerate(table.variables) if v not in forcings and v not in diagnostics)
    forcing = tuple(i for i, v in enumerate(table.variables) if v in forcings)
    diagnostic = tuple(i for i, v in enumerate(table.variables) if v in diagnostics)
    static = tuple(sorted(meta.static)) if settings.static else ()
    if settings.static and not static:
        raise ConfigError(f"model.static: true but the cube {meta.path} has no static fields; reconvert with "
                          "data.static_variables: [sg, lsm], or set model.static: false")
    scalars: tuple[int, ...] = ()
    if settings.mode in ("scalar", "joint"):
        bad = [v for v in settings.scalars if v not in table.variables or table.is_3d(v)]
        if bad:
            raise ConfigError(f"model.scalars: {', '.join(bad)} must be 2-D variables the model predicts "
                              f"({', '.join(v for v in table.names if not table.is_3d(v))})")
        scalars = tuple(table.index(v)[0] for v in settings.scalars)
    return ChannelPlan(variables, tuple(int(c) for c in channels), predicted, forcing, static,
                       tuple(settings.params or meta.param_names), scalars, table, diagnostic)


def build_normalizer(meta: Any, plan: ChannelPlan, runs: Optional[Sequence[int]] = None) -> Normalizer:
    return Normalizer.from_meta(meta, plan.cube_channels, runs)


def model_flux_timing(plan: Optional[ChannelPlan], meta: Optional[Any]) -> str:
    """How the model's states hold their fluxes: "step_means" on a cube whose step_mean_variables
    hold them (datacube_step.h5), else "snapshots" (astrohpc.physics.energy.flux_timing)."""
    if plan is None or meta is None:
        return "snapshots"
    return flux_timing(list(plan.table.variables), list(getattr(meta, "step_means", []) or []),
                       f"the cube {getattr(meta, 'path', '?')}")


def build_correctors(settings: ModelSettings, plan: Optional[ChannelPlan] = None,
                     meta: Optional[Any] = None) -> Optional[CorrectorChain]:
    """The hard correctors, or None; the energy corrector takes the fluxes as the cube holds them."""
    names = settings.physics.correctors or []
    if not names:
        return None
    return CorrectorChain(names, model_flux_timing(plan, meta) if "energy" in names else "snapshots")


def build_physics_loss(settings: ModelSettings, meta: Optional[Any] = None,
                       plan: Optional[ChannelPlan] = None) -> PhysicsLoss:
    """The weighted terms; with the cube and plan, a ConfigError when the model lacks a variable a term reads."""
    weights = settings.physics.loss_weights
    energy = float(weights.get("energy_budget", 0.0) or 0.0) > 0
    loss = PhysicsLoss(weights, model_flux_timing(plan, meta) if energy else "snapshots")
    if plan is not None:
        have = set(plan.table.variables) | set(plan.static)
        lacking = [v for v in loss.required_variables if v not in have]
        if lacking:
            terms = ", ".join(loss.weights)
            raise ConfigError(f"model.physics.loss_weights ({terms}) read {', '.join(lacking)}, which the model "
                              f"does not {'predict' if settings.task == 'climate' else 'carry'} "
                              f"(cube {getattr(meta, 'path', '?')}: add them to model.variables / the cube)")
    return loss


class StateNet(nn.Module):
    """A SurrogateTransformer behind the stepper's net(z, params) interface."""

    def __init__(self, model: nn.Module, uses_params: bool):
        super().__init__()
        self.model, self.uses_params = model, uses_params

    def forward(self, z: Optional[torch.Tensor], params: torch.Tensor) -> Any:
        return self.model(state=z, params=params if self.uses_params else None)


class GaussianSplit(nn.Module):
    """Splits each head of a net built with doubled outputs into a GaussianPrediction:
    the first half is the mean, the second σ = softplus(raw) + floor (normalised units)."""

    def __init__(self, net: nn.Module, sigma_floor: float = 1e-3):
        super().__init__()
        self.net, self.sigma_floor = net, float(sigma_floor)

    def forward(self, z: Optional[torch.Tensor], params: torch.Tensor) -> Any:
        out = self.net(z, params)

        def split(value: torch.Tensor) -> GaussianPrediction:
            mean, raw = value.chunk(2, dim=1)
            return GaussianPrediction(mean, torch.nn.functional.softplus(raw) + self.sigma_floor)

        return {k: split(v) for k, v in out.items()} if isinstance(out, dict) else split(out)


def _channels_layout(names: Sequence[str], levels: Sequence[float]) -> DatacubeLayout:
    return DatacubeLayout.from_channels(list(names), list(levels))


def build_net(settings: ModelSettings, plan: ChannelPlan, meta: Any, n_bins: int = 0) -> nn.Module:
    """The network behind net(z, params) for `settings.task` (see EmulatorStepper, ClimateSurrogate)."""
    table, nlat, nlon = plan.table, int(meta.shape[-2]), int(meta.shape[-1])
    n_params = len(plan.params)
    out_idx = [*plan.predicted, *plan.diagnostic]  # the emulator's Δ of prognostics, then its diagnostics
    pred_names = [table.variables[i] for i in out_idx]
    pred_levels = [table.levels[i] for i in out_idx]
    gaussian = settings.uncertainty.method == "gaussian"
    if settings.task == "emulator":
        f_names = [table.variables[i] for i in plan.forcing]
        f_levels = [table.levels[i] for i in plan.forcing]
        p_names = [table.variables[i] for i in plan.predicted]
        p_levels = [table.levels[i] for i in plan.predicted]
        in_names = p_names + f_names + [f"{v}@next" for v in f_names] + list(plan.static)
        in_levels = p_levels + f_levels + f_levels + [float("nan")] * len(plan.static)
    else:
        k = settings.spinup_steps
        in_names = [f"{v}@day{d}" for d in range(k) for v in table.variables] + list(plan.static)
        in_levels = [lev for _ in range(k) for lev in table.levels] + [float("nan")] * len(plan.static)
    if settings.architecture == "sfno":
        from astrohpc.models.sfno import SFNO

        f = settings.sfno
        return SFNO(len(in_names), len(pred_names), n_params, np.asarray(meta.lat), nlon,
                    f.truncation or gauss_truncation(nlat), f.embed, f.layers, f.mlp_ratio)
    if settings.architecture == "unet":
        if not in_names:
            raise ConfigError("model: the U-Net needs an input field; task: climate with spinup_steps: 0 and "
                              "static: false gives it none (use architecture: transformer, or spin-up days)")
        u = settings.unet
        from astrohpc.models.unet import ChannelUNet

        in_layout, out_layout = _channels_layout(in_names, in_levels), _channels_layout(pred_names, pred_levels)
        if not in_layout.levels and out_layout.levels:  # only 2-D inputs (static fields): put them on the levels
            in_layout = in_layout.on_levels(out_layout.levels)
        return ChannelUNet(in_layout, out_layout,
                           width=u.width, depth=u.depth, params_dim=n_params, attention=u.attention,
                           checkpoint=u.checkpoint, dropout=u.dropout, nlat=nlat)
    from astrohpc.models.transformer import SurrogateTransformer

    t, double = settings.transformer, 2 if gaussian else 1
    model = SurrogateTransformer(len(in_names), n_params, grid=(nlat, nlon), patch=tuple(t.patch), dim=t.dim,
                                 depth=t.depth, heads=t.heads, mode=settings.mode,
                                 out_channels=double * len(pred_names), n_scalars=double * len(plan.scalars),
                                 n_bins=double * n_bins, fusion=t.fusion, dropout=t.dropout)
    net: nn.Module = StateNet(model, n_params > 0)
    return GaussianSplit(net) if gaussian else net


def gauss_truncation(nlat: int) -> int:
    """The triangular truncation of a GCM's Gauss grid: T21 has 32 latitudes (nlat = (3T + 1)/2 rounded up)."""
    return int((2 * nlat - 1) // 3)


def _spectral_normalization(meta: Any, runs: Optional[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    from astrohpc.data.spectra import read_spectra

    values = read_spectra(meta.path).values  # [run, time, bins]
    picked = values if runs is None else values[list(runs)]
    flat = picked.reshape(-1, picked.shape[-1])
    mean, std = np.nanmean(flat, axis=0), np.nanstd(flat, axis=0)
    return torch.as_tensor(mean), torch.as_tensor(np.where(std > 0, std, 1.0))


def output_interval_s(meta: Any) -> float:
    """The time between two states of the cube, s (the emulator's step); DataError unless uniform."""
    from astrohpc.errors import DataError

    steps = np.concatenate([np.diff(row[np.isfinite(row)]) for row in np.atleast_2d(meta.time_days)])
    if steps.size == 0 or not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
        found = "no two states" if steps.size == 0 else f"{np.unique(np.round(steps, 6)).tolist()} days"
        raise DataError(f"{meta.path}: the emulator steps a fixed interval, the cube's states are {found} apart "
                        "(convert output with one interval)")
    return float(steps[0]) * 86400.0


def build_emulator(settings: ModelSettings, meta: Any, runs: Optional[Sequence[int]] = None) -> EmulatorStepper:
    """The autoregressive emulator on `meta`'s cube; statistics pooled over `runs` (training runs)."""
    plan = plan_channels(settings, meta)
    step_s = output_interval_s(meta)
    if settings.step_days is not None and not np.isclose(step_s, settings.step_days * 86400.0, rtol=1e-6):
        from astrohpc.errors import DataError

        raise DataError(f"{meta.path}: its states are {step_s / 86400.0:g} days apart, the model steps "
                        f"model.step_days = {settings.step_days:g}: use a cube of that output interval, or change "
                        "model.step_days")
    static_mean, static_std = static_normalization(meta, list(plan.static)) if plan.static else (None, None)
    net = build_net(settings, plan, meta)
    project = None
    if settings.project_tendency:
        if settings.architecture == "sfno":
            project = net.projection
        else:
            from astrohpc.models.sfno import SpectralProjection, SphericalTransform, check_gauss_grid

            check_gauss_grid(np.asarray(meta.lat))
            truncation = settings.sfno.truncation or gauss_truncation(int(meta.shape[-2]))
            transform = SphericalTransform(int(meta.shape[-2]), int(meta.shape[-1]), truncation)
            project = SpectralProjection(transform, bool(meta.lat[0] < meta.lat[-1]))
    stepper = EmulatorStepper(net, plan.table, plan.predicted, plan.forcing,
                              build_normalizer(meta, plan, runs), SphereGrid.from_meta(meta),
                              step_s, list(plan.static), static_mean, static_std,
                              build_correctors(settings, plan, meta), plan.diagnostic, project)
    unknown = [v for v in settings.loss_weights if v not in plan.table.variables]
    if unknown:
        raise ConfigError(f"model.loss_weights: {', '.join(unknown)} not among the model's variables "
                          f"({', '.join(plan.table.names)})")
    for var, w in settings.loss_weights.items():
        stepper.loss_weight[plan.table.index(var)] = float(w)
    stepper.plan = plan
    try:
        stepper.flux_timing = model_flux_timing(plan, meta)
    except ConfigError:  # fluxes held both ways: no energy budget can be closed on this cube
        stepper.flux_timing = None
    return stepper


def build_climate(settings: ModelSettings, meta: Any, runs: Optional[Sequence[int]] = None,
                  n_bins: Optional[int] = None) -> ClimateSurrogate:
    """The parametric climate surrogate on `meta`'s cube; statistics pooled over `runs`.
    n_bins: the spectral head's size without reading the spectra sidecar (loading saved weights,
    whose buffers carry the spectra's normalisation)."""
    plan = plan_channels(settings, meta)
    heads = ("datacube", "scalar", "spectral") if settings.mode == "joint" else (settings.mode,)
    spectral_mean = spectral_std = None
    if "spectral" in heads:
        if n_bins is None:
            spectral_mean, spectral_std = _spectral_normalization(meta, runs)
        else:
            spectral_mean, spectral_std = torch.zeros(n_bins, dtype=torch.float64), torch.ones(n_bins,
                                                                                                dtype=torch.float64)
        n_bins = len(spectral_mean)
    n_bins = n_bins or 0
    static_mean, static_std = static_normalization(meta, list(plan.static)) if plan.static else (None, None)
    model = ClimateSurrogate(build_net(settings, plan, meta, n_bins), plan.table, build_normalizer(meta, plan, runs),
                             SphereGrid.from_meta(meta), heads, settings.spinup_steps, plan.scalars,
                             list(plan.static), static_mean, static_std, spectral_mean, spectral_std,
                             build_correctors(settings, plan, meta))
    model.plan = plan
    return model


def build(settings: ModelSettings, meta: Any, runs: Optional[Sequence[int]] = None,
          n_bins: Optional[int] = None) -> nn.Module:
    """EmulatorStepper or ClimateSurrogate, as `settings.task` says (n_bins: see build_climate)."""
    if settings.task == "emulator":
        return build_emulator(settings, meta, runs)
    return build_climate(settings, meta, runs, n_bins)


def embedding_module(model: nn.Module) -> nn.Module:
    """The layer whose output, pooled, is the model's embedding for the OOD flag
    (astrohpc.models.ood): the U-Net's bottleneck, the transformer's final norm."""
    net = model.net
    while isinstance(net, (GaussianSplit, StateNet)):
        net = net.net if isinstance(net, GaussianSplit) else net.model
    if hasattr(net, "unet"):
        return net.unet.middle[-1]
    return net.norm


def embeddings(model: nn.Module, call: Any) -> torch.Tensor:
    """[B, D] embedding of the inputs `call()` runs through `model` (pooled over every axis but
    the feature axis: channels of the U-Net's bottleneck, tokens of the transformer)."""
    captured: list[torch.Tensor] = []
    module = embedding_module(model)

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        dims = tuple(range(2, output.ndim)) if output.ndim > 3 else (1,)
        captured.append(output.detach().double().mean(dim=dims))

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            call()
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError("the model's embedding layer did not run")
    return captured[-1]
