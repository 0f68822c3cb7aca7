"""The cache of the ExoPlaSim smoke run (tests/gcm_smoke_fixture.py): what makes a new run, and
what is never taken for a finished one."""

from __future__ import annotations

import json

from gcm_smoke_fixture import SMOKE_CONFIG, find_smoke_run, smoke_run_key, smoke_runs_root

from astrohpc.config import load_config


def test_key_follows_the_run_settings_not_the_run_folder():
    key = smoke_run_key(load_config(SMOKE_CONFIG))
    assert key == smoke_run_key(load_config(SMOKE_CONFIG, ["run.root=/elsewhere"]))
    assert key != smoke_run_key(load_config(SMOKE_CONFIG, ["gcm.snapshot_variables=[ts, ps]"]))
    assert key != smoke_run_key(load_config(SMOKE_CONFIG, ["planet.instellation_W_m2=1300"]))
    assert key != smoke_run_key(load_config(SMOKE_CONFIG, ["gcm.levels=12"]))  # another build


def test_only_a_finished_run_under_its_key_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROHPC_CACHE", str(tmp_path))
    root = smoke_runs_root()
    assert root == tmp_path / "smoke-runs"
    key = smoke_run_key(load_config(SMOKE_CONFIG))
    assert find_smoke_run() is None
    (root / f".{key}.tmp-x1" / "smoke").mkdir(parents=True)  # a session killed mid-run
    assert find_smoke_run() is None
    (root / key).mkdir()
    (root / key / "summary.json").write_text(json.dumps({"status": "failed"}))
    assert find_smoke_run() is None
    (root / key / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert find_smoke_run() == root / key
