"""The training section of a report, from what a training run wrote (metrics.json, metrics/*.csv).

Nothing is typed in: the split, the step counts, the preemption and resume, the loss curves and
the validation table all come from the run directory. The validation table compares the
surrogate with its baseline (persistence for the emulator, the training climatology for the
climate surrogate) on the validation runs at the epoch whose weights were kept (the best), in
each channel's physical units, area-weighted; it says plainly where the surrogate loses.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.data.cube import pick_channels

SHOWN = ("ts", "tas", "ps", "pr", "rlut", "rsut", "ta@0.924", "ta@0.5668", "ua@0.5668", "hus@0.924")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def validation_rows(run_dir: Path, epoch: int) -> list[dict[str, Any]]:
    """Rows of `epoch` with the model's RMSE, the baseline's, their ratio and who wins."""
    out = []
    for r in _rows(run_dir / "metrics" / "validation.csv"):
        if int(r["epoch"]) != epoch:
            continue
        baseline_key = "persistence_rmse" if "persistence_rmse" in r else "climatology_rmse"
        model, base = float(r["rmse"]), float(r[baseline_key])
        out.append({"channel": r["channel"], "units": r["units"], "surrogate RMSE": model,
                    f"{baseline_key.split('_')[0]} RMSE": base, "ratio": model / base if base > 0 else None,
                    "surrogate better": model < base})
    return out


def _select(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    picked = [rows[i] for i in pick_channels([r["channel"] for r in rows], list(SHOWN))]
    return picked or rows[:12]


def _plot_losses(report: MarkdownReport, run_dir: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _rows(run_dir / "metrics" / "train.csv")
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], label="training loss (rank mean)")
    ax.plot([int(r["step"]) for r in rows], [float(r["data"]) for r in rows], label="data term", alpha=0.6)
    val = [(h["step"], h["validation_loss"]) for h in history if "validation_loss" in h]
    if val:
        ax.plot(*zip(*val), "o-", label="validation loss (held-out run)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss [normalised units²]")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    report.figure(fig, f"training_loss_{run_dir.name}",
                  f"`{run_dir.name}`: training loss (data term: area-weighted MSE in normalised units — of the step "
                  "change for the emulator, of the time-mean field for the climate surrogate — plus the weighted "
                  "physics terms) and the validation loss per epoch on the held-out validation run")
    plt.close(fig)


def add_training_section(report: MarkdownReport, run_dir: str | Path) -> None:
    """Append the training section for `run_dir` to `report` (a note when the run has not finished)."""
    run_dir = Path(run_dir)
    report.heading(f"Surrogate training: `{run_dir.name}`")
    summary_path = run_dir / "metrics.json"
    if not summary_path.is_file():
        report.paragraph(f"No training summary in `{run_dir}` (the run did not finish).")
        return
    s = json.loads(summary_path.read_text())
    env, split = s["distributed"], s["split"]
    report.paragraph(
        f"`{run_dir}`: status **{s['status']}** after {s['step']} of {s['total_steps']} optimizer steps "
        f"({s['steps_per_epoch']} per epoch, global batch {s['global_batch']}), {env['world_size']} rank(s) "
        f"launched by {env['launcher']} ({env['backend']}, {env['device']}). Whole runs: training "
        f"{', '.join(split['train'])}; validation {', '.join(split['validation']) or '—'}; held out for testing "
        f"{', '.join(split['test']) or '—'} (never read by the trainer).")
    logs = "".join(p.read_text(errors="replace") for p in sorted((run_dir / "logs").glob("*.out")))
    restarts = logs.count("astrohpc: train job") - 1
    if restarts > 0:
        resumed = list(dict.fromkeys(line.split("resumed from ", 1)[1] for line in logs.splitlines()
                                     if "resumed from " in line))  # every rank logs it
        report.paragraph(f"The job was preempted (signal) and requeued {restarts} time(s); it resumed from "
                         f"{'; '.join(resumed) or 'its newest checkpoint'} and finished in the same run "
                         "directory.")
    _plot_losses(report, run_dir, s.get("history") or [])
    best = s.get("best")
    if best is None:
        report.paragraph("No validation run: no held-out comparison.")
        return
    rows = validation_rows(run_dir, int(best["epoch"]))
    better = sum(1 for r in rows if r["surrogate better"])
    report.heading(f"Validation at the kept epoch {best['epoch']} (step {best['step']})", 3)
    report.paragraph(
        f"Area-weighted RMSE on the validation run, one step ahead, in physical units. The surrogate beats "
        f"the baseline in **{better} of {len(rows)}** channels; selected channels below (ratio < 1: the "
        "surrogate is better). A short demo training is not expected to beat persistence at a one-day lead; "
        "the table says where it does not.")
    report.table(_select(rows))
