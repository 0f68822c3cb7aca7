"""Training metrics as CSV tables and one JSON summary in the run directory (rank 0 writes).

    metrics/train.csv        one row per logged step: step, epoch, lr, loss and its parts, grad norm,
                             samples/s (global batch)
    metrics/validation.csv   one row per epoch × channel: the model's area-weighted RMSE in the
                             channel's units beside its baseline's (astrohpc.train.validate)
    metrics.json             the run's summary: status, steps, epochs, best epoch, final validation,
                             the run split, the distributed environment, provenance

Tables are rewritten whole, atomically, at every write (they are small), so a kill never leaves
a half row. A resumed run drops the rows after its checkpoint's step first, so a table never
holds a step twice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

from astrohpc.atomic_write import write_json, write_text


def _read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


class MetricsLog:
    """See the module doc. enabled=False (ranks > 0) makes every call a no-op."""

    def __init__(self, run_dir: str | Path, enabled: bool = True):
        self.run_dir, self.enabled = Path(run_dir), enabled
        self.train_path = self.run_dir / "metrics" / "train.csv"
        self.validation_path = self.run_dir / "metrics" / "validation.csv"
        self.summary_path = self.run_dir / "metrics.json"
        self.train_rows: list[dict[str, Any]] = []
        self.validation_rows: list[dict[str, Any]] = []

    def resume(self, step: int) -> None:
        """Keep the rows of steps <= `step` (the checkpoint's) from an earlier attempt."""
        if not self.enabled:
            return
        self.train_rows = [r for r in _read_rows(self.train_path) if int(r["step"]) <= step]
        self.validation_rows = [r for r in _read_rows(self.validation_path) if int(r["step"]) <= step]

    def log_train(self, row: dict[str, Any]) -> None:
        if self.enabled:
            self.train_rows.append(dict(row))
            _write_rows(self.train_path, self.train_rows)

    def log_validation(self, epoch: int, step: int, result: dict[str, Any]) -> None:
        if not self.enabled:
            return
        for channel in result.get("channels", []):
            self.validation_rows.append({"epoch": epoch, "step": step, "loss": result["loss"], **channel})
        _write_rows(self.validation_path, self.validation_rows)

    def write_summary(self, summary: dict[str, Any]) -> Optional[Path]:
        return write_json(self.summary_path, summary) if self.enabled else None
