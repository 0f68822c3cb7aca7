"""The `model:` config section: which surrogate, its sizes, its physics and its uncertainty.

Strict like every section (astrohpc/config.py): an unknown key or value is an error naming it.
No torch import here — loading a config stays cheap; `astrohpc.models.build` builds the modules.

Two tasks:
- `emulator` (autoregressive): the state at step t (+ planet parameters, the forcings at t and
  t+1, static fields) -> the state at t+1 as x + Δ, Δ scaled by the cube's step-change
  statistics; correctors applied in SI units after every step.
- `climate` (parametric): planet parameters, optionally with the first `spinup_steps` days of a
  run, -> time-mean fields and/or global scalars.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

ARCHITECTURES = ("unet", "transformer", "gp", "sfno")
# Physics loss terms and correctors by name; astrohpc/physics/losses.py and correctors.py define them.
LOSS_TERMS = ("hydrostatic", "energy_budget", "toa_balance", "dry_mass", "ideal_gas", "humidity_negative")
CORRECTORS = ("humidity", "dry_mass", "energy")
# A time mean has no step: terms and correctors that compare a state with the one before it are
# emulator-only (the climate surrogate's dry mass is checked against its last spin-up day).
STEP_LOSS_TERMS = ("energy_budget", "dry_mass")
STEP_CORRECTORS = ("energy",)


@dataclass
class UNetSettings:
    """Datacube U-Net sizes (astrohpc/models/unet.py)."""

    width: int = 16
    depth: int = 2
    attention: bool = False
    checkpoint: bool = False
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise ValueError(f"model.unet.width and depth must be >= 1, got {self.width}, {self.depth}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.unet.dropout must be in [0, 1), got {self.dropout}")


@dataclass
class TransformerSettings:
    """Surrogate transformer sizes (astrohpc/models/transformer.py)."""

    dim: int = 64
    depth: int = 2
    heads: int = 4
    patch: list[int] = field(default_factory=lambda: [4, 4])
    fusion: Literal["cross", "concat"] = "cross"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"model.transformer.dim ({self.dim}) must be a multiple of heads ({self.heads})")
        if len(self.patch) != 2 or min(self.patch) < 1:
            raise ValueError(f"model.transformer.patch must be [lat, lon] >= 1, got {self.patch}")


@dataclass
class SFNOSettings:
    """Spherical Fourier neural operator sizes (astrohpc/models/sfno.py): `embed` channels,
    `layers` spectral blocks, each mixing channels per spherical-harmonic degree up to the GCM's
    truncation (`truncation`: 0 takes the cube's, T21 -> 21)."""

    embed: int = 48
    layers: int = 4
    mlp_ratio: float = 2.0
    truncation: int = 0

    def __post_init__(self) -> None:
        if self.embed < 1 or self.layers < 1 or not self.mlp_ratio > 0 or self.truncation < 0:
            raise ValueError("model.sfno.embed, layers must be >= 1, mlp_ratio > 0 and truncation >= 0")


@dataclass
class GPSettings:
    """The Gaussian-process climate surrogate (astrohpc/models/gp_climate.py): EOF components kept
    up to `variance_kept` of each variable's variance (at most `max_components`), one GP per
    component, hyperparameters from `restarts` + 1 optimiser starts; `smoothness`: the Matérn ν
    tried for each component, the one of highest log marginal likelihood kept; `loo_calibration`:
    scale each component's predictive variance by its training runs' mean squared standardised
    leave-one-out residual (closed form), and take the truncation variance from leave-one-out PCA
    (fitted on the training runs only)."""

    variance_kept: float = 0.999
    max_components: int = 8
    restarts: int = 4
    smoothness: list[float] = field(default_factory=lambda: [0.5, 1.5, 2.5])
    loo_calibration: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.variance_kept <= 1:
            raise ValueError(f"model.gp.variance_kept must be in (0, 1], got {self.variance_kept}")
        if self.max_components < 1 or self.restarts < 0:
            raise ValueError("model.gp.max_components must be >= 1 and model.gp.restarts >= 0")


@dataclass
class PhysicsSettings:
    """Physics loss weights (0 or absent: off) and the hard correctors applied after every step.

    correctors: absent = every one the task can use (emulator: humidity, dry_mass, energy;
    climate: humidity, plus dry_mass when it is given spin-up days); [] = none (the ablation)."""

    loss_weights: dict[str, float] = field(default_factory=dict)
    correctors: Optional[list[str]] = None

    def __post_init__(self) -> None:
        unknown = [k for k in self.loss_weights if k not in LOSS_TERMS]
        if unknown:
            raise ValueError(f"model.physics.loss_weights: unknown term {', '.join(unknown)}; "
                             f"valid: {', '.join(LOSS_TERMS)}")
        negative = [k for k, w in self.loss_weights.items() if w < 0]
        if negative:
            raise ValueError(f"model.physics.loss_weights: {', '.join(negative)} must be >= 0")
        bad = [c for c in self.correctors or () if c not in CORRECTORS]
        if bad:
            raise ValueError(f"model.physics.correctors: unknown {', '.join(bad)}; valid: {', '.join(CORRECTORS)}")


@dataclass
class UncertaintySettings:
    """How a prediction carries its uncertainty: none, a heteroscedastic Gaussian head (trained
    with the Gaussian NLL), MC dropout (`samples` passes with dropout on), or a deep ensemble
    (`members` models trained with different seeds)."""

    method: Literal["none", "gaussian", "mc_dropout", "ensemble"] = "none"
    samples: int = 16
    members: int = 3

    def __post_init__(self) -> None:
        if self.samples < 1 or self.members < 1:
            raise ValueError("model.uncertainty.samples and members must be >= 1")


@dataclass
class ModelSettings:
    """The surrogate: task, architecture, output mode, inputs and outputs, physics, uncertainty.

    variables: predicted variables (all levels of each); empty = every cube variable that is
        not a forcing or a diagnostic. For the emulator they are its prognostic variables (fed
        back). forcings: input-only variables, given at t and t+1 (never predicted).
        diagnostics (emulator): output-only variables — predicted for each step, never fed back
        (fluxes, precipitation, ω; on a cube of step means, their mean over the step).
        The three roles are disjoint; every channel the model reads has exactly one.
    loss_weights: per-variable weights of the data loss (absent: 1).
    project_tendency (emulator): each step's tendency (and diagnostics) projected onto the GCM's
        spherical-harmonic truncation (a Gauss grid), so no power above it is created.
    step_days (emulator): the step the model is meant for; a cube whose states are another
        interval apart is an error (None: the cube's).
    mode: what the model outputs — `datacube` (full fields), `scalar` (global means of
        `scalars`), `spectral` (the thermal emission spectrum sidecar), `joint` (all, weighted
        by `head_weights`). The U-Net outputs datacubes only.
    spinup_steps: climate task only — days of the run given as input (0: parameters alone).
    architecture gp: the Gaussian-process climate surrogate (task: climate, parameters alone,
        datacube time means; settings in `gp`). params: the run parameters a model reads (empty:
        every parameter that varies across the cube's runs).
    """

    task: Literal["emulator", "climate"] = "emulator"
    architecture: Literal["unet", "transformer", "gp", "sfno"] = "unet"
    mode: Literal["datacube", "scalar", "spectral", "joint"] = "datacube"
    variables: list[str] = field(default_factory=list)
    forcings: list[str] = field(default_factory=lambda: ["rsdt"])
    diagnostics: list[str] = field(default_factory=list)
    loss_weights: dict[str, float] = field(default_factory=dict)
    project_tendency: bool = False
    step_days: Optional[float] = None
    static: bool = True
    scalars: list[str] = field(default_factory=lambda: ["ts", "rsdt", "rst", "rlut", "ntr"])
    head_weights: dict[str, float] = field(default_factory=lambda: {"datacube": 1.0, "scalar": 1.0, "spectral": 1.0})
    spinup_steps: int = 0
    unet: UNetSettings = field(default_factory=UNetSettings)
    transformer: TransformerSettings = field(default_factory=TransformerSettings)
    gp: GPSettings = field(default_factory=GPSettings)
    sfno: SFNOSettings = field(default_factory=SFNOSettings)
    params: list[str] = field(default_factory=list)
    physics: PhysicsSettings = field(default_factory=PhysicsSettings)
    uncertainty: UncertaintySettings = field(default_factory=UncertaintySettings)

    def __post_init__(self) -> None:
        roles = {"variables": self.variables, "forcings": self.forcings, "diagnostics": self.diagnostics}
        for a, b in (("variables", "diagnostics"), ("forcings", "diagnostics")):
            both = sorted(set(roles[a]) & set(roles[b]))
            if both:
                raise ValueError(f"model: {', '.join(both)} listed in both {a} and {b} (one role each)")
        if self.diagnostics and self.task != "emulator":
            raise ValueError("model.diagnostics are the emulator's output-only variables (task: emulator)")
        bad = sorted(k for k, w in self.loss_weights.items() if not w >= 0)
        if bad:
            raise ValueError(f"model.loss_weights: {', '.join(bad)} must be >= 0")
        if self.step_days is not None and not self.step_days > 0:
            raise ValueError(f"model.step_days must be > 0, got {self.step_days}")
        if self.architecture == "sfno" and (self.task != "emulator" or self.mode != "datacube"):
            raise ValueError("model.architecture: sfno is an emulator (task: emulator, mode: datacube)")
        if self.architecture == "gp" and (self.task != "climate" or self.mode != "datacube" or self.spinup_steps):
            raise ValueError("model.architecture: gp is a climate surrogate of time-mean fields from parameters alone: "
                             "it needs task: climate, mode: datacube and spinup_steps: 0")
        if self.architecture == "unet" and self.mode != "datacube":
            raise ValueError(f"model.mode {self.mode!r} needs architecture: transformer (the U-Net outputs datacubes)")
        both = sorted(set(self.variables) & set(self.forcings))
        if both:
            raise ValueError(f"model: {', '.join(both)} both predicted (variables) and given (forcings)")
        bad = [k for k in self.head_weights if k not in ("datacube", "scalar", "spectral")]
        if bad:
            raise ValueError(f"model.head_weights: unknown head {', '.join(bad)}; valid: datacube, scalar, spectral")
        if self.spinup_steps < 0:
            raise ValueError(f"model.spinup_steps must be >= 0, got {self.spinup_steps}")
        if self.task == "emulator" and self.spinup_steps:
            raise ValueError("model.spinup_steps is for task: climate (the emulator always starts from a state)")
        if self.physics.correctors is None:
            self.physics.correctors = (list(CORRECTORS) if self.task == "emulator" else
                                       ["humidity"] + (["dry_mass"] if self.spinup_steps else []))
        if self.task == "climate":
            step_terms = [t for t, w in self.physics.loss_weights.items() if t in STEP_LOSS_TERMS and w > 0]
            if step_terms:
                raise ValueError(f"model.physics.loss_weights: {', '.join(step_terms)} compare a step with the state "
                                 "before it; task: climate predicts time means (use them with task: emulator)")
            bad = [c for c in self.physics.correctors if c in STEP_CORRECTORS]
            if bad or ("dry_mass" in self.physics.correctors and not self.spinup_steps):
                raise ValueError("model.physics.correctors: task: climate can use humidity, and dry_mass when "
                                 "spinup_steps > 0 (the dry mass of the last spin-up day is kept); "
                                 f"got {self.physics.correctors}")
            if self.uncertainty.method == "gaussian" and self.architecture == "unet":
                raise ValueError("model.uncertainty.method: gaussian needs architecture: transformer for task: climate")
        if self.task == "emulator" and self.uncertainty.method == "gaussian":
            raise ValueError("model.uncertainty.method: gaussian is for task: climate; an emulator's spread comes "
                             "from rolling out an ensemble (method: ensemble or mc_dropout)")
        if self.task == "emulator" and self.mode != "datacube":
            raise ValueError(f"model.mode {self.mode!r}: the emulator steps full fields (mode: datacube); "
                             "scalar, spectral and joint heads are for task: climate")
