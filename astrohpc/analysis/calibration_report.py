"""The calibration section of a report, from a calibration study folder (astrohpc.studies.calibration).

Read from the study's files only (aggregate.json, calibration.json): what was compared (which runs
the σ-scale was fitted on and which it was scored on, the members or passes of each method, what
was calibrated — the parity study's emulator or models trained here — and at which leads), the
table of coverage, CRPS and its skill against the training climatology, ECE and sharpness per
method, channel and lead before and after σ-scaling (MC dropout and the ensemble also scored as
ensembles: fair CRPS, member-interval coverage, ECE), the verdict against the targets (95 %
coverage within 94–96 %, the published ECE), a reliability diagram of the pooled forecasts and
the rank histograms of the ensemble methods. An
incomplete study is reported as incomplete.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.study_record import aggregated, partial_note

COLUMNS = ("method", "channel", "units", "lead", "scaling", "sigma_scale", "coverage68", "coverage95", "crps", "crpss",
           "ece", "sharpness", "members", "crps_fair", "coverage68_ens", "coverage95_ens", "ece_ens")


def _describe(method: str, info: dict[str, Any]) -> str:
    spread = (f"{info['members']} members" if method == "ensemble" else
              f"{info['samples']} dropout passes" if method == "mc_dropout" else "its Gaussian head")
    split = info["split"]
    scored = split.get(info["reported_on"]) or []
    what = (f"the export `{info['studied_model']}` the parity study uses"
            + (" (reused as is)" if info.get("reused") else " (its configuration, retrained)")
            if info.get("studied_model") else "models trained here")
    leads = info.get("leads_days")
    when = (f"at leads {leads[0]:g}–{leads[-1]:g} days" if leads else "on time means")
    text = (f"**{method}** ({spread}) of {what}, {info.get('forecast') or 'forecasts'}, scored {when}: σ-scale "
            f"fitted on the validation run(s) {', '.join(split['validation'])}, scored on the {info['reported_on']} "
            f"run(s) {', '.join(scored)}")
    notes = "; ".join(info.get("notes") or [])
    return text + (f" — {notes}" if notes else "") + "."


def _plot_reliability(report: MarkdownReport, data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = data["levels"]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, label="perfect calibration")
    for i, (method, info) in enumerate(data["methods"].items()):
        curves = info["curves"][data["pooled"]]
        color = f"C{i}"
        ax.plot(levels, curves["before"]["observed"], "--o", color=color, ms=3,
                label=f"{method}, raw (ECE {curves['before']['ece']:.3f})")
        ax.plot(levels, curves["after"]["observed"], "-o", color=color, ms=3,
                label=f"{method}, σ-scaled (ECE {curves['after']['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("nominal quantile level p")
    ax.set_ylabel("observed frequency of outcome ≤ predicted p-quantile")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    where = sorted({info["reported_on"] for info in data["methods"].values()})
    report.figure(fig, "calibration_reliability",
                  f"Reliability of each method's Gaussian forecasts (mean and σ; for MC dropout and the ensemble the "
                  f"mixture's) on the held-out {' and '.join(where)} runs, pooled over every scored channel in "
                  "normalised units and over samples and grid cells (area-weighted): for each nominal level p, the "
                  "share of outcomes at or below the predicted p-quantile, before (dashed) and after (solid) the "
                  "σ-scaling fitted on the validation runs. On the diagonal: calibrated; below it at high p: "
                  "over-confident.")
    plt.close(fig)


def _plot_rank_histograms(report: MarkdownReport, data: dict[str, Any]) -> None:
    """The rank histogram of each ensemble method's selected channels, σ-scaled, every lead pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(method, channel, curves["after"]["rank_histogram"]) for method, info in data["methods"].items()
              for channel, curves in info["curves"].items()
              if channel != data["pooled"] and (curves.get("after") or {}).get("rank_histogram")]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.6), squeeze=False, sharey=True)
    for ax, (method, channel, hist) in zip(axes[0], panels):
        ax.bar(range(len(hist)), hist, color="C0")
        ax.axhline(1.0 / len(hist), color="grey", lw=1)
        ax.set_title(f"{method}: {channel}", fontsize=8)
        ax.set_xlabel("rank of the GCM among members")
    axes[0][0].set_ylabel("frequency (area-weighted)")
    report.figure(fig, "calibration_rank_histograms",
                  "Rank histograms of the ensemble methods (members or MC-dropout samples, σ-scaled) per selected "
                  "channel, every lead pooled: the frequency with which the GCM falls at each rank among the "
                  "members. Flat (grey line): calibrated; U-shaped: over-confident; peaked: under-confident.")
    plt.close(fig)


def add_calibration_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    report.heading("Calibration of the predictive uncertainty")
    record = aggregated(report, study_dir, "calibration")
    if record is None:
        return
    data = json.loads(Path(record["outputs"]["json"]).read_text())
    partial = partial_note(data)
    report.paragraph(
        "Each uncertainty method is judged on whole held-out runs in physical units: the emulator rolled out "
        "from each run's initial GCM state as in the parity study (every lead pooled, and the first and last "
        "lead), the climate surrogate's time-mean fields. As a Gaussian (the mean and σ of the members or "
        "samples): coverage of the central 68 % and 95 % intervals, CRPS and its skill against the training "
        "climatology (1 − CRPS/CRPS_clim), ECE (quantile calibration) and sharpness (mean σ). MC dropout and "
        "the ensemble also as an ensemble: fair CRPS, coverage of the members' central intervals (an ensemble "
        "of M members resolves at most (M − 1)/(M + 1)), ECE of their quantiles and the rank histogram. "
        "Area-weighted over samples and grid cells, per selected channel; the Gaussian summary also pooled over "
        "every channel in normalised units; 'after': σ (the members' spread) multiplied by the per-channel "
        f"factor fitted on the validation runs.{partial}")
    for method, info in data["methods"].items():
        report.paragraph(_describe(method, info))
    if record.get("warning"):
        report.paragraph(f"**Note:** {record['warning']}.")
    report.table([{c: r.get(c) for c in COLUMNS} for r in data["rows"]], list(COLUMNS))
    low, high = data["targets"]["coverage95"]
    published = data["targets"]["published_ece"]
    report.paragraph(f"Targets, pooled after σ-scaling: 95 % coverage within {low:.0%}–{high:.0%}; ECE against the "
                     f"published {published}.")
    report.table([{"method": m, "coverage95 raw": v["coverage95_before"], "coverage95 σ-scaled": v["coverage95_after"],
                   "within target": v["coverage95_within_target"], "ECE raw": v["ece_before"],
                   "ECE σ-scaled": v["ece_after"], f"ECE ≤ {published}": v["ece_at_or_below_published"]}
                  for m, v in data["verdicts"].items()])
    _plot_reliability(report, data)
    _plot_rank_histograms(report, data)
