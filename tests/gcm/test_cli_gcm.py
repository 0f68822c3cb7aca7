"""`astrohpc gcm ...` through the real CLI entry point."""

from __future__ import annotations

import json

import pytest
from tests_gcm_paths import DEMO_CONFIG, SMOKE_CONFIG

from astrohpc.cli import main


def test_dry_run_prints_the_task_table_and_exact_scripts(tmp_path, capsys):
    assert main(["gcm", "sweep", str(DEMO_CONFIG), f"run.root={tmp_path}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "# task table (8 tasks)" in out
    assert "#SBATCH --array=0-7%2" in out and "#SBATCH --cpus-per-task=1" in out and "#SBATCH --mem=1G" in out
    assert f"#SBATCH --output={tmp_path.resolve()}/demo/logs/task-%A_%a.out" in out
    assert "--dependency=afterany:<arrays>" in out
    assert not (tmp_path / "demo").exists(), "a dry run writes nothing"


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["gcm", "run", str(SMOKE_CONFIG), "planet.instellation_W_m2=-1"]) == 2
    assert "instellation_W_m2 must be >= 0" in capsys.readouterr().err
    assert main(["gcm", "sweep", str(DEMO_CONFIG), "sweep.parameters={planet.spin: [1]}", "--dry-run"]) == 2
    assert "unknown sweep key 'planet.spin'" in capsys.readouterr().err
    assert main(["gcm", "task", str(tmp_path)]) == 2
    assert "SLURM_ARRAY_TASK_ID" in capsys.readouterr().err


@pytest.mark.exoplasim
def test_build_reports_the_cache_and_run_writes_a_summary(tmp_path, capsys, smoke_gcm_run):
    assert main(["gcm", "build", str(SMOKE_CONFIG)]) == 0
    assert "cached in" in capsys.readouterr().out
    assert main(["gcm", "run", str(SMOKE_CONFIG), f"run.root={tmp_path}", "gcm.snapshot_interval_days=0"]) == 0
    assert "finished, 5 days" in capsys.readouterr().out
    assert json.loads((tmp_path / "smoke" / "summary.json").read_text())["status"] == "finished"


@pytest.mark.exoplasim
def test_local_sweep_writes_the_manifest(tmp_path, capsys, smoke_gcm_run):
    args = ["gcm", "sweep", str(SMOKE_CONFIG), f"run.root={tmp_path}", "sweep.design=list",
            "sweep.points=[{planet.instellation_W_m2: 1300}]", "gcm.snapshot_interval_days=0", "--local"]
    assert main(args) == 0
    assert "1 finished, 0 failed, 0 missing" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    assert manifest["tasks"][0]["status"] == "finished"
