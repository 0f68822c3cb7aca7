#!/usr/bin/env python
"""Surrogate cost benchmark: parameters, FLOPs, training and inference throughput, peak memory,
and core-seconds per simulated day against ExoPlaSim's, measured in one run.

    .venv/bin/python tools/bench_models.py                         # every configs/model/*.yaml
    .venv/bin/python tools/bench_models.py --cube runs/cubes/x.h5 --configs configs/model/emulator_unet.yaml
    .venv/bin/python tools/bench_models.py --repeats 1 --quick --no-gcm    # a check, seconds

Each model config is built on the cube and measured in a process of its own (so that its peak
RSS is its own): what is measured, and how the speed-up is formed, is in astrohpc/models/bench.py.
The cube: --cube, else the demo's (runs/demo/demo/datacube.h5, `make demo`), else one made here
from the cached ExoPlaSim smoke runs as the tests make it (tests/gcm_smoke_fixture.py; 2 runs x
5 days) into runs/bench/models-cube/. ExoPlaSim's cost comes from short runs of
configs/gcm/smoke.yaml in a temporary folder (--gcm-days, --gcm-repeats), CPU time of this
process and its children; the GCM must be built (`astrohpc gcm build configs/gcm/smoke.yaml`),
else the JSON says so and the speed-ups are left out. Writes runs/bench/models-<UTC time>.json
(date, host, git commit and dirty flag, package versions, torch threads, every raw timing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from astrohpc.atomic_write import write_json  # noqa: E402
from astrohpc.config import load_config  # noqa: E402
from astrohpc.data.bench import spread  # noqa: E402
from astrohpc.data.cube import read_meta  # noqa: E402
from astrohpc.errors import DataError  # noqa: E402
from astrohpc.models import bench  # noqa: E402
from astrohpc.provenance import collect  # noqa: E402

CONFIGS = REPO / "configs" / "model"
SMOKE = REPO / "configs" / "gcm" / "smoke.yaml"
DEMO_CUBE = REPO / "runs" / "demo" / "demo" / "datacube.h5"
SMOKE_CUBE = REPO / "runs" / "bench" / "models-cube" / "smoke.h5"
SMOKE_FIXTURE = REPO / "tests" / "gcm_smoke_fixture.py"
DIMMER = "planet.instellation_W_m2=1300"  # the smoke "sweep"'s second run, as in the tests


# ---- the cube --------------------------------------------------------------------------------

def _readable(cube: Path) -> bool:
    from astrohpc.data.schema import stats_path

    try:
        read_meta(cube)
    except DataError:
        return False
    return stats_path(cube).is_file()


def smoke_cube(path: Path, n_bins: int) -> Path:
    """The cube of the two cached smoke runs (made by tests/gcm_smoke_fixture.py if missing),
    converted with configs/data/exoplasim.yaml, with statistics and spectra: reused when readable."""
    from astrohpc.data.convert import convert_run_dirs
    from astrohpc.data.spectra import write_spectra
    from astrohpc.data.stats import run_stats

    if _readable(path):
        return path
    runs = []
    for overrides in ((), (DIMMER,)):
        print(f"[bench_models] smoke run {' '.join(overrides) or '(default)'}", file=sys.stderr)
        proc = subprocess.run([sys.executable, str(SMOKE_FIXTURE), *overrides], capture_output=True, text=True,
                              cwd=REPO, check=True)
        runs.append(Path(proc.stdout.strip().splitlines()[-1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = load_config(REPO / "configs" / "data" / "exoplasim.yaml").data
    convert_run_dirs(runs, path, settings=settings)
    run_stats(path)
    write_spectra(path, n_bins=n_bins)
    return path


def default_cube(n_bins: int) -> Path:
    return DEMO_CUBE if DEMO_CUBE.is_file() and _readable(DEMO_CUBE) else smoke_cube(SMOKE_CUBE, n_bins)


# ---- one model (the --worker process) --------------------------------------------------------

def _collate_items(items: list[dict]) -> Any:
    from torch.utils.data import default_collate

    return default_collate(items)


def load_batches(settings: Any, plan: Any, cube: Path, spectra: bool, n_bins: int) -> tuple[dict, dict]:
    """{size: batch} for the benchmark's sizes, cycling through the cube's first samples, and a
    description of them. spectra: read the sidecar; else a spectral head gets zero targets."""
    from astrohpc.data.dataset import WindowDataset
    from astrohpc.data.runs import RunDataset

    sizes = sorted({bench.TRAIN_BATCH, *bench.INFER_BATCHES})
    heads = (("datacube", "scalar", "spectral") if settings.mode == "joint" else (settings.mode,)) \
        if settings.task == "climate" else ()
    if settings.task == "emulator":
        ds = WindowDataset(cube, 1, 1, variables=list(plan.variables), static=bool(plan.static))
        kind = "windows of 1 input + 1 target step (WindowDataset)"
    else:
        ds = RunDataset(cube, settings.spinup_steps, variables=list(plan.variables), static=bool(plan.static),
                        spectra=spectra and "spectral" in heads)
        kind = f"whole runs, {settings.spinup_steps} spin-up step(s) (RunDataset)"
    try:
        items = [ds[i] for i in range(min(len(ds), max(sizes)))]
    finally:
        ds.close()
    placeholder = "spectral" in heads and not spectra
    if placeholder:
        for item in items:
            item["spectrum"] = torch.zeros(n_bins)
    largest = bench.cyclic_batch(items, max(sizes), _collate_items)
    info = {"samples": kind, "distinct_samples": len(items),
            "spectrum_targets": "zeros (no spectra sidecar; the cost does not depend on the values)"
            if placeholder else None}
    return {size: bench.take(largest, size) for size in sizes}, info


def run_worker(config: Path, cube: Path, args: argparse.Namespace) -> dict:
    """Build `config`'s model on `cube` and measure it (astrohpc.models.bench.measure)."""
    from astrohpc.data.spectra import spectra_path
    from astrohpc.models.build import build, build_physics_loss, output_interval_s, plan_channels

    all_threads = torch.get_num_threads()
    settings = load_config(config).model
    meta = read_meta(cube)
    spectra = spectra_path(cube).is_file()
    plan = plan_channels(settings, meta)
    batches, info = load_batches(settings, plan, cube, spectra, args.n_bins)
    rss_data = bench.peak_rss_mib()
    torch.manual_seed(0)
    model = build(settings, meta, n_bins=None if spectra else args.n_bins)
    physics = build_physics_loss(settings, meta, model.plan)
    workload = (bench.emulator_workload(model, physics) if settings.task == "emulator"
                else bench.climate_workload(model, physics, settings.head_weights))
    result = bench.measure(model, workload, batches, repeats=args.repeats, target_s=args.target_s,
                           all_threads=all_threads, max_calls=args.max_calls)
    interval_days = output_interval_s(meta) / bench.SECONDS_PER_DAY
    counts = np.asarray(meta.time_count)
    days = np.atleast_2d(meta.time_days)
    k = settings.spinup_steps
    entry = {"config": str(config.relative_to(REPO) if config.is_relative_to(REPO) else config),
             "task": settings.task, "architecture": settings.architecture, "mode": settings.mode,
             "uncertainty": settings.uncertainty.method, "correctors": settings.physics.correctors,
             "in_channels": model.in_channels, "predicted_channels": len(model.plan.predicted),
             "batches": info, **result,
             "cost_unit": ("core-seconds per simulated planet-day" if settings.task == "emulator"
                           else "core-seconds per predicted run"),
             "cost": bench.surrogate_cost(result["inference"], interval_days if settings.task == "emulator" else None),
             "interval_days": interval_days,
             # the days a GCM run simulates to give one run of this cube, and those the surrogate reads
             "run_days": float(np.mean([np.nanmax(row) for row in days])),
             "spinup_days": float(np.mean([days[r, k - 1] for r in range(len(counts))])) if k else 0.0,
             "peak_rss_MiB": bench.peak_rss_mib(), "peak_rss_before_model_MiB": rss_data,
             "torch_threads": {"all": all_threads, "interop": torch.get_num_interop_threads()}}
    return entry


# ---- the GCM ---------------------------------------------------------------------------------

def gcm_cost(days: int, repeats: int) -> dict:
    """ExoPlaSim's core-seconds per simulated day from `repeats` runs of configs/gcm/smoke.yaml of
    `days` days: CPU time of this process and its children (the model's executable) per day, and
    the run summary's wall-based figure (wall x ncpus / days)."""
    from astrohpc.errors import GCMError
    from astrohpc.gcm.run import run_simulation
    from astrohpc.gcm.runner import get_runner

    cfg = load_config(SMOKE, [f"gcm.days={days}"])
    try:
        get_runner(cfg.gcm.model).check_ready(cfg.gcm)
    except GCMError as exc:
        return {"skipped": f"run `astrohpc gcm build configs/gcm/smoke.yaml` first ({exc})"}
    root = Path(tempfile.mkdtemp(prefix="bench-models-gcm-"))
    runs = []
    try:
        for r in range(repeats):
            print(f"[bench_models] ExoPlaSim {days}-day run {r + 1}/{repeats}", file=sys.stderr)
            run_cfg = load_config(SMOKE, [f"run.root={root}", f"run.name=gcm{r}", f"gcm.days={days}"])
            cpu0, child0, wall0 = time.process_time(), bench.children_cpu_s(), time.perf_counter()
            summary = run_simulation(run_cfg, root / f"gcm{r}")
            own, children = time.process_time() - cpu0, bench.children_cpu_s() - child0
            runs.append({"wall_s": time.perf_counter() - wall0, "cpu_s": own + children, "own_cpu_s": own,
                         "children_cpu_s": children, "simulated_days": summary["simulated_days"],
                         "summary_core_seconds_per_simulated_day": summary["core_seconds_per_simulated_day"]})
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"config": str(SMOKE.relative_to(REPO)),
            "model": f"exoplasim {cfg.gcm.resolution} L{cfg.gcm.levels}, {cfg.gcm.ncpus} CPU, cold start",
            "days": days, "runs": runs,
            "core_s_per_day": spread([r["cpu_s"] / r["simulated_days"] for r in runs]),
            "wall_core_s_per_day": spread([r["summary_core_seconds_per_simulated_day"] for r in runs])}


# ---- the run ---------------------------------------------------------------------------------

def _worker_command(config: Path, cube: Path, args: argparse.Namespace) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", str(config), "--cube", str(cube),
            "--repeats", str(args.repeats), "--target-s", str(args.target_s), "--max-calls", str(args.max_calls),
            "--n-bins", str(args.n_bins)]


def headline(models: dict, gcm: dict, speed: dict) -> dict:
    """The figures worth a table, 1-thread inference for the costs and speed-ups."""
    out: dict[str, Any] = {}
    if "core_s_per_day" in gcm:
        out["ExoPlaSim core-s per simulated day (CPU time, median)"] = gcm["core_s_per_day"]["median"]
    for name, m in models.items():
        if "error" in m:
            out[f"{name}: error"] = m["error"][-200:]
            continue
        t = m["torch_threads"]["all"]
        unit = "core-s/planet-day" if m["task"] == "emulator" else "core-s/run"
        figures = {
            "parameters": m["parameters"],
            "forward GFLOP per sample": m["forward_flops_per_sample"] / 1e9,
            "train samples/s (batch 4, 1 thread)": m["train"]["batch4_threads1"]["samples_s"]["median"],
            f"train samples/s (batch 4, {t} threads)": m["train"][f"batch4_threads{t}"]["samples_s"]["median"],
            "inference samples/s (batch 1, 1 thread)": m["inference"]["batch1_threads1"]["samples_s"]["median"],
            "inference samples/s (batch 32, 1 thread)": m["inference"]["batch32_threads1"]["samples_s"]["median"],
            f"{unit} (batch 1, 1 thread)": m["cost"]["batch1_threads1"]["median"],
            f"{unit} (batch 32, 1 thread)": m["cost"]["batch32_threads1"]["median"],
            "peak RSS MiB": m["peak_rss_MiB"],
        }
        for setting in ("batch1_threads1", "batch32_threads1"):
            ratio = speed.get(name, {}).get(setting)
            if ratio is not None:
                figures[f"speed-up vs ExoPlaSim ({setting.replace('_', ', ')})"] = ratio["median"]
        out[name] = figures
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", type=Path, default=None, help="a cube with statistics (default: see above)")
    parser.add_argument("--configs", type=Path, nargs="+", default=None, help="model configs (default: all)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (figures: median, min, max)")
    parser.add_argument("--target-s", type=float, default=1.0, help="seconds per timed repeat of each setting")
    parser.add_argument("--max-calls", type=int, default=1000, help="at most this many calls per timed repeat")
    parser.add_argument("--quick", action="store_true", help="one call per repeat (a check, not a measurement)")
    parser.add_argument("--n-bins", type=int, default=16, help="spectral head size when the cube has no spectra")
    parser.add_argument("--no-gcm", action="store_true", help="skip the ExoPlaSim runs (and the speed-ups)")
    parser.add_argument("--gcm-days", type=int, default=30,
                        help="days per ExoPlaSim run (default 30, as tools/bench_gcm.py: less start-up per day)")
    parser.add_argument("--gcm-repeats", type=int, default=3, help="ExoPlaSim runs")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    parser.add_argument("--worker", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.target_s = 0.0
    if args.worker is not None:
        print(json.dumps(run_worker(args.worker.resolve(), args.cube, args)))
        return 0

    cube = (args.cube or default_cube(args.n_bins)).resolve()
    meta = read_meta(cube)
    configs = [c.resolve() for c in (args.configs or sorted(CONFIGS.glob("*.yaml")))]
    models: dict[str, Any] = {}
    for config in configs:
        print(f"[bench_models] {config.stem} on {cube.name}", file=sys.stderr)
        proc = subprocess.run(_worker_command(config, cube, args), capture_output=True, text=True, cwd=REPO)
        models[config.stem] = (json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0
                               else {"error": proc.stderr.strip()[-4000:], "config": str(config)})
    gcm = {"skipped": "--no-gcm"} if args.no_gcm else gcm_cost(args.gcm_days, args.gcm_repeats)
    speed: dict[str, Any] = {}
    if "core_s_per_day" in gcm:
        speed = {name: bench.speedups(m, gcm["core_s_per_day"]) for name, m in models.items() if "error" not in m}
    from astrohpc.data.spectra import spectra_path

    record = {
        "benchmark": "models",
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "cube": {"path": str(cube), "shape": list(meta.shape), "variables": list(dict.fromkeys(meta.variables)),
                 "static": sorted(meta.static), "spectra_sidecar": spectra_path(cube).is_file()},
        "settings": {"repeats": args.repeats, "quick": args.quick, "target_s_per_repeat": args.target_s,
                     "max_calls": args.max_calls, "train_batch": bench.TRAIN_BATCH,
                     "infer_batches": list(bench.INFER_BATCHES), "n_bins_without_spectra": args.n_bins},
        "torch_threads": {"default": torch.get_num_threads(), "interop": torch.get_num_interop_threads()},
        "caveat": ("the emulator steps the cube's output interval (interval_days); ExoPlaSim computes every "
                   "time step between two outputs. A speed-up compares the cost of a simulated day, not the "
                   "same computation; the climate surrogate's is per predicted run, its spin-up days charged "
                   "at ExoPlaSim's cost. The surrogates here are untrained: cost, not skill."),
        "models": models,
        "gcm": gcm,
        "speedup": speed,
        "provenance": collect(extra={"configs": [str(c) for c in configs]}),
    }
    record["headline"] = headline(models, gcm, speed)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = write_json(args.out / f"models-{stamp}.json", record)
    print(json.dumps(record["headline"], indent=2))
    print(out)
    return 1 if any("error" in m for m in models.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
