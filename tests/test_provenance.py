"""Provenance: resolved config and a provenance record beside every output."""

from __future__ import annotations

import json

from astrohpc.config import config_hash, load_config
from astrohpc.provenance import collect, write_run_metadata


def test_run_metadata_round_trips(tmp_path):
    cfg = load_config(None, ["run.name=prov", "planet.preset=trappist1e"])
    record = write_run_metadata(tmp_path / "run", cfg, extra={"stage": "test"})
    assert load_config(tmp_path / "run" / "config.yaml") == cfg
    on_disk = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert on_disk == json.loads(json.dumps(record, default=str))
    assert on_disk["config_hash"] == config_hash(cfg)
    assert on_disk["stage"] == "test"
    assert set(on_disk["git"]) == {"commit", "dirty"}
    assert on_disk["packages"]["numpy"] and on_disk["packages"]["astrohpc"]
    assert on_disk["created_utc"].endswith("+00:00")


def test_slurm_ids_are_recorded(monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(var, raising=False)
    assert collect()["slurm"] == {}
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert collect()["slurm"] == {"job_id": "42", "array_job_id": "40", "array_task_id": "2"}
