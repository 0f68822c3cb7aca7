"""What a surrogate costs to train and to run, and what that is against the GCM it stands in for.

One model, one process (peak RSS is the process's): `measure` times a `Workload` — the task's
training step (objective, backward, AdamW) and its inference call (no_grad, eval mode) — at
1 torch thread and at all of them, the settings taking turns within each repeat so that load
from other work falls on all alike. Each timing keeps the wall time (`time.perf_counter`) and
the process CPU time (`time.process_time`, every thread: core-seconds), so a figure is both
samples per second and core-seconds per sample. Figures are medians with min and max over
repeats (`spread`, astrohpc/data/bench.py); nothing is best-of-N. The clock is astrohpc.cost_clock,
the one ExoPlaSim's runs are timed with: `core_s_per_sample` is CPU time of the process (every
thread) and its waited-for children; `wall_core_s_per_sample` is wall time × the case's torch
threads, the allocation-based measure beside it.

Cost against the GCM:
- emulator: core-seconds per simulated planet-day = core-seconds of one step of one sample /
  the cube's output interval in days (the step the emulator takes; the GCM's own time step is
  much shorter — the surrogate skips the states between two outputs, it does not compute them).
- climate: core-seconds per predicted run (the time mean of one run of the cube); a surrogate that
  reads the first `spinup_steps` days of a run still needs the GCM for them, so those days are
  charged at the GCM's cost in `climate_speedup`.
A speed-up's min and max pair the extremes (GCM min ÷ surrogate max, GCM max ÷ surrogate min).
"""

from __future__ import annotations

import math
import resource
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import nn

from astrohpc.cost_clock import cost_clock
from astrohpc.data.bench import spread
from astrohpc.models.climate import ClimateSurrogate
from astrohpc.models.cost import count_flops, count_parameters
from astrohpc.models.objective import batch_planet, climate_loss, emulator_loss
from astrohpc.models.stepper import EmulatorStepper
from astrohpc.models.uncertainty import GaussianPrediction

SECONDS_PER_DAY = 86400.0
TRAIN_BATCH = 4
INFER_BATCHES = (1, 32)

Batch = Mapping[str, Any]


# ---- arithmetic ------------------------------------------------------------------------------

def core_seconds_per_day(cpu_seconds: float, steps: int, interval_s: float) -> float:
    """Core-seconds per simulated day of `steps` sample-steps of `interval_s` seconds each that
    took `cpu_seconds` of CPU time."""
    if steps <= 0 or interval_s <= 0:
        raise ValueError(f"steps and interval_s must be > 0, got {steps}, {interval_s}")
    return cpu_seconds / (steps * interval_s / SECONDS_PER_DAY)


def scale_spread(figure: Mapping[str, float], factor: float) -> dict:
    """A spread ({"median", "min", "max", "n"}) times a positive factor."""
    return {"median": figure["median"] * factor, "min": figure["min"] * factor, "max": figure["max"] * factor,
            "n": figure["n"]}


def ratio_spread(numerator: Mapping[str, float], denominator: Mapping[str, float]) -> Optional[dict]:
    """numerator ÷ denominator of two spreads: median ÷ median, and the extremes paired (min ÷ max,
    max ÷ min); None when a denominator is not positive."""
    if min(denominator["median"], denominator["min"], denominator["max"]) <= 0:
        return None
    return {"median": numerator["median"] / denominator["median"], "min": numerator["min"] / denominator["max"],
            "max": numerator["max"] / denominator["min"]}


def climate_speedup(gcm_per_day: Mapping[str, float], run_days: float, spinup_days: float,
                    surrogate_per_run: Mapping[str, float]) -> Optional[dict]:
    """GCM core-seconds of a run of `run_days` ÷ (the surrogate's core-seconds per run + the GCM's
    for the `spinup_days` the surrogate reads); spreads in, spread out."""
    gcm_run = scale_spread(gcm_per_day, run_days)
    charged = {k: surrogate_per_run[k] + gcm_per_day[k] * spinup_days for k in ("median", "min", "max")}
    return ratio_spread(gcm_run, charged)


def calls_for(seconds_per_call: float, target_s: float, max_calls: int) -> int:
    """Calls per timed repeat: enough to last `target_s`, at least 1, at most `max_calls`."""
    if seconds_per_call <= 0:
        return max_calls
    return max(1, min(max_calls, math.ceil(target_s / seconds_per_call)))


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024.0


def children_cpu_s() -> float:
    """User + system CPU time of the finished child processes waited for so far, s."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# ---- batches ---------------------------------------------------------------------------------

def take(batch: Any, n: int) -> Any:
    """The first `n` samples of a collated batch (tensors along dim 0, nested dicts alike; other
    values as they are)."""
    if isinstance(batch, torch.Tensor):
        return batch[:n] if batch.ndim else batch
    if isinstance(batch, Mapping):
        return {k: take(v, n) for k, v in batch.items()}
    return batch


def cyclic_batch(items: Sequence[Any], size: int, collate: Callable[[list], Any]) -> Any:
    """A batch of `size` samples cycling through `items` (a cube may hold fewer samples than a batch)."""
    if not items:
        raise ValueError("no samples to make a batch of")
    return collate([items[i % len(items)] for i in range(size)])


# ---- what each task runs ---------------------------------------------------------------------

@dataclass
class Workload:
    """What a model does on a batch: `loss(batch)` the differentiable training objective,
    `infer(batch)` the prediction as used (physical units, correctors applied), `forward(batch)`
    the (args, kwargs) of model(...) whose FLOPs are counted."""

    loss: Callable[[Batch], torch.Tensor]
    infer: Callable[[Batch], Any]
    forward: Callable[[Batch], tuple[tuple, dict]]


def emulator_workload(model: EmulatorStepper, physics: Any = None) -> Workload:
    """One step from a cube state: batches of WindowDataset (1 input, >= 1 target step, static and
    planet when the model uses them); the loss is `emulator_loss` over the batch's target steps."""
    def forward(batch: Batch) -> tuple[tuple, dict]:
        args = (batch["input"][:, -1], batch["target"][:, 0, model.forcing], batch["params"], batch.get("static"))
        return args, {"planet": batch_planet(batch)}

    def infer(batch: Batch) -> torch.Tensor:
        args, kwargs = forward(batch)
        return model(*args, **kwargs)

    return Workload(lambda batch: emulator_loss(model, batch, physics)["loss"], infer, forward)


def climate_workload(model: ClimateSurrogate, physics: Any = None,
                     head_weights: Optional[Mapping[str, float]] = None) -> Workload:
    """One run's prediction: batches of RunDataset (a `spectrum` when the model has a spectral
    head); inference returns the heads in SI units, the datacube head after the correctors."""
    def forward(batch: Batch) -> tuple[tuple, dict]:
        spinup = batch["spinup"] if model.spinup_steps else None
        return (batch["params"], spinup, batch.get("static")), {}

    def infer(batch: Batch) -> dict:
        args, _ = forward(batch)
        out = model.physical(model(*args))
        if "datacube" in out and model.correctors is not None:
            fields = out["datacube"]
            mean = fields.mean if isinstance(fields, GaussianPrediction) else fields
            out["datacube"] = model.correct(mean, args[1], None if args[2] is None else args[2].double(),
                                            batch_planet(batch))
        return out

    return Workload(lambda batch: climate_loss(model, batch, physics, head_weights)["loss"], infer, forward)


# ---- timing ----------------------------------------------------------------------------------

@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to `n` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_calls(fn: Callable[[], Any], calls: int, cores: int = 1) -> dict:
    """{"wall_s", "cpu_s", "wall_core_s", "calls"} of `calls` calls of fn (astrohpc.cost_clock: CPU of
    this process, every thread, and its children; wall × `cores`)."""
    with cost_clock(cores) as clock:
        for _ in range(calls):
            fn()
    return {"wall_s": clock["wall_s"], "cpu_s": clock["cpu_s"], "wall_core_s": clock["wall_core_s"], "calls": calls}


def summarize_timings(timings: Sequence[Mapping[str, float]], batch: int) -> dict:
    """Per-repeat timings of calls on `batch` samples -> samples/s, CPU seconds per sample
    (`core_s_per_sample`) and wall × cores per sample (spreads), with the raw timings."""
    return {"batch": batch,
            "samples_s": spread([t["calls"] * batch / t["wall_s"] for t in timings]),
            "core_s_per_sample": spread([t["cpu_s"] / (t["calls"] * batch) for t in timings]),
            "wall_core_s_per_sample": spread([t["wall_core_s"] / (t["calls"] * batch) for t in timings]),
            "wall_s": [t["wall_s"] for t in timings], "cpu_s": [t["cpu_s"] for t in timings],
            "calls": [t["calls"] for t in timings]}


@dataclass
class Case:
    """One timed setting: `fn` runs one call (a training step or an inference) on `batch` samples
    with `threads` torch threads, the model in train mode or not."""

    name: str
    fn: Callable[[], Any]
    batch: int
    threads: int
    train: bool


def run_cases(model: nn.Module, cases: Sequence[Case], repeats: int, target_s: float, max_calls: int) -> dict:
    """Each case warmed up once (which sizes its calls per repeat), then `repeats` rounds in which
    every case is timed in turn -> {name: summarize_timings(...)}. target_s <= 0: one call per
    repeat and no warm-up (a check that everything runs, not a measurement)."""
    calls = {case.name: 1 for case in cases}
    for case in cases if target_s > 0 else ():
        model.train(case.train)
        with torch_threads(case.threads):
            warm = time_calls(case.fn, 1, case.threads)
        calls[case.name] = calls_for(warm["wall_s"], target_s, max_calls)
    timings: dict[str, list[dict]] = {case.name: [] for case in cases}
    for _ in range(repeats):
        for case in cases:
            model.train(case.train)
            with torch_threads(case.threads):
                timings[case.name].append(time_calls(case.fn, calls[case.name], case.threads))
    model.eval()
    return {case.name: {**summarize_timings(timings[case.name], case.batch), "threads": case.threads}
            for case in cases}


def measure(model: nn.Module, workload: Workload, batches: Mapping[int, Batch], *, repeats: int, target_s: float,
            all_threads: int, max_calls: int = 1000, lr: float = 1e-4) -> dict:
    """Parameters, forward FLOPs per sample, training and inference throughput of `model`.

    batches: {batch size: collated batch}, holding TRAIN_BATCH and every INFER_BATCHES size.
    Training: workload.loss -> backward -> AdamW step (learning rate `lr`; the weights change, the
    cost does not). Inference: workload.infer under no_grad in eval mode. Both at 1 thread and at
    `all_threads`. Returns {"parameters", "trainable_parameters", "forward_flops_per_sample",
    "train": {...}, "inference": {...}}, each timed entry as `summarize_timings`, keyed
    `batch{B}_threads{T}`.
    """
    missing = [b for b in (TRAIN_BATCH, *INFER_BATCHES) if b not in batches]
    if missing:
        raise ValueError(f"measure needs batches of sizes {missing}")
    model.eval()
    args, kwargs = workload.forward(take(batches[1], 1))
    flops = count_flops(model, *args, **kwargs)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)

    def train_step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        workload.loss(batch).backward()
        optimizer.step()

    def infer(batch: Batch) -> None:
        with torch.no_grad():
            workload.infer(batch)

    threads = sorted({1, int(all_threads)})
    train = [Case(f"batch{TRAIN_BATCH}_threads{t}", lambda: train_step(batches[TRAIN_BATCH]), TRAIN_BATCH, t, True)
             for t in threads]
    inference = [Case(f"batch{b}_threads{t}", (lambda b=b: infer(batches[b])), b, t, False)
                 for b in INFER_BATCHES for t in threads]
    timed_train = run_cases(model, train, repeats, target_s, max_calls)
    timed_infer = run_cases(model, inference, repeats, target_s, max_calls)
    return {"parameters": count_parameters(model), "trainable_parameters": count_parameters(model, True),
            "forward_flops_per_sample": flops, "train": timed_train, "inference": timed_infer}


def surrogate_cost(inference: Mapping[str, Mapping[str, Any]], per_sample_days: Optional[float],
                   measure: str = "core_s_per_sample") -> dict:
    """`measure` per sample of every inference setting (CPU seconds, or "wall_core_s_per_sample"); divided
    by `per_sample_days` (the emulator's step in days) into seconds per simulated day when given (None:
    per sample, the climate surrogate's per predicted run). Compare it with the GCM's figure in the
    same measure only."""
    factor = 1.0 if per_sample_days is None else 1.0 / per_sample_days
    return {name: scale_spread(entry[measure], factor) for name, entry in inference.items()}


def speedups(entry: Mapping[str, Any], gcm_per_day: Mapping[str, float]) -> dict:
    """{inference setting: speed-up spread} of one model's benchmark entry against the GCM's
    core-seconds per simulated day. entry: "task", "cost" (surrogate_cost), and for the climate
    task "run_days" and "spinup_days" (see the module doc)."""
    out = {}
    for name, cost in entry["cost"].items():
        if entry["task"] == "emulator":
            out[name] = ratio_spread(gcm_per_day, cost)
        else:
            out[name] = climate_speedup(gcm_per_day, entry["run_days"], entry["spinup_days"], cost)
    return out
