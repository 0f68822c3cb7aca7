"""The GCM-parity section of a report, from a parity study folder (astrohpc.studies.parity).

Read from the study's files only (aggregate.json, headline.json, summary.json, the task results):
the table of selected channels with every method's RMSE beside the surrogate's and the GCM
twin's spread (the floor), which method wins, the per-run diagnostics (training envelope, net TOA
flux, dry-mass drift), the cost per simulated planet-day measured in the same tasks, and the RMSE
of surface temperature by lead day. An incomplete study is reported as incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.study_record import aggregated, partial_note
from astrohpc.studies.parity_maps import GCM, read_maps
from astrohpc.studies.tasks import read_result, task_dir

LABELS = {"surrogate": "surrogate", "climate_surrogate": "climate surrogate", "persistence": "persistence",
          "climatology": "training climatology",
          "nearest_run": "nearest training run", "linear_regression": "linear regression", "gcm_twin": "GCM twin"}


def _plot_lead(report: MarkdownReport, results: list[dict[str, Any]], channel: str = "ts") -> None:
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
                                      "the GCM twin (instellation + 1e-3 W m-2), the floor no surrogate can beat")
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
    report.paragraph(
        f"Held-out runs {', '.join(head['runs'])} (whole runs; the trainer never read them).{partial} The surrogate "
        "is rolled out from each run's initial GCM state for the whole run (one step per day, the hard correctors "
        "on, float64 states, the GCM's own insolation as forcing). Area-weighted RMSE in physical units, averaged "
        "over the runs: 'daily' pools every day of the run, 'mean' compares the time means. The GCM twin differs "
        "from the run only by +1e-3 W m-2 of instellation: its distance is the run's own internal variability.")
    columns = ["channel", "units"]
    for m in ("surrogate", "climate_surrogate", "persistence", "climatology", "nearest_run", "linear_regression",
              "gcm_twin"):
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
                   "GCM net TOA flux [W m-2]": r["gcm_toa_imbalance_W_m2"],
                   "surrogate net TOA flux [W m-2]": r["surrogate_toa_imbalance_W_m2"],
                   "surrogate dry-mass drift (relative)": r["surrogate_dry_mass_drift"]} for r in summary["runs"]])
    cost = [{"figure": "surrogate core-s per simulated planet-day, batch 1",
             "value": summary["surrogate_core_s_per_day_single"]},
            {"figure": f"surrogate core-s per simulated planet-day, batch {results[0]['cost']['batch']}",
             "value": summary["surrogate_core_s_per_day_batched"]}]
    if "gcm_core_s_per_day" in summary:
        cost += [{"figure": "ExoPlaSim core-s per simulated day (the twin runs, same tasks)",
                  "value": summary["gcm_core_s_per_day"]},
                 {"figure": "speed-up, batch 1", "value": summary["speedup_single"]},
                 {"figure": "speed-up, batched", "value": summary["speedup_batched"]}]
    climate = summary.get("climate_surrogate")
    if climate:
        batch = climate["batch"]
        cost += [{"figure": "climate surrogate core-s per predicted run, batch 1",
                  "value": climate["core_s_per_run_single"]},
                 {"figure": "climate surrogate core-s per simulated planet-day, batch 1",
                  "value": climate["core_s_per_day_single"]},
                 {"figure": f"climate surrogate core-s per simulated planet-day, batch {batch}",
                  "value": climate["core_s_per_day_batched"]}]
        if "speedup_single" in climate:
            cost += [{"figure": "climate surrogate speed-up, batch 1", "value": climate["speedup_single"]},
                     {"figure": "climate surrogate speed-up, batched", "value": climate["speedup_batched"]}]
    report.heading("Cost per simulated planet-day", 3)
    report.table(cost)
    text = ("Core-seconds are CPU time of the process, measured in the same study tasks on the same machine; the "
            "surrogate (the emulator) steps one output interval (a day), ExoPlaSim every model time step.")
    if climate:
        text += (f" The climate surrogate replaces a whole {climate['days']:g}-day run by one prediction of its time "
                 f"means: its cost per planet-day is its cost per run over {climate['days']:g} days, and its speed-up "
                 f"is ExoPlaSim's cost of the run over the surrogate's plus ExoPlaSim's for the "
                 f"{climate['spinup_days']:g} day(s) of the run it reads. The spin-up the runs branch from is counted "
                 "on neither side.")
    report.paragraph(text)
    _plot_lead(report, results)
    _plot_maps(report, study_dir, results, list(record["finished"]))
