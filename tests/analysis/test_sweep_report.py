"""The sweep report on a real 2-task ExoPlaSim sweep: numbers checked against the NetCDF files."""

from __future__ import annotations

from pathlib import Path

import netCDF4
import numpy as np
import pytest

from astrohpc.analysis.sweep_report import build_sweep_report
from astrohpc.config import load_config
from astrohpc.errors import DataError
from astrohpc.gcm.manifest import aggregate
from astrohpc.gcm.sweep import plan_sweep, run_local, write_plan

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "gcm" / "smoke.yaml"


def gauss_global_mean(path: Path, variable: str = "ts") -> float:
    """Global mean of the last time step, weighted by Gauss-Legendre weights (independent of astrohpc)."""
    with netCDF4.Dataset(path) as ds:
        lat = ds["lat"][:]
        field = np.asarray(ds[variable][-1], dtype=np.float64)  # [lat, lon]
    nodes, weights = np.polynomial.legendre.leggauss(len(lat))  # nodes are sin(latitude), south -> north
    assert np.allclose(np.sort(np.degrees(np.arcsin(nodes))), np.sort(lat), atol=1e-3)
    weights = weights[np.argsort(np.argsort(lat))]  # align to the file's latitude order
    return float(np.sum(weights * field.mean(axis=1)) / weights.sum())


@pytest.mark.exoplasim
def test_report_of_a_real_sweep(tmp_path, smoke_gcm_run):
    cfg = load_config(SMOKE, [f"run.root={tmp_path}", "run.name=rep", "sweep.design=list", "gcm.days=2",
                              "gcm.means_interval_days=2",
                              "sweep.points=[{planet.instellation_W_m2: 1500}, {planet.instellation_W_m2: -1}]"])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    list(run_local(plan.sweep_dir, workers=2))
    manifest = aggregate(plan.sweep_dir)
    assert manifest["counts"] == {"finished": 1, "failed": 1, "missing": 0}

    report = build_sweep_report(plan.sweep_dir, tmp_path / "report").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")]
    good, bad = rows
    assert "| finished |" in good and "failed: " in bad and "instellation_W_m2 must be >= 0" in bad
    assert "| cpu_s_per_day (process + children) | wall_x_ranks_core_s_per_day |" in report  # both measures, named
    expected = gauss_global_mean(plan.sweep_dir / "task-0000" / "output" / "exoplasim_snapshot.nc")
    reported = float(good.rstrip(" |").rsplit("|", 1)[-1])
    assert 150 < expected < 350
    assert reported == pytest.approx(expected, abs=0.05)  # the table shows 4 significant digits
    for png in ("global_ts.png", "ts_map.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000


def test_report_needs_a_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest.json not found"):
        build_sweep_report(tmp_path, tmp_path / "out")
