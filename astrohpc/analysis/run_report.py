"""The report of a whole run folder (e.g. runs/demo): everything found in it, one REPORT.md.

Found by what each folder holds: a sweep (manifest.json), training runs (metrics.json beside
export/), studies (study.json: parity, rollout, ablation, calibration, spinup), benchmark JSON
(bench/*.json). Figures and the sweep report's tables go to DIR/report/; DIR/REPORT.md is the same
text with its figure links pointing there, and a list of every CSV table the studies wrote.
Regenerated from the files by one command; nothing is typed in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from astrohpc.atomic_write import write_text
from astrohpc.errors import DataError

STUDY_ORDER = ("parity", "rollout", "ablation", "calibration", "spinup")


def discover(run_dir: Path) -> dict[str, list[Path]]:
    """{"sweeps", "trainings", "studies", "bench"} under run_dir (one level deep, sorted)."""
    folders = sorted(p for p in run_dir.iterdir() if p.is_dir())
    sweeps = [p for p in folders if (p / "manifest.json").is_file()]
    trainings = [p for p in folders if (p / "metrics.json").is_file() and (p / "export").is_dir()]
    studies = [p for p in folders if (p / "study.json").is_file()]
    kind = {p: json.loads((p / "study.json").read_text())["kind"] for p in studies}
    studies.sort(key=lambda p: (STUDY_ORDER.index(kind[p]) if kind[p] in STUDY_ORDER else 99, p.name))
    return {"sweeps": sweeps, "trainings": trainings, "studies": studies,
            "bench": sorted((run_dir / "bench").glob("*.json")) if (run_dir / "bench").is_dir() else []}


def build_run_report(run_dir: str | Path, notes: Iterable[str] = ()) -> Path:
    """Write run_dir/REPORT.md (figures in run_dir/report/); DataError when nothing is found."""
    from astrohpc.analysis.sweep_report import build_sweep_report

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    found = discover(run_dir)
    if not found["sweeps"]:
        raise DataError(f"{run_dir}: no sweep folder (a subfolder with manifest.json) to report on; "
                        "for a single sweep use `astrohpc report sweep SWEEP_DIR`")
    inner = build_sweep_report(found["sweeps"][0], run_dir / "report", found["bench"], notes, found["trainings"],
                               found["studies"])
    text = inner.read_text().replace("](", "](report/")
    tables = sorted(p for s in found["studies"] for p in s.glob("*.csv"))
    if tables:
        text += "\n## Tables (CSV)\n\n" + "".join(f"- `{p.relative_to(run_dir)}`\n" for p in tables)
    return write_text(run_dir / "REPORT.md", text)
