"""The spin-up acceleration section of a report, from a spinup study folder (astrohpc.studies.spinup).

Read from the study's files only (aggregate.json, spinup_summary.json, spinup.csv): per number of
spin-up days k, the surrogate's error on the later state beside persistence of day k and the
training climatology, the days and the cost (CPU time; wall × cores) it saves, a few selected channels, and the figure
of surface temperature's RMSE against k. An incomplete study is reported as incomplete.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.study_record import aggregated, partial_note

LABELS = {"surrogate": "surrogate (first k days → later state)", "persistence": "persistence of day k",
          "climatology": "training climatology of the later state"}
SELECTED = ("ts", "tas", "ps", "pr", "rlut", "rsut", "prw")


def _plot_ts(report: MarkdownReport, rows: list[dict[str, Any]], target_days: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = [r["spinup_days"] for r in rows]
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for method, style in (("surrogate", "o-"), ("persistence", "s--"), ("climatology", "^:")):
        ax.plot(k, [r[f"ts_{method}_rmse_K"] for r in rows], style, label=LABELS[method],
                lw=2 if method == "surrogate" else 1)
    ax.set_xlabel("spin-up days given, k [days]")
    ax.set_ylabel("area-weighted RMSE of ts [K]")
    ax.set_xticks(k)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    report.figure(fig, "spinup_ts", f"Surface temperature of the later state (the mean of each run's last "
                                    f"{target_days} days) inferred from the first k days of a cold start, against "
                                    "the GCM, on the held-out runs: the surrogate, persistence of day k, and the "
                                    "training runs' mean later state")
    plt.close(fig)


def add_spinup_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    report.heading("Spin-up acceleration")
    record = aggregated(report, study_dir, "spin-up")
    if record is None:
        return
    summary = json.loads(Path(record["outputs"]["summary"]).read_text())
    with open(record["outputs"]["table"], newline="") as f:
        table = list(csv.DictReader(f))
    rows = summary["rows"]
    partial = partial_note(summary)
    report.paragraph(
        f"Each run of a cold-start sweep is integrated to its end; its later state is the mean of its last "
        f"{summary['target_days']} days. A climate surrogate given the first k days (and the planet parameters) "
        f"predicts it; one surrogate is trained per k. Scored on the held-out {' and '.join(summary['held_out'])} "
        f"runs {', '.join(summary['runs'])} (whole runs), area-weighted RMSE in physical units pooled over them."
        f"{partial}")
    if summary.get("warning"):
        report.paragraph(f"Note: {summary['warning']}.")
    columns = ["spinup_days", *(c for c in ("ts_surrogate_rmse_K", "ts_persistence_rmse_K", "ts_climatology_rmse_K")
                                if c in rows[0]),
               "mean_ratio_to_persistence", "mean_ratio_to_climatology", "channels_beating_both", "channels"]
    report.table(rows, columns)
    report.paragraph("mean_ratio_to_*: the surrogate's RMSE over the baseline's, averaged over channels (< 1: the "
                     "surrogate is better); channels_beating_both: channels where it beats persistence and "
                     "climatology at once.")
    report.heading("Integration saved", 3)
    report.table([{"k [days]": r["spinup_days"],
                   "simulated days skipped per day integrated": r["days_skipped_per_day_used"],
                   "ExoPlaSim CPU-s skipped per run (process + children)": r.get("gcm_cpu_s_skipped"),
                   "surrogate CPU-s per run (process + children)": r.get("surrogate_cpu_s"),
                   "speed-up, CPU time": r.get("speedup_cpu"),
                   "ExoPlaSim wall × cores skipped per run [core-s]": r.get("gcm_wall_core_s_skipped"),
                   "surrogate wall × cores per run [core-s]": r.get("surrogate_wall_core_s"),
                   "speed-up, wall × cores": r.get("speedup_wall_core")} for r in rows])
    report.paragraph(
        "Days skipped: (T − k) / k for runs of T days. Two cost measures, one clock (astrohpc.cost_clock), each "
        "compared only with itself: CPU time of the process and the children it waited for (ExoPlaSim's ranks and "
        "postprocessor; the surrogate's torch threads), and wall time × the cores held (ExoPlaSim's gcm.ncpus "
        "ranks, setup and waiting included; the surrogate's torch threads). ExoPlaSim's cost per simulated day "
        "comes from its run summaries, times the days skipped; the surrogate's is one inference at batch 1. "
        "Speed-up: the GCM's cost of the whole run over that of k GCM days plus the surrogate. A dash: no ExoPlaSim "
        "run summary (or, for CPU time, one written before it was measured).")
    picked = [r for r in table if r["channel"] in SELECTED]
    if picked:
        report.heading("Selected channels", 3)
        report.table([{key: _number(r[key]) for key in ("spinup_days", "channel", "units", "surrogate_rmse",
                                                         "persistence_rmse", "climatology_rmse",
                                                         "surrogate_over_persistence", "surrogate_over_climatology")}
                      for r in picked])
    if "ts_surrogate_rmse_K" in rows[0]:
        _plot_ts(report, rows, summary["target_days"])


def _number(value: str) -> Any:
    try:
        return int(value) if value.isdigit() else float(value) if value != "" else None
    except ValueError:
        return value
