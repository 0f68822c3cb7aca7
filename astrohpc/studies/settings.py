"""The `study:` config section: what a study evaluates and how it is split into tasks.

Strict like every section. A study reads a trained surrogate (`model`: an `export/best.pt` or
`export/last.pt` of `astrohpc train`) and the cube it was trained on (recorded in the export);
its held-out runs are `runs` (default: the training run's test runs — whole runs the trainer
never read), or the runs of another cube (`cube`: scoring on any cube).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class StudySettings:
    """climate_model: parity also scores this exported climate surrogate's time means (trained on the same cube).
    model: exported weights to study. sweep: the sweep folder that produced the studied runs' cube (parity's GCM
    twin runs use its task configs and spin-up restart; its cube of interval means gives the GCM's TOA flux). runs:
    run names to study (default: the export's test runs). twin: run a GCM twin of each studied run, identical but
    for `twin_delta_instellation_W_m2`, as the GCM's own noise floor.
    cube / runs for the parity, rollout and calibration studies (astrohpc.studies.studied_cube): score the runs of
    `cube`, another cube than the training cube (a colleague's runs, converted separately; `runs` default: all of
    its runs; calibration: in place of the test runs, the σ-scale still fitted on the validation runs). Its
    channels are matched to the model's by variable, level and units, its grid, static fields and output
    interval checked, and its planet parameters normalised with the export's own transform, mean and std; what
    differs is one error naming the cube and the fix. Its runs are held out whatever their names; a cube with
    the training cube's cube_id is the training cube (its training runs refused by name). The baselines still
    come from the training runs: the training cube must stay where the export recorded it. With such a cube,
    `sweep` must be the sweep that produced its runs (checked against each run's planet parameters before any
    GCM runs), so the twin reruns them; without `sweep`, parity refuses the twin — set study.twin=false.
    cost_batch: initial states (the emulator) or runs (the climate surrogate) per batch in the
    surrogates' batched cost measurement. rollout_steps / initial_conditions / segment_steps: the rollout study
    (steps per initial condition, how many per run, steps per restartable segment). components / seeds: the
    ablation study — named ablations of the model/train sections (astrohpc.studies.ablation; empty: every one
    that applies to this config) and the seeds each variant and the full model are trained with, paired by seed
    (at least 2, distinct; default 5: fewer leaves the statistics weak and the aggregation says so).
    spinup_cube / spinup_days / target_days: the spin-up study (astrohpc.studies.spinup) — the cube of a
    cold-start sweep (default: `sweep`/datacube.h5), the numbers of first daily states k a surrogate is given (one
    task each; not sweep.spinup_days, the GCM's shared spin-up), and the states at the end of each run whose
    mean is the later state it predicts.
    methods: the calibration study (astrohpc.studies.calibration) — the uncertainty methods to train and score,
    one task each (empty: every one the model can use); an ensemble has model.uncertainty.members members, MC
    dropout model.uncertainty.samples passes.
    cube (its other meaning) / average_days / outside_runs / score_channels / ood_std_factor: the climate study
    (astrohpc.studies.climate_loo) — the cube of interval means whose last `average_days` days are each run's
    climate (default: `sweep`/datacube_means.h5), runs outside the design's envelope (never fitted: predicted by the
    model of every other run, to test the out-of-envelope flag), the channels scored ('ta@0.5': the level nearest
    σ = 0.5), and the factor on the largest leave-one-out predictive spread above which a prediction is flagged.
    climate_twins: the climate study — how many runs inside the envelope (evenly spread in name order) are run again
    as GCM twins (instellation + `twin_delta_instellation_W_m2`, from the sweep's task and spin-up: needs `sweep`);
    the RMSE between a twin's time mean and its run's, pooled over the twins, is the GCM's own time-mean floor each
    leave-one-out RMSE is also given as a ratio to (0: none). compare_model / compare_epochs: the climate study — a
    model config (its `model:` section, e.g. configs/model/climate_transformer.yaml) of a climate network trained in
    every leave-one-out task on the same runs, `compare_epochs` epochs, with each run's last `average_days` mean as
    its target, and scored beside the GP as method "network" (None: no network)."""

    model: Optional[str] = None
    climate_model: Optional[str] = None
    sweep: Optional[str] = None
    runs: list[str] = field(default_factory=list)
    twin: bool = True
    twin_delta_instellation_W_m2: float = 1e-3
    cost_batch: int = 8
    rollout_steps: int = 10000
    initial_conditions: int = 2
    segment_steps: int = 1000
    components: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    spinup_cube: Optional[str] = None
    spinup_days: list[int] = field(default_factory=lambda: [5, 10, 20])
    target_days: int = 10
    methods: list[str] = field(default_factory=list)
    cube: Optional[str] = None
    average_days: int = 60
    outside_runs: list[str] = field(default_factory=list)
    score_channels: list[str] = field(default_factory=lambda: ["ts", "tas", "ta@0.5", "rlut", "pr"])
    ood_std_factor: float = 1.2
    climate_twins: int = 0
    compare_model: Optional[str] = None
    compare_epochs: int = 60

    def __post_init__(self) -> None:
        if self.cost_batch < 1 or self.rollout_steps < 1 or self.initial_conditions < 1 or self.segment_steps < 1:
            raise ValueError("study.cost_batch, rollout_steps, initial_conditions and segment_steps must be >= 1")
        if not self.twin_delta_instellation_W_m2 > 0:
            raise ValueError(f"study.twin_delta_instellation_W_m2 must be > 0, got "
                             f"{self.twin_delta_instellation_W_m2}")
        if len(self.seeds) < 2 or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"study.seeds must hold at least 2 distinct seeds (the ablation pairs variants with the "
                             f"full model by seed), got {self.seeds}")
        repeated = sorted({c for c in self.components if self.components.count(c) > 1})
        if repeated:
            raise ValueError(f"study.components: {', '.join(repeated)} given more than once")
        twice = sorted({m for m in self.methods if self.methods.count(m) > 1})
        if twice:
            raise ValueError(f"study.methods: {', '.join(twice)} given more than once")
        if not self.spinup_days or min(self.spinup_days) < 1 or len(set(self.spinup_days)) != len(self.spinup_days):
            raise ValueError(f"study.spinup_days must hold distinct day counts >= 1 (one spin-up study task each), "
                             f"got {self.spinup_days}")
        if self.average_days < 1 or not self.ood_std_factor > 0:
            raise ValueError(f"study.average_days must be >= 1 and study.ood_std_factor > 0, got "
                             f"{self.average_days}, {self.ood_std_factor}")
        if self.compare_epochs < 1:
            raise ValueError(f"study.compare_epochs must be >= 1, got {self.compare_epochs}")
        if self.climate_twins < 0:
            raise ValueError(f"study.climate_twins must be >= 0, got {self.climate_twins}")
        if self.target_days < 1:
            raise ValueError(f"study.target_days must be >= 1 (states averaged at the end of each run), "
                             f"got {self.target_days}")
