"""The GCM-parity section of a report, from a parity study folder (astrohpc.studies.parity).

Read from the study's files only (study.json's config, aggregate.json, headline.json, summary.json,
the task results): the table of selected channels with every method's RMSE beside the surrogate's
and the GCM twin's spread (the floor), which method wins, the per-run diagnostics (training
envelope, net TOA flux — the GCM's from its interval means and from its snapshots, dry-mass drift),
the cost per simulated planet-day measured in the same tasks in two labelled measures (CPU time of
the process and its children; wall time × cores) with speed-ups formed within each, and the RMSE of
surface temperature by lead day. Settings the text states (the twin's perturbation, the step) are
read from the study's config and results. An incomplete study is reported as incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.study_record import aggregated, other_cube, partial_note, study_config
from astrohpc.studies.parity_maps import GCM, read_maps
from astrohpc.studies.tasks import read_result, task_dir

LABELS = {"surrogate": "surrogate", "climate_surrogate": "climate surrogate", "persistence": "persistence",
          "climatology": "training climatology",
          "nearest_run": "nearest training run", "linear_regression": "linear regression",
          "lim": "linear inverse model", "gcm_twin": "GCM twin"}


def _plot_lead(report: MarkdownReport, results: list[dict[str, Any]], twin_delta: str, channel: str = "ts") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 3.8), squeeze=False)
    for ax, res in zip(axes[0], results):
        c = res["channels"].index(channel)
        for method, m in res["methods"].items():
            lead = np.asarray(m["rmse_by_lead"])[:, c]
            days = (np.arange(len(lead)) + 1) * res["interval_days"]
            ax.plot(days, lead, label=LABELS.get(method, method), lw=2 if method == "surrogate" else 1,
                    ls="--" if method == "gcm_twin" else "-")
        where = "outside" if res["outside_envelope"] else "inside"
        ax.set_title(f"{res['run']} ({where} the training envelope)", fontsize=9)
        ax.set_xlabel("lead time [days]")
        ax.set_ylabel(f"area-weighted RMSE of {channel} [{res['units'][c]}]")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    report.figure(fig, "parity_lead", f"RMSE of daily {channel} against the GCM by lead day on each held-out run: "
                                      "the surrogate rolled out from the GCM's initial state, the baselines, and "
                                      f"the GCM twin (instellation {twin_delta}), the floor no surrogate can beat")
    plt.close(fig)


def _plot_maps(report: MarkdownReport, study_dir: Path, results: list[dict[str, Any]], ids: list[int],
               channel: str = "ts") -> None:
    """Time-mean maps (GCM, surrogate, difference) and zonal means of every method, per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    found = [(res, read_maps(task_dir(study_dir, i))) for res, i in zip(results, ids)]
    found = [(res, m) for res, m in found if m is not None and channel in m.data_vars]
    if not found:
        return
    fig, axes = plt.subplots(len(found), 4, figsize=(19, 3.4 * len(found)), squeeze=False, constrained_layout=True)
    for row, (res, maps) in zip(axes, found):
        lat, lon = maps["lat"].values, maps["lon"].values
        gcm, sur = maps[channel].sel(source=GCM).values, maps[channel].sel(source="surrogate").values
        units = res["units"][res["channels"].index(channel)]
        low, high = np.nanmin(gcm), np.nanmax(gcm)
        for ax, field, title in ((row[0], gcm, "GCM"), (row[1], sur, "surrogate (rollout mean)")):
            mesh = ax.pcolormesh(lon, lat, field, shading="nearest", cmap="RdYlBu_r", vmin=low, vmax=high)
            fig.colorbar(mesh, ax=ax, label=f"{channel} [{units}]")
            ax.set_title(f"{res['run']}: {title}", fontsize=9)
            ax.set_xlabel("longitude [°E]")
            ax.set_ylabel("latitude [°N]")
        diff = sur - gcm
        span = np.nanmax(np.abs(diff)) or 1.0
        mesh = row[2].pcolormesh(lon, lat, diff, shading="nearest", cmap="RdBu_r", vmin=-span, vmax=span)
        fig.colorbar(mesh, ax=row[2], label=f"surrogate − GCM [{units}]")
        row[2].set_title("difference", fontsize=9)
        row[2].set_xlabel("longitude [°E]")
        row[3].plot(np.nanmean(gcm, axis=1), lat, "k", lw=2, label="GCM")
        for method in maps["source"].values[1:]:
            row[3].plot(np.nanmean(maps[channel].sel(source=method).values, axis=1), lat, lw=1,
                        label=LABELS.get(str(method), str(method)))
        row[3].set_xlabel(f"zonal-mean time-mean {channel} [{units}]")
        row[3].set_ylabel("latitude [°N]")
        row[3].grid(alpha=0.3)
        row[3].legend(fontsize=6)
    report.figure(fig, "parity_maps", f"Time-mean {channel} over each held-out run: the GCM, the surrogate's rollout "
                                      "from the GCM's initial state, their difference, and the zonal means of the GCM "
                                      "and of every method (latitude south→north)")
    plt.close(fig)


CPU_COLUMN = "CPU time, process + children"
WALL_COLUMN = "wall time × cores held"


def _days(interval: float) -> str:
    return "day" if interval == 1 else f"{interval:g} days"


def cost_table(summary: dict[str, Any], batch: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The cost rows (figure, then one column per measure: CPU time, wall × cores) of a parity
    summary; a speed-up row divides the GCM's figure by the surrogate's in the same column."""
    def row(figure: str, key: str, source: dict[str, Any] = summary) -> dict[str, Any]:
        return {"figure": figure, CPU_COLUMN: source.get(key.format(m="cpu")),
                WALL_COLUMN: source.get(key.format(m="wall_core"))}

    rows = []
    if "gcm_cpu_s_per_day" in summary or "gcm_wall_core_s_per_day" in summary:
        rows.append(row("ExoPlaSim [s per simulated day] (the twin runs, same tasks)", "gcm_{m}_s_per_day"))
    rows += [row("emulator [s per simulated planet-day], batch 1", "surrogate_{m}_s_per_day_single"),
             row(f"emulator [s per simulated planet-day], batch {batch}", "surrogate_{m}_s_per_day_batched")]
    if any(k.startswith("speedup_") for k in summary):
        rows += [row("emulator speed-up [×, same measure], batch 1", "speedup_{m}_single"),
                 row(f"emulator speed-up [×, same measure], batch {batch}", "speedup_{m}_batched")]
    climate = summary.get("climate_surrogate")
    if climate:
        rows += [row("climate surrogate [s per predicted run], batch 1", "{m}_s_per_run_single", climate),
                 row("climate surrogate [s per simulated planet-day], batch 1", "{m}_s_per_day_single", climate),
                 row(f"climate surrogate [s per simulated planet-day], batch {climate['batch']}",
                     "{m}_s_per_day_batched", climate)]
        if any(k.startswith("speedup_") for k in climate):
            rows += [row("climate surrogate speed-up [×, same measure], batch 1", "speedup_{m}_single", climate),
                     row(f"climate surrogate speed-up [×, same measure], batch {climate['batch']}",
                         "speedup_{m}_batched", climate)]
    return rows, ["figure", CPU_COLUMN, WALL_COLUMN]


def add_parity_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    report.heading("GCM parity on held-out runs")
    record = aggregated(report, study_dir, "parity")
    if record is None:
        return
    head = json.loads(Path(record["outputs"]["headline"]).read_text())
    summary = json.loads(Path(record["outputs"]["summary"]).read_text())
    results = [read_result(study_dir, i) for i in record["finished"]]
    partial = partial_note(record)
    settings = study_config(study_dir).get("study", {})
    twin_delta = f"+{settings.get('twin_delta_instellation_W_m2', float('nan')):g} W m-2"
    step = _days(results[0]["interval_days"])
    report.paragraph(
        f"Held-out runs {', '.join(head['runs'])}{other_cube(head.get('cube'))} (whole runs; the trainer never read "
        f"them).{partial} The surrogate "
        f"is rolled out from each run's initial GCM state for the whole run (one step per {step}, the hard "
        "correctors on, float64 states, the GCM's own insolation as forcing). Area-weighted RMSE in physical units, "
        "averaged over the runs: 'daily' pools every state of the run, 'mean' compares the time means."
        + (f" The GCM twin differs from the run only by {twin_delta} of instellation: its distance is the run's own "
           "internal variability." if settings.get("twin") else ""))
    columns = ["channel", "units"]
    for m in ("surrogate", "climate_surrogate", "persistence", "climatology", "nearest_run", "linear_regression",
              "lim", "gcm_twin"):
        if any(k.startswith(f"{m} ") for k in head["rows"][0]):
            columns += [f"{m} daily", f"{m} mean"]
    columns += ["best baseline (daily)", "surrogate beats it (daily)", "best baseline (mean)",
                "surrogate beats it (mean)"]
    report.table(head["rows"], columns)
    wins = sum(bool(r["surrogate beats it (daily)"]) for r in head["rows"])
    report.paragraph(f"The surrogate beats the best baseline on daily states in {wins} of {len(head['rows'])} "
                     "selected channels" + (" — it loses on the others, as the table shows." if wins < len(head["rows"])
                                            else "."))
    report.table([{"run": r["run"], "outside training envelope": ", ".join(r["outside_envelope"]) or "no",
                   "nearest training run": r["nearest_run"], "days": r["days"],
                   "GCM net TOA flux, interval means [W m-2]": r["gcm_toa_imbalance_W_m2"],
                   "GCM net TOA flux, snapshots [W m-2]": r.get("gcm_toa_snapshots_W_m2"),
                   "surrogate net TOA flux, its states [W m-2]": r["surrogate_toa_imbalance_W_m2"],
                   "surrogate dry-mass drift (relative)": r["surrogate_dry_mass_drift"]} for r in summary["runs"]])
    missing = sorted({r["gcm_toa_source"] for r in summary["runs"] if r.get("gcm_toa_imbalance_W_m2") is None
                      and r.get("gcm_toa_source")})
    report.paragraph(
        "Net TOA flux: global mean, positive down (the planet taking up energy). The GCM's is the mean of its "
        "interval-mean records over the run (every hour of the day); the snapshot columns sample one hour of each "
        "day — the surrogate's states are snapshots, so compare it with the GCM's snapshot figure, and the GCM's "
        "energy balance with the interval-mean one." + (f" No interval-mean figure: {'; '.join(missing)}."
                                                        if missing else ""))
    report.heading("Cost per simulated planet-day", 3)
    report.table(*cost_table(summary, results[0]["cost"]["batch"]))
    threads = summary.get("torch_threads")
    text = (f"Measured in the same study tasks on the same machine, with one clock (astrohpc.cost_clock): "
            f"'{CPU_COLUMN}' is the CPU time of the process and of the child processes it waited for (ExoPlaSim's "
            f"MPI ranks and postprocessor; torch's threads); '{WALL_COLUMN}' is wall time × the cores the work held "
            f"(ExoPlaSim: gcm.ncpus = {summary.get('gcm_cores', '?')} ranks, setup, postprocessing and waiting "
            f"included; the surrogates: {threads} torch thread(s)). A speed-up divides one measure by the same "
            f"measure. The emulator steps one output interval ({step}), ExoPlaSim every model time step.")
    climate = summary.get("climate_surrogate")
    if climate:
        text += (f" The climate surrogate replaces a whole {climate['days']:g}-day run by one prediction of its time "
                 f"means: its cost per planet-day is its cost per run over {climate['days']:g} days, and its speed-up "
                 f"is ExoPlaSim's cost of the run over the surrogate's plus ExoPlaSim's for the "
                 f"{climate['spinup_days']:g} day(s) of the run it reads. The spin-up the runs branch from is counted "
                 "on neither side.")
    report.paragraph(text)
    _plot_lead(report, results, twin_delta)
    _plot_maps(report, study_dir, results, list(record["finished"]))
