"""The training run: one function that every launcher ends in (srun, mpirun, torchrun, submitit).

    train(cfg) -> summary dict

1. The distributed environment is detected (astrohpc.train.distributed) and the process group
   started: gloo on CPU, NCCL with `cuda:LOCAL_RANK` when CUDA is present.
2. Seeds (run.seed) are set identically on every rank; torch's deterministic algorithms are on
   when train.deterministic (CPU runs are then bit-reproducible).
3. The cube's runs are split whole (train / validation / test); the model is built from the
   `model:` section with its normalisation pooled over the training runs; the net is wrapped in
   DistributedDataParallel when world > 1 (static graph: the net runs `unroll_steps` times per
   loss and may checkpoint activations), BatchNorm becomes SyncBatchNorm on CUDA (gloo has no
   SyncBatchNorm on CPU: there each rank keeps its own batch statistics, logged).
4. AdamW, OneCycle (or constant) over the total number of optimizer steps = epochs × steps per
   epoch, where steps per epoch = (training samples per rank under the distributed sampler) //
   (global batch / world), or train.max_steps. Gradient clipping on the global norm; AMP per
   astrohpc.train.precision.
5. The loss is the task's objective (astrohpc.models.objective): for the emulator the multi-step
   loss with the hard correctors inside the unrolled steps; physics weights from model.physics.
6. Every epoch: validation on the held-out validation runs (area-weighted RMSE per channel in
   physical units beside persistence or the training climatology); metrics CSV/JSON; the best
   (lowest validation loss) and the last weights exported with the config and normalisation.
7. Checkpoints every train.checkpoint_every steps and when a preemption signal arrives: all ranks
   agree (all-reduce) to stop at the same step, rank 0 writes the checkpoint and requeues the
   Slurm job (while SLURM_RESTART_COUNT < train.max_restarts). A new start resumes from the
   newest valid checkpoint; on the same world size, with num_workers=0 on CPU, the weights at the
   end are bit-identical to an uninterrupted run's.

Run directory: run.root/run.name — checkpoints/, export/{best,last}.pt, metrics/, metrics.json,
run.json (provenance). Progress: a tqdm bar on rank 0 when `progress=True` (the CLI's choice).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import nn

from astrohpc.config import to_dict
from astrohpc.errors import CheckpointError, ConfigError
from astrohpc.train import checkpoint as ckpt
from astrohpc.train.data import TrainData, build_data, train_loader, validation_loader
from astrohpc.train.distributed import DistEnv, detect, init_process_group, shutdown
from astrohpc.train.export import export_info, export_weights, plain
from astrohpc.train.metrics_log import MetricsLog
from astrohpc.train.precision import autocast, check_amp, grad_scaler
from astrohpc.train.preemption import PreemptionFlag, parse_signal, requeue
from astrohpc.train.validate import to_device, validate_climate, validate_emulator

log = logging.getLogger(__name__)

# train.* keys that may change between a checkpoint and its resume (they do not change the maths)
RESUMABLE_KEYS = ("epochs", "max_steps", "checkpoint_every", "keep_checkpoints", "max_restarts", "num_workers",
                  "log_every", "threads", "signal")


def run_dir(cfg: Any) -> Path:
    return Path(cfg.run.root) / cfg.run.name


def seed_everything(seed: int, deterministic: bool) -> None:
    """The same seed on every rank (DDP then also broadcasts rank 0's weights)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def fingerprint(cfg: Any, data: TrainData) -> dict[str, Any]:
    """What a checkpoint must share with the run that resumes it."""
    settings = to_dict(cfg)
    train = {k: v for k, v in settings["train"].items() if k not in RESUMABLE_KEYS}
    return {"model": settings["model"], "train": train, "seed": cfg.run.seed, "cube": str(data.cube),
            "split": data.split.describe()}


@contextlib.contextmanager
def plain_net(model: nn.Module, net: nn.Module) -> Iterator[nn.Module]:
    """`model` with `net` (the unwrapped one) in place of its DDP wrapper, for validation,
    saving and export."""
    wrapped = model.net
    model.net = net
    try:
        yield model
    finally:
        model.net = wrapped


def _reduce_mean(values: dict[str, float], env: DistEnv, device: torch.device) -> dict[str, float]:
    if not env.is_distributed:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / env.world_size for k, v in zip(keys, t.cpu())}


def _gather(obj: Any, env: DistEnv) -> list[Any]:
    if not env.is_distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


class Trainer:
    """One training run (see the module doc). Build, then `fit()`."""

    def __init__(self, cfg: Any, env: Optional[DistEnv] = None, progress: bool = False):
        self.cfg, self.t = cfg, cfg.train
        self.env = env or detect()
        self.device = torch.device(self.env.device)
        check_amp(self.t.amp, self.device)
        self.signal, self.signal_seconds, _ = parse_signal(self.t.signal)
        self.progress = progress and self.env.is_main
        self.dir = run_dir(cfg)
        self.log = MetricsLog(self.dir, enabled=self.env.is_main)
        if self.t.threads:
            torch.set_num_threads(self.t.threads)
        seed_everything(cfg.run.seed, self.t.deterministic)

        from astrohpc.models.build import build, build_physics_loss

        self.data, self.model = build_data(cfg, lambda meta, runs: build(cfg.model, meta, runs),
                                           self.env.world_size, self.env.rank)
        self.physics = build_physics_loss(cfg.model, self.data.meta, self.model.plan)
        if self.t.init_from:
            self._init_from(self.t.init_from)
        self.model.to(self.device)
        self.net = self.model.net
        if self.env.is_distributed and self.device.type == "cuda":
            self.net = nn.SyncBatchNorm.convert_sync_batchnorm(self.net)
            self.model.net = self.net
        elif self.env.is_distributed and any(isinstance(m, nn.modules.batchnorm._BatchNorm)
                                             for m in self.net.modules()):
            log.info("gloo on CPU has no SyncBatchNorm: each rank normalises with its own batch statistics")
        self.ddp: Optional[nn.Module] = None
        if self.env.is_distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DistributedDataParallel(self.net, device_ids=ids, static_graph=True)
            self.model.net = self.ddp
        params = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=self.t.lr, weight_decay=self.t.weight_decay)
        self.steps_per_epoch = self.data.steps_per_epoch
        self.total_steps = self.t.max_steps or self.t.epochs * self.steps_per_epoch
        if self.t.schedule == "onecycle":
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=self.t.lr,
                                                                 total_steps=self.total_steps)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _step: 1.0)
        self.scaler = grad_scaler(self.t.amp, self.device)
        self.step = self.epoch = 0
        # where this process's time goes (this attempt only): waiting for batches, the training
        # step (forward, backward, all-reduce, optimizer), each checkpoint write (rank 0)
        self.timing: dict[str, Any] = {"data_wait_s": 0.0, "step_s": 0.0, "steps": 0, "checkpoint_s": []}
        self.best: Optional[dict[str, Any]] = None
        self.history: list[dict[str, Any]] = []
        self.channel_names = self.model.plan.describe()["channel_names"]
        self.units = [self.data.meta.units[c] for c in self.model.plan.cube_channels]
        self.climatology = self._climatology() if cfg.model.task == "climate" else None
        # exponential moving average of the weights (train.ema_decay): validated and exported
        self.ema: Optional[dict[str, torch.Tensor]] = (
            {k: p.detach().clone() for k, p in self.net.named_parameters()} if self.t.ema_decay > 0 else None)

    def _init_from(self, path: str) -> None:
        """Start from an export's weights (train.init_from); CheckpointError when it is another model."""
        from astrohpc.config import to_dict
        from astrohpc.train.export import read_export

        payload = read_export(path)
        theirs, mine = payload["config"]["model"], plain(to_dict(self.cfg.model))
        diff = [k for k in ("task", "architecture", theirs.get("architecture")) if theirs.get(k) != mine.get(k)]
        if diff:
            raise CheckpointError(f"train.init_from {path}: its model section differs in {', '.join(diff)}; "
                                  "fine-tuning starts from the same model")
        try:
            self.model.load_state_dict(payload["model_state"])
        except RuntimeError as exc:
            raise CheckpointError(f"train.init_from {path}: its weights do not fit this model ({str(exc)[:300]})") \
                from None
        log.info("weights from %s (step %s of its run)", path, payload.get("step"))

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        with plain_net(self.model, self.net):
            model_state = self.model.state_dict()
        return {"step": self.step, "epoch": self.epoch, "model": model_state,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "sampler": self.data.sampler.state_dict(),
                "best": self.best, "history": self.history, "world_size": self.env.world_size, "ema": self.ema,
                "fingerprint": plain(fingerprint(self.cfg, self.data))}

    def save_checkpoint(self, reason: str) -> Optional[Path]:
        """Every rank calls it (the RNG states are gathered); rank 0 writes."""
        rank_states = _gather(ckpt.capture_rng(), self.env)
        path = None
        if self.env.is_main:
            started = time.perf_counter()
            path = ckpt.save_checkpoint(self.dir / "checkpoints", self.step, self.state(), self.t.keep_checkpoints,
                                        rank_states=rank_states)
            self.timing["checkpoint_s"].append(time.perf_counter() - started)
            log.info("checkpoint at step %d (%s): %s", self.step, reason, path)
        self._barrier()
        return path

    def resume(self) -> bool:
        """Load the newest valid checkpoint, if any. CheckpointError when it belongs to another run."""
        found = ckpt.load_latest(self.dir / "checkpoints", map_location="cpu")
        if found is None:
            return False
        state, path = found
        mine = plain(fingerprint(self.cfg, self.data))
        if state.get("fingerprint") != mine:
            diff = sorted(k for k in mine if state.get("fingerprint", {}).get(k) != mine[k])
            raise CheckpointError(f"{path}: written by a run with a different {', '.join(diff)}; start a new run "
                                  f"(run.name=...) or delete {path.parent}")
        with plain_net(self.model, self.net):
            self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.data.sampler.load_state_dict(state["sampler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.best, self.history = state.get("best"), list(state.get("history") or [])
        if self.ema is not None and state.get("ema") is not None:
            self.ema = {k: v.to(self.device) for k, v in state["ema"].items()}
        ranks = state.get("rank_states") or []
        if state.get("world_size") == self.env.world_size and len(ranks) > self.env.rank:
            ckpt.restore_rng(ranks[self.env.rank])
        else:
            log.warning("resuming %d ranks from a %s-rank checkpoint: RNG streams restart, the run is not "
                        "bit-identical to an uninterrupted one", self.env.world_size, state.get("world_size"))
        self.log.resume(self.step)
        log.info("resumed from %s at step %d (epoch %d)", path, self.step, self.epoch)
        return True

    # ------------------------------------------------------------------ steps

    def _loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        from astrohpc.models.objective import climate_loss, emulator_loss

        with autocast(self.t.amp, self.device):
            if self.cfg.model.task == "emulator":
                return emulator_loss(self.model, batch, self.physics, noise=self.t.input_noise)
            return climate_loss(self.model, batch, self.physics, self.cfg.model.head_weights)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        self.model.train()
        batch = to_device(batch, self.device)
        self.optimizer.zero_grad(set_to_none=True)
        parts = self._loss(batch)
        loss = parts["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {self.step + 1}: {float(loss)}; lower "
                                     "train.lr or check the cube for NaN fields (`astrohpc data validate`)")
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.net.parameters() if p.requires_grad]
        if self.t.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(params, self.t.grad_clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params if p.grad is not None])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        if self.ema is not None:
            with torch.no_grad():
                for k, p in self.net.named_parameters():
                    self.ema[k].lerp_(p.detach(), 1.0 - self.t.ema_decay)
        return {k: float(v.detach()) for k, v in parts.items()} | {"grad_norm": float(norm)}

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[None]:
        """The EMA weights in the net for the block (validation, export); the trained ones after."""
        if self.ema is None:
            yield
            return
        params = dict(self.net.named_parameters())
        saved = {k: p.detach().clone() for k, p in params.items()}
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(self.ema[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in params.items():
                    p.copy_(saved[k])

    def validate(self) -> Optional[dict[str, Any]]:
        loader = validation_loader(self.data, self.env.world_size, self.env.rank)
        if loader is None:
            return None
        self.model.eval()
        with plain_net(self.model, self.net):
            if self.cfg.model.task == "emulator":
                return validate_emulator(self.model, loader, self.device, self.t.unroll_steps, self.units,
                                         self.channel_names, self.physics)
            return validate_climate(self.model, loader, self.device, self.climatology, self.units,
                                    self.channel_names, self.physics, self.cfg.model.head_weights)

    def _climatology(self) -> torch.Tensor:
        """Mean of the training runs' time means [C, lat, lon], physical (the climate baseline)."""
        means = [self.data.train[i]["mean"].double() for i in range(len(self.data.train))]
        return torch.stack(means).nanmean(dim=0).float()

    # ------------------------------------------------------------------ the loop

    def fit(self) -> dict[str, Any]:
        started = time.perf_counter()
        self.resume()
        if self.env.is_main:
            from astrohpc.provenance import write_run_metadata

            write_run_metadata(self.dir, self.cfg, {"distributed": self.env.describe(),
                                                    "split": self.data.split.describe(),
                                                    "steps_per_epoch": self.steps_per_epoch,
                                                    "total_steps": self.total_steps})
        bar = _progress(self.progress, self.total_steps, self.step)
        status, requeued = "finished", None
        flag = PreemptionFlag(sorted({self.signal, signal.SIGTERM}))
        flag.install()
        window_start, window_samples = time.perf_counter(), 0
        try:
            while self.step < self.total_steps:
                if self.data.sampler.epoch != self.epoch:
                    self.data.sampler.set_epoch(self.epoch)
                loader = train_loader(self.data, self.t.num_workers, self.cfg.run.seed * 1_000_003 + self.epoch)
                batches = iter(loader)
                while True:
                    fetch = time.perf_counter()
                    batch = next(batches, None)
                    self.timing["data_wait_s"] += time.perf_counter() - fetch
                    if batch is None:
                        break
                    compute = time.perf_counter()
                    parts = self.train_step(batch)
                    self.timing["step_s"] += time.perf_counter() - compute
                    self.timing["steps"] += 1
                    self.data.sampler.skip(self.data.sampler.consumed + self.data.rank_batch)
                    window_samples += self.t.batch_size
                    if bar is not None:
                        bar.update(1)
                    if self.step % self.t.log_every == 0 or self.step == self.total_steps:
                        elapsed = max(time.perf_counter() - window_start, 1e-9)
                        mean = _reduce_mean(parts, self.env, self.device)
                        row = {"step": self.step, "epoch": self.epoch, "lr": self.scheduler.get_last_lr()[0],
                               **mean, "samples_per_s": window_samples / elapsed}
                        self.log.log_train(row)
                        if bar is not None:
                            bar.set_postfix(loss=f"{mean['loss']:.4g}")
                        window_start, window_samples = time.perf_counter(), 0
                    if self.t.checkpoint_every and self.step % self.t.checkpoint_every == 0:
                        self.save_checkpoint(f"every {self.t.checkpoint_every} steps")
                    if flag.agreed(str(self.device) if self.env.backend == "nccl" else "cpu"):
                        status = "preempted"
                        break
                    if self.step >= self.total_steps:
                        break
                if status == "preempted":
                    break
                if self.data.sampler.remaining < self.data.rank_batch or self.step >= self.total_steps:
                    self._end_epoch()
            if status == "preempted":
                self.save_checkpoint(f"signal {flag.signal_name}")
                requeued = self._requeue()
            else:
                self.save_checkpoint("end of training")
                with self.averaged_weights():
                    self._export("last")
        finally:
            flag.restore()
            if bar is not None:
                bar.close()
        summary = self._summary(status, requeued, time.perf_counter() - started)
        self._sync_buffers()
        summary["weights_sha256"] = _gather(state_digest(self.net), self.env)
        summary["timing_per_rank"] = _gather(dict(self.timing), self.env)
        self.log.write_summary(summary)
        return summary

    def _sync_buffers(self) -> None:
        """Rank 0's buffers (BatchNorm running statistics) to every rank: DDP syncs them at each
        forward, but the last forward leaves each rank's own; validation and export use rank 0's."""
        if self.env.is_distributed:
            import torch.distributed as dist

            for buffer in self.net.buffers():
                dist.broadcast(buffer.data, 0)

    def _end_epoch(self) -> None:
        self._sync_buffers()
        with self.averaged_weights():
            result = self.validate() if self.t.validate else None
            record = {"epoch": self.epoch, "step": self.step}
            if result is not None:
                record |= {"validation_loss": result["loss"], "beats_baseline": result["beats_baseline"]}
                if self.t.select_by == "rollout":
                    result["rollout"] = self.validate_rollout()
                    record |= {"rollout_score": result["rollout"]["score"], "stable": result["rollout"]["stable"]}
                self.log.log_validation(self.epoch, self.step, result)
                if self._better(record):
                    self.best = {"epoch": self.epoch, "step": self.step, "validation_loss": result["loss"],
                                 **{k: record[k] for k in ("rollout_score", "stable") if k in record}}
                    self._export("best", result)
        self.history.append(record)
        self.epoch += 1

    def _better(self, record: dict[str, Any]) -> bool:
        """Whether this epoch's weights replace the best: lower validation loss, or (select_by:
        rollout) stable and a lower rollout score — a stable epoch always beats an unstable one."""
        if self.best is None:
            return True
        if self.t.select_by == "rollout":
            mine = (not record["stable"], record["rollout_score"])
            theirs = (not self.best.get("stable", False), self.best.get("rollout_score", float("inf")))
            return mine < theirs
        return record["validation_loss"] < self.best["validation_loss"]

    def validate_rollout(self) -> dict[str, Any]:
        """Rollout score and stability on the validation runs (astrohpc.train.validate.validate_rollout)."""
        from astrohpc.train.validate import validate_rollout

        with plain_net(self.model, self.net):
            return validate_rollout(self.model, self.data.meta, list(self.data.split.validation),
                                    self.data.param_norm, self.t.rollout_validation_steps, self.t.stability_steps,
                                    self.device)

    def _export(self, which: str, validation: Optional[dict] = None) -> None:
        if not self.env.is_main:
            return
        from astrohpc.provenance import collect

        info = {"config": to_dict(self.cfg), "cube": str(self.data.cube), "run_split": self.data.split.describe(),
                "param_norm": self.data.param_norm, "plan": self.model.plan.describe(),
                "n_bins": getattr(self.data.train, "n_bins", 0), "step": self.step, "epoch": self.epoch,
                "validation": validation, "provenance": collect(self.cfg),
                **export_info(self.data.meta, self.data.param_norm, list(self.data.split.train))}
        with plain_net(self.model, self.net):
            export_weights(self.dir / "export" / f"{which}.pt", self.model, info)

    def _requeue(self) -> Optional[dict[str, Any]]:
        if not self.env.is_main:
            return None
        from astrohpc.launch.job_env import SlurmJobEnv

        done, reason = requeue(SlurmJobEnv.from_environ(), self.t.max_restarts)
        log.warning("stopped by a preemption signal at step %d; %s", self.step,
                    "job requeued" if done else f"not requeued: {reason}")
        return {"requeued": done, "reason": reason}

    def _barrier(self) -> None:
        if self.env.is_distributed:
            import torch.distributed as dist

            dist.barrier()

    def _summary(self, status: str, requeued: Optional[dict], wall_s: float) -> dict[str, Any]:
        return {"status": status, "step": self.step, "total_steps": self.total_steps, "epoch": self.epoch,
                "steps_per_epoch": self.steps_per_epoch, "global_batch": self.t.batch_size,
                "best": self.best, "history": self.history, "requeue": requeued, "wall_s": wall_s,
                "timing": dict(self.timing),
                "run_dir": str(self.dir), "split": self.data.split.describe(), "distributed": self.env.describe(),
                "exports": {w: str(self.dir / "export" / f"{w}.pt") for w in ("best", "last")
                            if (self.dir / "export" / f"{w}.pt").exists()}}


def state_digest(module: nn.Module) -> str:
    """sha256 of a module's state (names, dtypes, shapes, bytes): equal on every rank after DDP."""
    import hashlib

    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        t = value.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _progress(enabled: bool, total: int, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", file=sys.stderr, dynamic_ncols=True)


def train(cfg: Any, progress: bool = False, env: Optional[DistEnv] = None) -> dict[str, Any]:
    """Detect the launch, start the process group, train (resuming if a checkpoint exists), shut
    down. Returns the summary (also in run_dir/metrics.json)."""
    env = env or detect()
    if cfg.train.unroll_steps > 1 and cfg.model.task != "emulator":
        raise ConfigError("train.unroll_steps > 1 is for model.task = emulator (the climate surrogate has no steps)")
    init_process_group(env)
    trainer = None
    try:
        trainer = Trainer(cfg, env, progress)
        summary = trainer.fit()
    finally:
        # free DDP (its reducer holds the process group, and reference cycles keep it alive until a
        # later collection) before the group goes: else a rank may abort at exit with "terminate
        # called without an active exception"
        trainer = None
        gc.collect()
        shutdown()
    return summary


__all__ = ["Trainer", "train", "run_dir"]
