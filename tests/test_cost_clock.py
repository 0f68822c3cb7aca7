"""The cost clock (astrohpc.cost_clock) and run_simulation's two cost measures, against work whose
CPU time is known: a child process that burns a set CPU time, and a sleep that burns none."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import astrohpc.gcm.runner
from astrohpc.config import Config, from_dict
from astrohpc.cost_clock import cost_clock
from astrohpc.gcm.run import run_simulation
from astrohpc.gcm.runner import RunOutput

BURN_S = 0.4
# the child spins until its own CPU clock has advanced BURN_S: its rusage is at least that
BURN = f"import time\nt = time.process_time()\nwhile time.process_time() - t < {BURN_S}: pass\n"


def _burn_in_child() -> None:
    subprocess.run([sys.executable, "-c", BURN], check=True)


def test_a_child_s_cpu_time_is_counted():
    with cost_clock(cores=2) as cost:
        _burn_in_child()
    assert cost["cpu_s"] >= BURN_S
    # the child's CPU time cannot exceed its wall time on one thread (plus the parent's little)
    assert cost["cpu_s"] <= cost["wall_s"] + 0.05
    assert cost["wall_core_s"] == pytest.approx(2 * cost["wall_s"], rel=1e-15) and cost["cores"] == 2


def test_waiting_costs_wall_core_seconds_but_no_cpu():
    with cost_clock(cores=4) as cost:
        time.sleep(0.3)
    assert cost["wall_s"] >= 0.3 and cost["wall_core_s"] >= 1.2
    assert cost["cpu_s"] < 0.05  # a sleeping process uses no CPU (0.05: interpreter bookkeeping)
    with pytest.raises(ValueError, match="cores"):
        with cost_clock(cores=0):
            pass


class _BurningRunner:
    """A stand-in GCM: one child process burning BURN_S of CPU, then a wait; 2 simulated days."""

    name = "exoplasim"

    def run(self, cfg, run_dir: Path) -> RunOutput:
        _burn_in_child()
        time.sleep(0.2)
        (run_dir / "output").mkdir()
        (run_dir / "output" / "means.nc").write_bytes(b"x")
        return RunOutput(model_version="test", simulated_days=2, files=[("output/means.nc", "means")])


def test_run_simulation_reports_cpu_and_wall_core_seconds(tmp_path, monkeypatch):
    monkeypatch.setattr(astrohpc.gcm.runner, "get_runner", lambda name: _BurningRunner())
    cfg = from_dict(Config, {"gcm": {"ncpus": 3, "days": 5}}, source="test")
    summary = run_simulation(cfg, tmp_path / "run")
    days = summary["simulated_days"]
    # the summary rounds cpu_time_s to 3 decimals and the per-day figure to 4
    assert summary["cpu_seconds_per_simulated_day"] == pytest.approx(summary["cpu_time_s"] / days,
                                                                     abs=5e-4 / days + 5e-5)
    assert summary["cpu_time_s"] >= BURN_S
    # wall × 3 ranks: the sleep and the burn at 3 cores, more than the CPU time of one child
    assert summary["core_seconds_per_simulated_day"] == pytest.approx(3 * summary["wall_time_s"] / days,
                                                                      abs=3 * 5e-4 / days + 5e-5)
    assert summary["core_seconds_per_simulated_day"] > summary["cpu_seconds_per_simulated_day"]
