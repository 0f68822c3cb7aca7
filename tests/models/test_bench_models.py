"""The surrogate cost benchmark: its arithmetic, its timing harness on a tiny model, and
tools/bench_models.py end to end (--quick, no GCM) on the cube of the cached smoke runs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from astrohpc.errors import GCMError
from astrohpc.models import bench

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "bench_models.py"


def test_core_seconds_per_day_uses_the_output_interval():
    # 4 steps of 6 h are one day: 2 core-seconds for them is 2 core-seconds per simulated day
    assert bench.core_seconds_per_day(2.0, 4, 6 * 3600.0) == pytest.approx(2.0)
    assert bench.core_seconds_per_day(3.0, 3, 86400.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bench.core_seconds_per_day(1.0, 0, 86400.0)


def test_speedups_pair_the_extremes():
    gcm = {"median": 1.0, "min": 0.8, "max": 1.2, "n": 3}
    surrogate = {"median": 0.01, "min": 0.008, "max": 0.02, "n": 5}
    r = bench.ratio_spread(gcm, surrogate)
    assert r == pytest.approx({"median": 100.0, "min": 40.0, "max": 150.0})
    assert bench.ratio_spread(gcm, {**surrogate, "min": 0.0}) is None
    # a 30-day run predicted at 0.5 core-s, reading 1 GCM day (1 core-s): 30 / 1.5
    c = bench.climate_speedup({"median": 1.0, "min": 1.0, "max": 1.0, "n": 1}, 30.0, 1.0,
                              {"median": 0.5, "min": 0.5, "max": 0.5, "n": 1})
    assert c["median"] == pytest.approx(20.0)
    assert bench.scale_spread(surrogate, 2.0) == {"median": 0.02, "min": 0.016, "max": 0.04, "n": 5}
    entry = {"task": "emulator", "cost": {"batch1_threads1": surrogate}}
    assert bench.speedups(entry, gcm)["batch1_threads1"]["median"] == pytest.approx(100.0)


def test_calls_and_batches():
    assert bench.calls_for(0.1, 1.0, 1000) == 10
    assert bench.calls_for(5.0, 1.0, 1000) == 1
    assert bench.calls_for(1e-9, 1.0, 50) == 50
    items = [{"x": torch.tensor([float(i)]), "planet": {"g": torch.tensor(9.8)}} for i in range(3)]
    batch = bench.cyclic_batch(items, 5, torch.utils.data.default_collate)
    assert batch["x"].flatten().tolist() == [0.0, 1.0, 2.0, 0.0, 1.0]
    two = bench.take(batch, 2)
    assert two["x"].shape == (2, 1) and two["planet"]["g"].shape == (2,)


def test_measure_a_tiny_model():
    torch.manual_seed(0)
    model = nn.Linear(3, 5)
    batches = {b: {"x": torch.randn(b, 3)} for b in (1, bench.TRAIN_BATCH, *bench.INFER_BATCHES)}
    workload = bench.Workload(loss=lambda b: model(b["x"]).square().mean(), infer=lambda b: model(b["x"]),
                              forward=lambda b: ((b["x"],), {}))
    before = model.weight.detach().clone()
    result = bench.measure(model, workload, batches, repeats=2, target_s=0.01, all_threads=2, max_calls=20)
    assert result["parameters"] == 20 and result["trainable_parameters"] == 20
    assert result["forward_flops_per_sample"] == 2 * 3 * 5
    assert set(result["train"]) == {"batch4_threads1", "batch4_threads2"}
    assert set(result["inference"]) == {f"batch{b}_threads{t}" for b in (1, 32) for t in (1, 2)}
    for entry in [*result["train"].values(), *result["inference"].values()]:
        assert entry["samples_s"]["n"] == 2 and len(entry["wall_s"]) == 2
        assert entry["samples_s"]["min"] <= entry["samples_s"]["median"] <= entry["samples_s"]["max"]
        assert entry["samples_s"]["median"] > 0 and entry["core_s_per_sample"]["median"] >= 0
        assert all(1 <= c <= 20 for c in entry["calls"])
    for name, entry in result["inference"].items():  # wall × the case's threads, per sample, by hand
        threads, batch = int(name.split("threads")[1]), entry["batch"]
        by_hand = sorted(w * threads / (c * batch) for w, c in zip(entry["wall_s"], entry["calls"]))
        assert entry["wall_core_s_per_sample"]["min"] == pytest.approx(by_hand[0], rel=1e-12)
        assert entry["wall_core_s_per_sample"]["max"] == pytest.approx(by_hand[-1], rel=1e-12)
    assert not torch.equal(before, model.weight)  # the AdamW steps ran
    cost = bench.surrogate_cost(result["inference"], 0.25)  # a 6-hour step: 4 steps a day
    assert cost["batch1_threads1"]["median"] == pytest.approx(
        4 * result["inference"]["batch1_threads1"]["core_s_per_sample"]["median"])
    wall = bench.surrogate_cost(result["inference"], 0.25, measure="wall_core_s_per_sample")
    assert wall["batch1_threads2"]["median"] == pytest.approx(
        4 * result["inference"]["batch1_threads2"]["wall_core_s_per_sample"]["median"])
    assert bench.peak_rss_mib() > 10


def _tool():
    spec = importlib.util.spec_from_file_location("bench_models_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unbuilt_gcm_is_a_skip_that_says_what_to_run(monkeypatch):
    import astrohpc.gcm.runner

    class Unbuilt:
        def check_ready(self, gcm):
            raise GCMError("ExoPlaSim is not built")

    monkeypatch.setattr(astrohpc.gcm.runner, "get_runner", lambda name: Unbuilt())
    result = _tool().gcm_cost(5, 1)
    assert "astrohpc gcm build configs/gcm/smoke.yaml" in result["skipped"]


def test_the_tool_writes_every_figure(physics_cube, tmp_path):
    configs = [REPO / "configs" / "model" / f"{name}.yaml" for name in ("emulator_transformer", "climate_transformer")]
    proc = subprocess.run([sys.executable, str(TOOL), "--cube", str(physics_cube), "--configs", *map(str, configs),
                           "--repeats", "1", "--quick", "--no-gcm", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [path] = tmp_path.glob("models-*.json")
    record = json.loads(path.read_text())
    assert record["gcm"] == {"skipped": "--no-gcm"} and record["speedup"] == {}
    assert record["provenance"]["git"]["commit"] and "torch" in record["provenance"]["packages"]
    assert record["torch_threads"]["default"] >= 1 and record["settings"]["quick"]
    for name in ("emulator_transformer", "climate_transformer"):
        m = record["models"][name]
        assert m["parameters"] > 0 and m["forward_flops_per_sample"] > 0
        assert m["peak_rss_MiB"] >= m["peak_rss_before_model_MiB"] > 0
        for group in ("train", "inference"):
            for entry in m[group].values():
                assert entry["samples_s"]["median"] > 0 and entry["core_s_per_sample"]["median"] > 0
        assert {f"batch{b}_threads1" for b in (1, 32)} <= set(m["cost"])
        assert all(c["median"] > 0 for c in m["cost"].values())
        assert record["headline"][name]["parameters"] == m["parameters"]
    assert record["models"]["emulator_transformer"]["interval_days"] == pytest.approx(1.0)
    assert record["models"]["climate_transformer"]["batches"]["spectrum_targets"].startswith("zeros")
