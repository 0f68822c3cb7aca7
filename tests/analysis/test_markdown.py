"""Markdown tables and reports."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from astrohpc.analysis.markdown import MarkdownReport, markdown_table  # noqa: E402


def test_table_formats_numbers_and_missing_values():
    text = markdown_table([{"run": "a|b", "T_K": 288.123456, "ok": True, "x": None},
                           {"run": "c", "T_K": math.nan, "ok": False, "x": 3}], digits=4)
    assert text.splitlines() == [
        "| run | T_K | ok | x |", "|---|---|---|---|",
        "| a\\|b | 288.1 | yes | — |", "| c | — | no | 3 |"]
    assert markdown_table([]) == "_(no rows)_\n"


def test_report_writes_markdown_and_figures(tmp_path):
    report = MarkdownReport(tmp_path / "rep", "Demo")
    report.heading("Runs")
    report.table([{"a": 1}])
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 2])
    report.figure(fig, "line", "A line")
    path = report.write()
    text = path.read_text()
    assert text.startswith("# Demo\n") and "## Runs" in text and "![A line](line.png)" in text
    assert (tmp_path / "rep" / "line.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
