"""Report sections of the rollout and ablation studies, read from their study folders.

rollout: one row per member (steps reached before a divergence flag and why, surface-temperature
    and energy drift per 1,000 steps, dry-mass error, ADF, last-window climatology RMSE) and the
    global-mean surface temperature of every member against the step, from the CF diagnostics.
ablation: the effect of removing each component (variant − full, paired by seed) with its
    bootstrap CI, Cohen's d and Holm-adjusted p-values (one family over every variant × metric),
    what the design can resolve at all, and a chart of the differences.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.study_record import PARTIAL_NOTE, aggregated, other_cube, partial_note
from astrohpc.studies.tasks import read_result


def _incomplete(report: MarkdownReport, study_dir: Path, what: str) -> dict[str, Any] | None:
    record = aggregated(report, study_dir, what)
    if partial_note(record):
        report.paragraph(PARTIAL_NOTE)
    return record


def _plot_rollouts(report: MarkdownReport, study_dir: Path, record: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for task_id in record["finished"]:
        result = read_result(study_dir, task_id)
        with xr.open_dataset(result["netcdf"]) as ds:
            for m in range(ds.sizes["member"]):
                label = str(ds["member_label"].values[m]) if "member_label" in ds else f"{result['run']} {m}"
                ax.plot(ds["lead_days"].values, ds["ts"].values[:, m], lw=1, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("simulated days since the initial GCM state (log)")
    ax.set_ylabel("global-mean surface temperature [K]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    report.figure(fig, "rollout_ts", "Global-mean surface temperature of each rollout member against simulated time; "
                                     "a line that stops is a member flagged as diverged (frozen at its last state "
                                     "inside the physical bounds)")
    plt.close(fig)


def _per_step(step_days: Any) -> str:
    """'one day per step' or 'x days per step', from the rollout's own step (older summaries: unknown)."""
    if not step_days:
        return "step length not recorded"
    return "one day per step" if step_days == 1 else f"{step_days:g} days per step"


def _span(days: Any) -> str:
    """'30-day' (or '20–30-day' over runs of different lengths) from the summary's GCM mean spans."""
    if not days:
        return "whole-run"
    return f"{days[0]:g}-day" if len(days) == 1 else f"{days[0]:g}–{days[-1]:g}-day"


def add_rollout_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    report.heading("Long rollouts")
    record = _incomplete(report, study_dir, "rollout")
    if record is None:
        return
    summary = json.loads(Path(record["outputs"]["summary"]).read_text())
    with open(record["outputs"]["table"], newline="") as f:
        rows = list(csv.DictReader(f))
    report.paragraph(
        f"{summary['members']} members over runs {', '.join(summary['runs'])}{other_cube(summary.get('cube'))}, "
        f"{summary['steps']} steps each "
        f"({_per_step(summary.get('step_days'))}): **{summary['members_without_divergence']} reached the end "
        "without a divergence flag**; "
        f"the earliest flag came after {summary['min_steps_without_divergence']} steps. Wall time per 10,000 steps of "
        f"one member: {summary['median_wall_s_per_10000_member_steps']:.0f} s on this CPU (members batched; a flagged "
        f"member is frozen and costs nothing). Largest relative dry-mass error against the initial state, after the "
        f"dry-mass corrector (rounding by construction): {summary['max_dry_mass_rel_error']:.2g}.")
    columns = ["run", "member", "steps_without_divergence", "divergence", "ts_initial_K", "ts_last_K",
               "ts_drift_K_per_1000", "dry_mass_max_rel_error", "adf_p_second_half", "ts_climatology_rmse_K"]
    report.table([{c: _number(r.get(c)) for c in columns} for r in rows], columns)
    report.paragraph("Drift: the linear trend of the global mean per 1,000 steps over the steps before any flag. ADF: "
                     "statsmodels' augmented Dickey–Fuller p-value of global-mean surface temperature over the second "
                     "half (only for a member that got there). Climatology RMSE: the last "
                     f"{summary.get('climatology_steps') or '?'} steps' mean against the GCM run's own "
                     f"{_span(summary.get('gcm_mean_days'))} mean (the longest GCM climatology the runs have).")
    if summary.get("lim"):
        report.paragraph("Beside them, the linear inverse model (fitted on the training runs) rolled out from the same "
                         "states with the same forcing: a linear, damped baseline, so what it shows is how close a "
                         "bounded climate gets to the GCM's.")
        report.table([{k: _number(v) if k not in ("run", "member") else v for k, v in row.items()}
                      for row in summary["lim"]], ["run", "member", "steps_without_flag", "ts_drift_K_per_1000",
                                                   "ts_climatology_rmse_K"])
    _conservation_table(report, summary.get("conservation"))
    _plot_rollouts(report, study_dir, record)
    _plot_spectra(report, study_dir, record)


def _plot_spectra(report: MarkdownReport, study_dir: Path, record: dict[str, Any]) -> None:
    """ts power by total wavenumber at the end of each member's rollout beside the GCM run's last state."""
    results = [read_result(study_dir, t) for t in record["finished"]]
    results = [r for r in results if r.get("ts_power_by_l")]
    if not results:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for r in results:
        spec = r["ts_power_by_l"]
        ax.plot(range(1, len(spec["gcm_last_state"])), spec["gcm_last_state"][1:], "k", lw=2, label=f"GCM {r['run']}")
        for label, values in spec["members"].items():
            ax.plot(range(1, len(values)), values[1:], lw=1, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("total wavenumber l")
    ax.set_ylabel("surface temperature power [K² per l]")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    report.figure(fig, "rollout_spectra", "Surface-temperature power by total wavenumber (l ≥ 1) of each member's last "
                                          "state (the last before any flag) beside the GCM run's last state (black)")
    plt.close(fig)


def _conservation_table(report: MarkdownReport, conservation: Any) -> None:
    """Each conserved quantity's error per step, the network's own (before the correctors) beside the
    corrected step's, over every member's steps before any flag."""
    if not conservation:
        return
    rows = []
    for q, entry in conservation.items():
        for when in ("before", "after"):
            e = entry.get(when) or {}
            alone = when == "before"
            rows.append({"quantity": q, "units (per step)": entry["units"],
                         "when": "network alone (before the correctors)" if alone else "after the correctors",
                         "mean abs. error per step": e.get("mean_abs_per_step"),
                         "largest abs. error per step": e.get("max_abs_per_step"),
                         "largest abs. sum over the rollout": e.get("max_abs_cumulative"),
                         "what acts on it": entry.get("corrector") if when == "after" else "—"})
    report.paragraph("**Conservation, before and after the correctors.** Per step: dry mass as the relative change of "
                     "the global dry-air mass; water as the budget residual ΔW/step − (E − P); energy as ΔE/step − F̄ "
                     "(0: the step conserves). The sum over the rollout is the drift those errors add up to (before "
                     "the correctors: how far the quantity would have wandered had nothing put it back, to first "
                     "order).")
    report.table(rows, list(rows[0]))


def add_ablation_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    report.heading("Ablation")
    record = _incomplete(report, study_dir, "ablation")
    if record is None:
        return
    data = json.loads(Path(record["outputs"]["json"]).read_text())
    if data.get("warning"):
        report.paragraph(f"Note: {data['warning']}.")
    rows = data["rows"]
    tests = sum(1 for r in rows if r.get("p_holm") is not None)
    report.paragraph(
        f"Each variant trained with seeds {', '.join(map(str, data['seeds']))}, paired with the full model of the same "
        "seed; diff = variant − full (a positive RMSE ratio difference means the component helped). Paired t-test and "
        "Wilcoxon signed-rank (scipy), Cohen's d of the paired differences, 95 % bootstrap CI of the mean difference "
        f"(scipy), p-values adjusted by Holm (statsmodels) over one family of all {tests} variant × metric tests.")
    power = data.get("resolving_power")
    if power:
        verdict = (f"can reach {power['alpha']:g}" if power["wilcoxon_can_reject"]
                   else f"cannot reach {power['alpha']:g} whatever the effect")
        report.paragraph(
            f"**Resolving power.** With {power['pairs']} pairs and {power['tests']} tests, the exact Wilcoxon's "
            f"smallest two-sided p is {power['wilcoxon_min_p']:.3g}, {power['wilcoxon_min_p_holm']:.3g} after Holm: "
            f"it {verdict}. The paired t-test at Holm's first step "
            f"(α = {power['alpha']:g}/{power['tests']}) detects with {power['power']:.0%} power only effects with "
            f"|d| ≥ {power['t_detectable_d']:.3g}; a smaller effect that is not significant is not resolved, not "
            "shown absent (the 'resolution' column).")
    columns = ["variant", "metric", "n", "mean_full", "mean_variant", "diff", "ci_low", "ci_high", "cohens_d", "p_t",
               "p_wilcoxon", "p_holm", "p_wilcoxon_holm", "significant", "resolution"]
    report.table([{c: r.get(c) for c in columns} for r in rows], columns)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = sorted({r["metric"] for r in rows})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        sub = [r for r in rows if r["metric"] == metric and r.get("diff") is not None]
        y = range(len(sub))
        diffs = [r["diff"] for r in sub]
        low = [r["diff"] - r["ci_low"] if r.get("ci_low") is not None else 0 for r in sub]
        high = [r["ci_high"] - r["diff"] if r.get("ci_high") is not None else 0 for r in sub]
        ax.errorbar(diffs, list(y), xerr=[low, high], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(list(y), [f"{r['variant']} (p_Holm={r['p_holm']:.2g})" if r.get("p_holm") is not None
                                else r["variant"] for r in sub], fontsize=7)
        ax.set_xlabel(f"{metric}: variant − full")
    report.figure(fig, "ablation", "Effect of removing each component: mean paired difference (variant − full) with "
                                   "its 95 % bootstrap CI; Holm-adjusted p-value of the paired t-test in the label")
    plt.close(fig)


def _number(value: Any) -> Any:
    try:
        return float(value) if value not in ("", None) else None
    except ValueError:
        return value
