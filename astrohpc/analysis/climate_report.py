"""The climate surrogate's section of a report, from a climate study folder (astrohpc.studies.climate_loo).

Read from the study's files only (aggregate.json, climate_summary.json): leave-one-out RMSE per
variable of the Gaussian process beside the nearest run, linear and quadratic regression and the
ensemble mean, with the ratios the targets are stated in, the predictive intervals' coverage and
CRPS, the out-of-envelope verdicts, the cost on both sides (CPU time) and how far each GCM run
still was from equilibrium over the averaging window. Settings are read from the study's config.
"""

from __future__ import annotations

import json
from pathlib import Path

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.study_record import aggregated, partial_note, study_config

METHODS = ("gp", "network", "nearest", "linear", "quadratic", "ensemble_mean")


def add_climate_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    report.heading("Climate surrogate (Gaussian process), leave-one-out")
    record = aggregated(report, study_dir, "climate")
    if record is None:
        return
    s = json.loads(Path(record["outputs"]["summary"]).read_text())
    cfg = study_config(study_dir)
    gp = cfg.get("model", {}).get("gp", {})
    report.paragraph(
        f"Each of the {s['n_runs']} runs inside the design's envelope is held out once; the surrogate (EOFs of each "
        f"variable's time mean kept to {gp.get('variance_kept')} of the variance, at most {gp.get('max_components')} "
        f"components, one GP each) is refit on the others and predicts the mean of the held-out run's last "
        f"{s['average_days']} days. Physical units, area-weighted; RMSE pooled over the held-out runs. The baselines "
        f"use the same training runs.{partial_note(s)}")
    rows = []
    floor, to_floor = s.get("twin_floor") or {}, s.get("loo_ratio_to_twin_floor") or {}
    for v, by in s["loo_rmse"].items():
        rows.append({"variable": v, **{m: by[m] for m in METHODS if m in by}, "GCM twin floor": floor.get(v),
                     "GP ÷ twin floor": (to_floor.get(v) or {}).get("gp"),
                     "GP ÷ nearest": s["loo_ratio_to_nearest"][v],
                     "GP ÷ best regression": s["loo_ratio_to_best_regression"][v],
                     "coverage 68 %": s["coverage68"][v], "coverage 95 %": s["coverage95"][v], "CRPS": s["crps"][v]})
    report.table(rows, digits=3)
    ood = s["ood"]
    flagged = [r for r, v in ood["verdicts"].items() if v["flagged"]]
    report.paragraph(
        f"Out-of-envelope flag (outside {ood.get('envelope', 'the envelope')}, or mean predictive σ of "
        f"{ood['sigma_channel']} above {cfg.get('study', {}).get('ood_std_factor')} × the largest leave-one-out σ = "
        f"{ood['sigma_threshold']:.3g}): flagged {', '.join(flagged) or 'none'}; outside runs "
        f"{', '.join(s['outside_runs']) or 'none'} flagged {ood['outside_flagged']}; inside runs unflagged "
        f"{ood['inside_unflagged_fraction']:.2f}.")
    speedup = s.get("speedup_cpu_vs_exoplasim_run")
    report.paragraph(
        f"Cost ({s['cost_measure']}): {s['cost_s_per_prediction']:.3g} s per prediction; ExoPlaSim "
        f"{s.get('exoplasim_cpu_s_per_run') or float('nan'):.4g} s per run (wall × cores "
        f"{s.get('exoplasim_wall_core_s_per_run') or float('nan'):.4g} s) — "
        f"{'×' + format(speedup, ',.0f') if speedup else 'no GCM timing'}. {s['twin_floor_note']}.")
    report.paragraph(f"Distance from equilibrium of each GCM run over its last {s['average_days']} days "
                     "(TOA imbalance from the means file; > 0: still gaining energy):")
    report.table([{"run": r["run"], "TOA imbalance W m-2": r["toa_imbalance_W_m2"],
                   "ts trend K/yr": r["ts_trend_K_per_yr"], "final global ts K": r["final_global_ts_K"]}
                  for r in s["equilibrium"]], digits=3)
