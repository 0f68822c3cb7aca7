"""The demo-config smoke: `make demo`'s script, every stage, on configs/demo/smoke.sh (3 runs of
4 days, a few training steps, every study as Slurm arrays), into a temporary folder. About two
minutes on 2 cores; what it checks is that the stages chain, not what the numbers are."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from astrohpc.studies.tasks import status

REPO = Path(__file__).resolve().parents[1]
STUDIES = ("parity", "climate", "rollout", "ablation", "calibration", "spinup")
# the study folder of each kind (the GP's climate study sits beside the climate transformer's training run)
FOLDERS = {"climate": "climate_gp"}
SECTIONS = ("## GCM parity on held-out runs", "### Cost per simulated planet-day", "## Long rollouts", "## Ablation",
            "## Calibration of the predictive uncertainty", "## Climate surrogate (Gaussian process), leave-one-out",
            "## Spin-up acceleration", "## Surrogate training: `train`",
            "## Benchmarks", "## Tables (CSV)")

pytestmark = [pytest.mark.slurm, pytest.mark.exoplasim]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("demo-smoke")
    env = {**os.environ, "ASTROHPC_DEMO_PROFILE": str(REPO / "configs" / "demo" / "smoke.sh"),
           "ASTROHPC_DEMO_DIR": str(out)}
    proc = subprocess.run(["bash", str(REPO / "tools" / "demo.sh")], cwd=REPO, env=env, capture_output=True,
                          text=True, errors="replace", timeout=900)
    assert proc.returncode == 0, (f"tools/demo.sh failed ({proc.returncode}):\n"
                                  f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out, proc.stdout


def test_every_stage_ran_in_order_with_its_elapsed_time(demo):
    _, stdout = demo
    stages = [int(n) for n in re.findall(r"^=== \[demo \+\d+s\] (\d+)/14 ", stdout, re.MULTILINE)]
    assert stages == list(range(1, 15))
    assert re.search(r"^=== \[demo \+\d+s\] done in \d+ s", stdout, re.MULTILINE)


def test_the_training_job_was_preempted_requeued_and_resumed(demo):
    out, _ = demo
    summary = (out / "summary.txt").read_text()
    assert re.search(r"train: job \d+: USR1 at step \d+, requeued 1x, resumed=True, finished at step 14 on 2 ranks",
                     summary), summary
    metrics = json.loads((out / "train" / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["distributed"]["world_size"] == 2
    sweep = json.loads((out / "demo" / "manifest.json").read_text())
    assert sweep["counts"] == {"finished": 3, "failed": 0, "missing": 0}


@pytest.mark.parametrize("kind", STUDIES)
def test_every_study_finished_all_its_tasks_and_aggregated(demo, kind):
    out, _ = demo
    folder = out / FOLDERS.get(kind, kind)
    state = status(folder)
    assert state["kind"] == kind and state["tasks"] >= 1
    assert not state["failed"] and not state["missing"], state
    aggregate = json.loads((folder / "aggregate.json").read_text())
    assert aggregate["complete"] and not aggregate["partial"]


def test_report_has_every_section_and_its_figures_exist(demo):
    out, _ = demo
    report = (out / "REPORT.md").read_text()
    missing = [s for s in SECTIONS if s not in report]
    assert not missing, missing
    figures = re.findall(r"!\[[^\]]+\]\(([^)]+\.png)\)", report)
    assert len(figures) >= 10
    for figure in figures:
        data = (out / figure).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, figure


def test_report_parity_table_matches_the_study_result(demo):
    out, _ = demo
    report = (out / "REPORT.md").read_text()
    ts = next(r for r in json.loads((out / "parity" / "headline.json").read_text())["rows"] if r["channel"] == "ts")
    section = report.split("## GCM parity on held-out runs", 1)[1].split("\n## ", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| ts | K |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert float(cells[2]) == pytest.approx(ts["surrogate daily"], rel=1e-3)
    best = ts["best baseline (daily)"]
    assert best in cells and f"{ts[best + ' daily']:.4g}" in cells


def test_report_cost_table_has_both_surrogates_measured_beside_the_gcm(demo):
    out, _ = demo
    report = (out / "REPORT.md").read_text()
    summary = json.loads((out / "parity" / "summary.json").read_text())
    section = report.split("### Cost per simulated planet-day", 1)[1].split("\n## ", 1)[0]
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                             for line in section.splitlines() if line.startswith("| "))}
    batch = summary["climate_surrogate"]["batch"]
    # columns: CPU time (process + children), then wall time × cores; a speed-up within one column
    cpu, wall = rows[f"emulator speed-up [×, same measure], batch {batch}"]
    assert float(cpu) == pytest.approx(summary["speedup_cpu_batched"], rel=1e-3)
    assert float(wall) == pytest.approx(summary["speedup_wall_core_batched"], rel=1e-3)
    climate = summary["climate_surrogate"]
    cpu, _ = rows["climate surrogate speed-up [×, same measure], batch 1"]
    assert float(cpu) == pytest.approx(climate["speedup_cpu_single"], rel=1e-3)
    # the climate surrogate's speed-up is the GCM's cost of the run over the surrogate's, both measured here
    for m in ("cpu", "wall_core"):
        gcm = summary[f"gcm_{m}_s_per_day"]
        assert climate[f"speedup_{m}_single"] == pytest.approx(
            climate["days"] * gcm / (climate[f"{m}_s_per_run_single"] + climate["spinup_days"] * gcm), rel=1e-9)


def test_predict_used_both_exports_and_flagged_only_the_outside_planet(demo):
    """The demo's `astrohpc predict` calls (configs/predict/): files xarray opens, with units; the
    planet moved to 1600 W m-2 is flagged, the one inside the design is not; the emulator's
    trajectory has the test run's 5 states and starts from the cube's own first state."""
    import numpy as np
    import xarray as xr

    from astrohpc.data.cube import LazyCube, read_meta

    out, stdout = demo
    folder = out / "predict"
    with xr.open_dataset(folder / "climate.nc") as inside, xr.open_dataset(folder / "climate_outside.nc") as far:
        assert inside["ood_flag"].values.tolist() == [0] and far["ood_flag"].values.tolist() == [1]
        assert inside["ts"].attrs["units"] == "K" and float(inside["ts_std"].min()) > 0
        assert inside["instellation_W_m2"].values.tolist() == [1250.0]
    cube = out / "demo" / "datacube.h5"
    meta = read_meta(cube)
    run = meta.run_names.index("task-0002")
    reader = LazyCube(cube).prepare()
    try:
        first = reader.read(run, 0, 1)[0, meta.channel("ts")]
    finally:
        reader.close()
    with xr.open_dataset(folder / "emulator.nc") as em:
        assert em.sizes["time"] == 5 and em["ta"].dims == ("time", "lev", "lat", "lon")
        np.testing.assert_array_equal(em["ts"].values[0], first)
    assert "predict: climate.nc" in stdout
