"""The `train:` config section: how a surrogate is trained, validated, checkpointed and exported.

Strict like every section (astrohpc/config.py). The cube is `data.cube` (or `train.cube`), the
model the `model:` section, the run directory `run.root/run.name`. Sizes are global: a batch of
`batch_size` windows is split evenly over the ranks, so a 2-rank run and a 1-rank run see the
same global batches (the loss of one equals the other's within float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

AMP_MODES = ("none", "fp16", "bf16")


@dataclass
class TrainSettings:
    """cube: the datacube (default data.cube). validation_runs / test_runs: run names held out
    whole (validation: per-epoch metrics and the best-weights choice; test: never read by the
    trainer — the parity study's). validation_fraction: when validation_runs is empty, this share
    of the remaining runs (at least 1), drawn with run.seed.
    epochs, max_steps (0: epochs decide), batch_size (global), lr (peak of the OneCycle schedule,
    or the constant rate), weight_decay, grad_clip (max global norm, 0: off).
    amp: none | fp16 (CUDA only, with a GradScaler) | bf16 (autocast on CPU or GPU).
    unroll_steps: emulator steps per sample in the loss (multi-step, correctors inside).
    checkpoint_every: steps between checkpoints (0: only at the end and on a signal);
    keep_checkpoints: how many are kept. max_restarts: requeues after a preemption signal.
    signal: the preemption signal in Slurm's --signal form ([B:]SIG[@seconds], e.g. USR1@120):
    the trainer listens for it (and SIGTERM), `astrohpc submit train` passes it to sbatch.
    num_workers: DataLoader workers per rank (0: read in the training process; see
    docs/benchmarks.md for why that is the default on small nodes). threads: torch intra-op
    threads per rank (0: torch's default). deterministic: torch deterministic algorithms.
    Emulator training for rollouts: input_noise — Gaussian noise, in units of each prognostic
    channel's std, added to the state each unrolled step starts from (0: none); ema_decay — an
    exponential moving average of the weights, used for validation and export (0: none);
    select_by: "rollout" chooses the best weights by a validation rollout — each validation run
    stepped from its first state for rollout_validation_steps steps (0: its whole length), the
    RMSE over the run in units of each channel's std, averaged — among the epochs whose
    stability_steps-step rollout stayed finite and within the GCM's bounds; "loss": the
    one-step validation loss.
    init_from: an export (RUN_DIR/export/best.pt) whose weights this run starts from — fine-tuning with
    a fresh optimiser and schedule; its model section must equal this config's.
    """

    cube: Optional[str] = None
    validation_runs: list[str] = field(default_factory=list)
    test_runs: list[str] = field(default_factory=list)
    validation_fraction: float = 0.25
    epochs: int = 10
    max_steps: int = 0
    batch_size: int = 4
    lr: float = 1e-3
    schedule: Literal["onecycle", "constant"] = "onecycle"
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    amp: Literal["none", "fp16", "bf16"] = "none"
    unroll_steps: int = 1
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    max_restarts: int = 3
    signal: str = "USR1@120"
    num_workers: int = 0
    threads: int = 0
    deterministic: bool = True
    log_every: int = 10
    validate: bool = True
    input_noise: float = 0.0
    ema_decay: float = 0.0
    select_by: Literal["loss", "rollout"] = "loss"
    rollout_validation_steps: int = 0
    stability_steps: int = 1000
    init_from: Optional[str] = None

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "unroll_steps": self.unroll_steps,
                    "keep_checkpoints": self.keep_checkpoints, "log_every": self.log_every}
        bad = [f"train.{k} = {v}" for k, v in positive.items() if v < 1]
        bad += [f"train.{k} = {v}" for k, v in {"max_steps": self.max_steps, "checkpoint_every": self.checkpoint_every,
                                                 "max_restarts": self.max_restarts, "num_workers": self.num_workers,
                                                 "threads": self.threads}.items() if v < 0]
        if bad:
            raise ValueError(f"{', '.join(bad)}: sizes must be >= 1 (counts >= 0)")
        if not self.lr > 0 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"train.lr must be > 0 and weight_decay, grad_clip >= 0 (got {self.lr}, "
                             f"{self.weight_decay}, {self.grad_clip})")
        if self.input_noise < 0 or not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"train.input_noise must be >= 0 and train.ema_decay in [0, 1) (got {self.input_noise}, "
                             f"{self.ema_decay})")
        if self.rollout_validation_steps < 0 or self.stability_steps < 0:
            raise ValueError("train.rollout_validation_steps and train.stability_steps must be >= 0")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(f"train.validation_fraction must be in [0, 1), got {self.validation_fraction}")
        both = sorted(set(self.validation_runs) & set(self.test_runs))
        if both:
            raise ValueError(f"train: run(s) {', '.join(both)} are both validation_runs and test_runs")
