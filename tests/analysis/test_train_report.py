"""The training section of a report is read from the run directory: the table matches the
validation CSV of the kept epoch, the loss figure exists, and the split is the run's."""

from __future__ import annotations

import csv

from astrohpc.analysis.markdown import MarkdownReport
from astrohpc.analysis.train_report import add_training_section, validation_rows
from astrohpc.config import Config, from_dict
from astrohpc.data.cube import read_meta
from astrohpc.train.trainer import train


def test_training_section_matches_the_run(physics_cube, tmp_path):
    names = read_meta(physics_cube).run_names
    cfg = from_dict(Config, {"run": {"root": str(tmp_path), "name": "r"},
                             "model": {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1}},
                             "train": {"cube": str(physics_cube), "validation_runs": [names[1]], "epochs": 2,
                                       "batch_size": 2, "checkpoint_every": 0}}, source="test")
    summary = train(cfg)
    report = MarkdownReport(tmp_path / "report", "t")
    add_training_section(report, tmp_path / "r")
    text = report.write().read_text()
    assert (tmp_path / "report" / "training_loss_r.png").stat().st_size > 1000
    assert f"training {names[0]}; validation {names[1]}" in text
    best = summary["best"]["epoch"]
    with open(tmp_path / "r" / "metrics" / "validation.csv", newline="") as f:
        csv_rows = {r["channel"]: r for r in csv.DictReader(f) if int(r["epoch"]) == best}
    rows = validation_rows(tmp_path / "r", best)
    assert len(rows) == len(csv_rows)
    for row in rows:
        source = csv_rows[row["channel"]]
        assert row["surrogate RMSE"] == float(source["rmse"])
        assert row["persistence RMSE"] == float(source["persistence_rmse"])
        assert row["surrogate better"] == (float(source["rmse"]) < float(source["persistence_rmse"]))
    better = sum(r["surrogate better"] for r in rows)
    assert f"in **{better} of {len(rows)}** channels" in text
    ts = next(r for r in rows if r["channel"] == "ts")
    assert f"| ts | K | {ts['surrogate RMSE']:.4g} |" in text
