"""The report of a GCM sweep: what ran, what it cost, what the datacube holds, and plots.

Reads only files the pipeline wrote (manifest.json, each task's summary.json, the datacube,
benchmark JSON); every number in the report comes from them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from astrohpc.analysis.cube_means import global_mean_series
from astrohpc.analysis.equilibrium import equilibrium_rows
from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.data import schema
from astrohpc.data.cube import open_file, read_meta
from astrohpc.errors import DataError
from astrohpc.gcm.run import read_summary


def run_names(cube: Path) -> list[str]:
    """The cube's run names (run folder names), in run order."""
    with open_file(cube) as f:
        return schema.decode_strings(f[schema.RUN_NAME][()])


def load_manifest(sweep_dir: Path) -> dict:
    path = sweep_dir / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path} not found: run 'astrohpc gcm aggregate {sweep_dir}' (or wait for the sweep)")
    return json.loads(path.read_text())


def run_rows(sweep_dir: Path, manifest: dict, final_ts: dict[str, float]) -> list[dict[str, Any]]:
    """One row per task: swept parameters, status, cost, and the final global-mean surface
    temperature of its run in the cube (`final_ts`: run name -> K)."""
    rows = []
    for task in manifest["tasks"]:
        summary = read_summary(sweep_dir / task["run_dir"]) or {}
        row: dict[str, Any] = {"task": task["index"]}
        row.update({k.split(".")[-1]: v for k, v in task["point"].items()})
        row["status"] = task["status"] + (f": {task['reason']}" if task.get("reason") else "")
        row["days"] = summary.get("simulated_days")
        row["wall_s"] = summary.get("wall_time_s")
        # the two cost measures of astrohpc.cost_clock, labelled as what they are
        row["cpu_s_per_day (process + children)"] = summary.get("cpu_seconds_per_simulated_day")
        row["wall_x_ranks_core_s_per_day"] = summary.get("core_seconds_per_simulated_day")
        row["final_global_ts_K"] = final_ts.get(Path(task["run_dir"]).name)
        rows.append(row)
    return rows


def _plot_series(report: MarkdownReport, series: np.ndarray, labels: list[str], units: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r, label in enumerate(labels):
        ax.plot(np.arange(series.shape[1]) + 1, series[r], label=label)
    ax.set_xlabel("snapshot (day)")
    ax.set_ylabel(f"global-mean surface temperature [{units}]")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    report.figure(fig, "global_ts", "Area-weighted global-mean surface temperature of each run (daily snapshots)")
    plt.close(fig)


def _plot_map(report: MarkdownReport, cube: Path, run: int, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = read_meta(cube)
    channel = meta.channel("ts")
    last = int(meta.time_count[run]) - 1
    with open_file(cube) as f:
        field = f[schema.FIELDS][run, last, channel]
        lat, lon = f[schema.LAT][:], f[schema.LON][:]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    mesh = ax.pcolormesh(lon, lat, field, shading="nearest", cmap="RdYlBu_r")
    fig.colorbar(mesh, ax=ax, label="ts [K]")
    ax.set_xlabel("longitude [°E]")
    ax.set_ylabel("latitude [°N]")
    ax.set_title(f"surface temperature, last snapshot, {label}", fontsize=9)
    report.figure(fig, "ts_map", f"Surface temperature on the last day of {label} (latitude south→north)")
    plt.close(fig)


def bench_rows(bench_files: Iterable[Path]) -> list[dict[str, Any]]:
    """One row per headline figure of each benchmark JSON: its `headline` mapping when present,
    else its top-level numbers and its `ratios` mapping."""
    rows = []
    for path in bench_files:
        data = json.loads(Path(path).read_text())
        figures = data.get("headline")
        if figures is None:
            figures = {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            figures.update(data.get("ratios", {}))
        when = data.get("date_utc") or (data.get("provenance") or {}).get("created_utc")
        for name, value in figures.items():
            rows.append({"benchmark": Path(path).name, "figure": name, "value": value, "measured": when})
    return rows


def build_sweep_report(sweep_dir: str | Path, out_dir: str | Path, bench_files: Iterable[Path] = (),
                       notes: Iterable[str] = (), train_dirs: Iterable[Path] = (),
                       study_dirs: Iterable[Path] = ()) -> Path:
    """Write report.md (+ PNG figures) for the sweep in `sweep_dir` into `out_dir`, with a training
    section for each training run directory in `train_dirs`."""
    sweep_dir, out_dir = Path(sweep_dir), Path(out_dir)
    manifest = load_manifest(sweep_dir)
    report = MarkdownReport(out_dir, f"astrohpc report: sweep `{sweep_dir.name}`")
    counts = manifest["counts"]
    report.paragraph(f"Sweep folder `{sweep_dir}`; manifest written {manifest['created_utc']}. "
                     f"Tasks: {counts.get('finished', 0)} finished, {counts.get('failed', 0)} failed, "
                     f"{counts.get('missing', 0)} missing.")
    for note in notes:
        report.paragraph(note)

    cube = sweep_dir / manifest["datacube"]["path"] if (manifest.get("datacube") or {}).get("path") else None
    series = None
    final_ts: dict[str, float] = {}
    if cube is not None and cube.is_file():
        meta = read_meta(cube)
        series = global_mean_series(cube, "ts")
        units = meta.units[meta.channel("ts")]
        names = run_names(cube)
        final = np.array([s[~np.isnan(s)][-1] for s in series])
        final_ts = {name: float(v) for name, v in zip(names, final)}
    report.heading("Runs")
    report.table(run_rows(sweep_dir, manifest, final_ts))
    if cube is not None and cube.is_file():
        report.heading("Distance from equilibrium (last 10 days of each run)", 3)
        means = sweep_dir / manifest["datacube_means"]["path"] \
            if (manifest.get("datacube_means") or {}).get("path") else None
        try:
            rows = equilibrium_rows(cube, 10.0, means if means is not None and means.is_file() else None)
        except DataError as exc:
            report.paragraph(f"Not computed: {exc}")
        else:
            report.table(rows)
            worst = max(rows, key=lambda row: abs(row["toa_imbalance_W_m2"]))
            report.paragraph(
                "Global-mean net TOA flux (positive: the planet still takes up energy) averaged over the last "
                f"10 days{' of 5-day means' if means is not None else ''}, and the linear trend of global-mean "
                f"surface temperature over the same days. Largest imbalance: {worst['toa_imbalance_W_m2']:.2f} "
                f"W m-2 ({worst['run']}). A run in equilibrium has both near zero; ExoPlaSim's slab ocean takes "
                "decades to settle, so these short branches are still adjusting.")

    report.heading("Datacube")
    if series is None:
        report.paragraph("No datacube was written for this sweep (see the manifest's `datacube` entry).")
    else:
        with open_file(cube) as f:
            chunks = f[schema.FIELDS].chunks
        report.paragraph(f"`{cube.name}`: fields {list(meta.shape)} [run, time, channel, lat, lon] float32, "
                         f"chunks {list(chunks)}, {cube.stat().st_size / 1e6:.1f} MB on disk.")
        points = {Path(t["run_dir"]).name: t["point"] for t in manifest["tasks"]}
        labels = [", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in points.get(name, {}).items()) or name
                  for name in names]
        _plot_series(report, series, labels, units)
        warmest = int(np.nanargmax(final))
        _plot_map(report, cube, warmest, labels[warmest])
        if meta.stats is not None:
            report.heading("Normalisation statistics (selected channels)", 3)
            report.table(stats_rows(meta))
    for train_dir in train_dirs:
        from astrohpc.analysis.train_report import add_training_section

        add_training_section(report, train_dir)
    for study_dir in study_dirs:
        from astrohpc.analysis.study_sections import add_study_section

        add_study_section(report, study_dir)
    rows = bench_rows(bench_files)
    if rows:
        report.heading("Benchmarks")
        report.table(rows)
    return report.write()


def stats_rows(meta, variables: tuple[str, ...] = ("ts", "tas", "ps", "ta", "ua", "hus")) -> list[dict]:
    """Stored statistics of each of `variables` (3-D ones at the lowest level), in the channel's units."""
    rows = []
    for name in variables:
        if name not in meta.variables:
            continue
        # 3-D variables: the level nearest the surface (largest sigma or pressure)
        c = max((i for i, v in enumerate(meta.variables) if v == name),
                key=lambda i: -np.inf if np.isnan(meta.levels[i]) else meta.levels[i])
        fields, diffs = meta.stats["fields"], meta.stats["diffs"]
        rows.append({"channel": name, "level": float(meta.levels[c]), "units": meta.units[c],
                     **{q: float(fields[q][c]) for q in ("mean", "std", "min", "max")},
                     "std of step change": float(diffs["std"][c])})
    return rows
