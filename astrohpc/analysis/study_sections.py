"""A study folder's report section, chosen by the study's kind (study.json)."""

from __future__ import annotations

import json
from pathlib import Path

from astrohpc.analysis.markdown import MarkdownReport


def add_study_section(report: MarkdownReport, study_dir: str | Path) -> None:
    study_dir = Path(study_dir)
    path = study_dir / "study.json"
    if not path.is_file():
        report.heading(f"Study `{study_dir.name}`")
        report.paragraph(f"No study in `{study_dir}` (no study.json).")
        return
    kind = json.loads(path.read_text())["kind"]
    if kind == "parity":
        from astrohpc.analysis.parity_report import add_parity_section

        add_parity_section(report, study_dir)
    elif kind == "rollout":
        from astrohpc.analysis.rollout_report import add_rollout_section

        add_rollout_section(report, study_dir)
    elif kind == "ablation":
        from astrohpc.analysis.rollout_report import add_ablation_section

        add_ablation_section(report, study_dir)
    elif kind == "calibration":
        from astrohpc.analysis.calibration_report import add_calibration_section

        add_calibration_section(report, study_dir)
    elif kind == "spinup":
        from astrohpc.analysis.spinup_report import add_spinup_section

        add_spinup_section(report, study_dir)
    elif kind == "climate":
        from astrohpc.analysis.climate_report import add_climate_section

        add_climate_section(report, study_dir)
    else:
        report.heading(f"Study `{study_dir.name}` ({kind})")
        report.paragraph(f"See `{study_dir}/aggregate.json`; this report has no section for {kind} studies yet.")
