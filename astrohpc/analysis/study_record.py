"""A study's aggregation record for a report section, or a paragraph saying why there is none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from astrohpc.analysis.markdown import MarkdownReport


def aggregated(report: MarkdownReport, study_dir: Path, what: str) -> Optional[dict[str, Any]]:
    """The study's aggregate.json when it was aggregated; else None, after a paragraph in `report`
    saying the study did not run, or is incomplete (which tasks failed or are missing)."""
    path = Path(study_dir) / "aggregate.json"
    if not path.is_file():
        report.paragraph(f"No aggregation in `{study_dir}` (the study did not run).")
        return None
    record = json.loads(path.read_text())
    if not record.get("outputs"):
        report.paragraph(f"The {what} study in `{study_dir}` is **incomplete** and was not aggregated: failed "
                         f"{record['failed'] or 'none'}, missing {record['missing'] or 'none'}.")
        return None
    return record


PARTIAL_NOTE = "**Partial: not every task finished; the tables cover the finished ones.**"


def partial_note(record: Optional[dict[str, Any]]) -> str:
    """The sentence (with a leading space) a section adds when its study was aggregated with
    --allow-partial; "" for a complete one."""
    return f" {PARTIAL_NOTE}" if record and record.get("partial") else ""


def other_cube(cube: Optional[dict[str, Any]]) -> str:
    """' of CUBE (…)' when a study scored runs of another cube than the training cube (study.cube:
    its outputs' `cube` record), else ''."""
    if not cube or cube.get("training_cube", True):
        return ""
    return f" of {cube['path']} (another cube than the training cube, converted separately)"


def study_config(study_dir: Path) -> dict[str, Any]:
    """The resolved config a study was planned with (study.json's `config`, a plain dict): report
    text that states a setting reads it from here, never types it."""
    path = Path(study_dir) / "study.json"
    return json.loads(path.read_text())["config"] if path.is_file() else {}
