"""A Markdown report: headings, paragraphs, tables and figures, written atomically at the end."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

from astrohpc.atomic_write import atomic_path, write_text


def format_cell(value: Any, digits: int = 4) -> str:
    """Numbers to `digits` significant digits; None and NaN as an em dash; pipes escaped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None,
                   digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of `rows` (dicts); columns default to the first row's keys."""
    if not rows:
        return "_(no rows)_\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(format_cell(row.get(c), digits) for c in columns) + " |")
    return "\n".join(lines) + "\n"


class MarkdownReport:
    """Collects sections in memory; `write()` puts report.md and its figures in `folder`."""

    def __init__(self, folder: str | Path, title: str):
        self.folder = Path(folder)
        self.parts: list[str] = [f"# {title}\n"]
        self.figures: list[Path] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"\n{'#' * level} {text}\n")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"\n{text.strip()}\n")

    def table(self, rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, digits: int = 4) -> None:
        self.parts.append("\n" + markdown_table(rows, columns, digits))

    def figure(self, fig: Any, name: str, caption: str) -> Path:
        """Save a matplotlib figure as `name`.png beside the report and reference it."""
        path = self.folder / f"{name}.png"
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        self.figures.append(path)
        self.parts.append(f"\n![{caption}]({path.name})\n\n_{caption}_\n")
        return path

    def text(self) -> str:
        return "".join(self.parts)

    def write(self, name: str = "report.md") -> Path:
        return write_text(self.folder / name, self.text())
