"""The ablation study: its task list and the configs its overrides make, a tiny real ablation on
the smoke cube (2 components × 2 seeds + the full model, one epoch each) through plan / run /
aggregate with the statistics recomputed from the task results, and an aggregation that refuses
a set with a failed task (or, asked for a partial one, lists the seeds left unpaired)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from astrohpc.analysis.paired import compare_paired
from astrohpc.config import Config, from_dict, load_config
from astrohpc.data.cube import read_meta
from astrohpc.errors import ConfigError
from astrohpc.studies import ablation
from astrohpc.studies.execute import aggregate_study, plan_study, run_local
from astrohpc.studies.tasks import read_result, status, task_dir, write_failure, write_result

REPO = Path(__file__).resolve().parents[2]
COMPONENTS = ["no_correctors", "no_dry_mass_loss"]


def _cfg(cube, root, model=None, **study):
    meta = read_meta(cube)
    model = model or {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1},
                      "physics": {"loss_weights": {"dry_mass": 1.0, "humidity_negative": 1.0}}}
    return from_dict(Config, {
        "run": {"root": str(root), "name": "ablation"}, "model": model,
        "train": {"cube": str(cube), "validation_runs": [meta.run_names[1]], "epochs": 1, "batch_size": 2,
                  "checkpoint_every": 0, "threads": 1, "log_every": 1},
        "study": {"components": COMPONENTS, "seeds": [0, 1], **study}}, source="test")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _float(cell):
    return None if cell == "" else float(cell)


def test_expansion_and_overrides(physics_cube, tmp_path):
    cfg = _cfg(physics_cube, tmp_path)
    tasks = ablation.expand(cfg)
    assert [(t["variant"], t["seed"]) for t in tasks] == [
        ("full", 0), ("full", 1), ("no_correctors", 0), ("no_correctors", 1),
        ("no_dry_mass_loss", 0), ("no_dry_mass_loss", 1)]
    assert all(t["cube"] == str(Path(physics_cube).resolve()) for t in tasks)

    # what applies to this base: its two loss terms, its three correctors, adding attention; not depth
    assert list(ablation.components(cfg)) == [
        "no_dry_mass_loss", "no_humidity_negative_loss", "no_humidity_corrector", "no_dry_mass_corrector",
        "no_energy_corrector", "no_correctors", "attention"]
    with pytest.raises(ConfigError, match="single_scale.*valid here: no_dry_mass_loss, .*attention"):
        ablation.expand(_cfg(physics_cube, tmp_path, components=["single_scale"]))
    deep = _cfg(physics_cube, tmp_path, model={"unet": {"width": 4, "depth": 2, "attention": True},
                                               "physics": {"correctors": ["humidity"]}}, components=[])
    assert list(ablation.components(deep)) == ["no_humidity_corrector", "no_attention", "single_scale"]
    assert len(ablation.expand(deep)) == (1 + 3) * 2  # default: every applicable component, seeds [0, 1]
    transformer = _cfg(physics_cube, tmp_path, components=[], model={
        "task": "climate", "architecture": "transformer", "mode": "datacube",
        "transformer": {"dim": 16, "depth": 1, "heads": 2}, "uncertainty": {"method": "gaussian"}})
    assert list(ablation.components(transformer)) == ["no_humidity_corrector", "concat_fusion", "no_uncertainty"]

    # the overrides change exactly what they name, in the task's own run folder and seed
    by_variant = {(t["variant"], t["seed"]): {**t, "id": i} for i, t in enumerate(tasks)}
    full = ablation.task_config(by_variant[("full", 1)], cfg, tmp_path / "study")
    no_corr = ablation.task_config(by_variant[("no_correctors", 1)], cfg, tmp_path / "study")
    no_mass = ablation.task_config(by_variant[("no_dry_mass_loss", 0)], cfg, tmp_path / "study")
    assert full.model.physics.correctors == ["humidity", "dry_mass", "energy"]
    assert no_corr.model.physics.correctors == []
    assert no_mass.model.physics.loss_weights == {"dry_mass": 0.0, "humidity_negative": 1.0}
    assert no_mass.model.physics.correctors == full.model.physics.correctors
    assert (full.run.seed, no_mass.run.seed) == (1, 0)
    assert Path(no_corr.run.root) == task_dir(tmp_path / "study", 3) / "train"
    assert no_corr.run.name == "no_correctors-seed1"
    attention = ablation.variant_config(cfg, ablation.components(cfg)["attention"], tmp_path, "x", 0)
    assert attention.model.unet.attention and not cfg.model.unet.attention
    single = ablation.variant_config(deep, ablation.components(deep)["single_scale"], tmp_path, "x", 0)
    assert (single.model.unet.depth, single.model.unet.attention, deep.model.unet.depth) == (1, True, 2)

    # settings: seeds at least 2 and distinct, components named once
    with pytest.raises(ConfigError, match="at least 2 distinct seeds"):
        _cfg(physics_cube, tmp_path, seeds=[0])
    with pytest.raises(ConfigError, match="given more than once"):
        _cfg(physics_cube, tmp_path, components=["no_correctors", "no_correctors"])


def test_demo_config_loads():
    cfg = load_config(REPO / "configs" / "study" / "ablation_demo.yaml")
    assert len(cfg.study.seeds) >= ablation.MIN_SEEDS and cfg.train.epochs <= 2
    assert set(cfg.study.components) <= set(ablation.components(cfg))


@pytest.fixture(scope="module")
def finished_study(physics_cube, tmp_path_factory):
    cfg = _cfg(physics_cube, tmp_path_factory.mktemp("ablation"))
    folder = plan_study("ablation", cfg)
    outcomes = list(run_local(folder))
    assert [s for _, s, _ in outcomes] == ["finished"] * 6, outcomes
    return folder, aggregate_study(folder)


def test_tiny_ablation_runs_and_aggregates(finished_study):
    folder, record = finished_study
    assert record["complete"] and record["seeds"] == [0, 1]
    assert "2 seeds" in record["warning"] and record["unpaired_seeds"] == {}
    results = [read_result(folder, i) for i in range(6)]
    for res in results:
        run = task_dir(folder, res["task"]["id"]) / "train" / f"{res['variant']}-seed{res['seed']}"
        assert res["train_summary"]["run_dir"] == str(run) and (run / "export" / "best.pt").is_file()
        # the validation metrics are the best epoch's rows of the trainer's own table
        val = [r for r in _rows(run / "metrics" / "validation.csv") if int(r["epoch"]) == res["best_epoch"]]
        ts = next(r for r in val if r["channel"] == "ts")
        assert res["metrics"]["ts_rmse_K"] == pytest.approx(float(ts["rmse"]), rel=1e-12)
        ratios = [float(r["rmse"]) / float(r["persistence_rmse"]) for r in val
                  if r["channel"] not in res["ratio_channels_excluded"]]
        assert res["metrics"]["rmse_ratio_mean"] == pytest.approx(sum(ratios) / len(ratios), rel=1e-12)
        assert "test_rmse_ratio_mean" not in res["metrics"]  # the smoke cube has no test run
    # no two seeds trained the same weights
    full = {r["seed"]: r for r in results if r["variant"] == "full"}
    assert full[0]["metrics"]["rmse_ratio_mean"] != full[1]["metrics"]["rmse_ratio_mean"]

    rows = _rows(folder / "ablation.csv")
    assert sorted((r["variant"], r["metric"]) for r in rows) == sorted(
        (c, m) for c in COMPONENTS for m in ("rmse_ratio_mean", "ts_rmse_K"))
    for row in rows:
        variant = {r["seed"]: r["metrics"][row["metric"]] for r in results if r["variant"] == row["variant"]}
        base = {s: r["metrics"][row["metric"]] for s, r in full.items()}
        expected = compare_paired([variant[0], variant[1]], [base[0], base[1]])
        assert (int(row["n"]), row["seeds"], row["partial"]) == (2, "0 1", "False")
        assert float(row["mean_full"]) == pytest.approx(expected["mean_b"], rel=1e-12)
        assert float(row["mean_variant"]) == pytest.approx(expected["mean_a"], rel=1e-12)
        assert float(row["diff"]) == pytest.approx(expected["mean_diff"], rel=1e-12)
        for key in ("ci_low", "ci_high", "cohens_d", "p_t", "p_wilcoxon"):
            if expected[key] is None:
                assert row[key] == "", key
            else:
                assert _float(row[key]) == pytest.approx(expected[key], rel=1e-9), key
        assert row["significant"] == str(float(row["p_holm"]) <= 0.05) and row["resolution"]
    # Holm over ONE family of all 4 variant × metric tests, by hand (an undefined t-test enters as 1)
    p = [1.0 if r["p_t"] == "" else float(r["p_t"]) for r in rows]
    order = sorted(range(len(p)), key=lambda i: p[i])
    running, by_hand = 0.0, [0.0] * len(p)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        by_hand[i] = running
    assert [float(r["p_holm"]) for r in rows] == pytest.approx(by_hand, rel=1e-12)
    # 2 pairs, 4 tests: Wilcoxon's smallest p is 2/2^2 = 0.5, 1 after Holm
    power = record["resolving_power"]
    assert (power["pairs"], power["tests"], power["wilcoxon_min_p"], power["wilcoxon_can_reject"]) == (2, 4, 0.5, False)
    saved = json.loads((folder / "ablation.json").read_text())
    assert len(saved["rows"]) == len(rows) and saved["per_seed"]["ts_rmse_K"]["full"].keys() == {"0", "1"}


def _area_rmse(pred, truth, area):
    """Per-channel sqrt(Σ w e² / Σ w) over samples and grid, NaN left out: numpy, by hand."""
    err = pred.astype(np.float64) - truth.astype(np.float64)
    w = np.where(np.isfinite(err), np.broadcast_to(area, err.shape), 0.0)
    e2 = np.where(np.isfinite(err), err, 0.0) ** 2
    return np.sqrt((w * e2).sum(axis=(0, 2, 3)) / w.sum(axis=(0, 2, 3)))


def test_test_run_scores_against_a_hand_computed_rmse(finished_study, physics_cube):
    """score_runs (the test-run scoring) against RMSEs computed here with numpy from the cube's states
    and the model's one-step forecasts (not through astrohpc.train.validate)."""
    import torch

    from astrohpc.data.cube import LazyCube
    from astrohpc.models.objective import batch_planet
    from astrohpc.train.export import load_exported

    folder, _ = finished_study
    export = read_result(folder, 0)["train_summary"]["exports"]["best"]
    meta = read_meta(physics_cube)
    run = 1
    rows = ablation.score_runs(export, [meta.run_names[run]], unroll_steps=1)

    model, info = load_exported(export)
    lazy = LazyCube(physics_cube).prepare()
    try:
        states = lazy.read(run, 0, int(meta.time_count[run]))[:, list(model.plan.cube_channels)].astype(np.float32)
    finally:
        lazy.close()
    from astrohpc.data.dataset import WindowDataset  # only for the model's inputs (params, static, planet)

    data = WindowDataset(physics_cube, 1, 1, runs=[run], variables=list(model.plan.variables),
                         param_norm=info["param_norm"], static=bool(model.plan.static))
    try:
        batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    finally:
        data.close()
    x0, x1 = torch.from_numpy(states[:-1]), torch.from_numpy(states[1:])
    with torch.no_grad():
        forecast = model(x0, x1[:, model.forcing], batch["params"], batch.get("static"), batch_planet(batch)).numpy()
    area = model.grid.area_weight.double().numpy()
    expected_model = _area_rmse(forecast, states[1:], area)
    expected_persistence = _area_rmse(states[:-1], states[1:], area)
    assert [r["channel"] for r in rows] == list(model.plan.describe()["channel_names"])
    for c, row in enumerate(rows):
        # float32 states and sums of a few thousand cells: agreement to ~1e-6 relative
        assert row["persistence_rmse"] == pytest.approx(expected_persistence[c], rel=1e-5, nan_ok=True), row["channel"]
        assert row["rmse"] == pytest.approx(expected_model[c], rel=1e-5, nan_ok=True), row["channel"]
    # and persistence is not zero: the check would pass trivially on a frozen cube
    assert np.nanmax(expected_persistence) > 0


def _fake_result(variant, seed, value):
    return {"variant": variant, "seed": seed, "overrides": [], "metrics": {"rmse_ratio_mean": value}}


def test_failed_task_refuses_and_partial_lists_unpaired_seeds(physics_cube, tmp_path):
    folder = plan_study("ablation", _cfg(physics_cube, tmp_path, seeds=[0, 1, 2]))
    tasks = json.loads((folder / "study.json").read_text())["tasks"]
    for t in tasks:
        if (t["variant"], t["seed"]) == ("full", 2):
            write_failure(folder, t["id"], RuntimeError("node lost"))
        else:
            write_result(folder, t["id"], {"task": t, **_fake_result(t["variant"], t["seed"],
                                                                     1.0 + 0.1 * t["seed"] + 0.01 * t["id"])})
    failed_id = next(t["id"] for t in tasks if (t["variant"], t["seed"]) == ("full", 2))
    record = aggregate_study(folder)
    assert record["complete"] is False and record["outputs"] is None
    assert list(record["failed"]) == [failed_id] and "node lost" in record["failed"][failed_id]
    assert not (folder / "ablation.csv").exists()

    partial = aggregate_study(folder, allow_partial=True)
    assert partial["partial"] and "3 seeds" in partial["warning"] and "0.25" in partial["warning"]
    assert partial["unpaired_seeds"] == {f"{c}/rmse_ratio_mean": [2] for c in COMPONENTS}
    rows = _rows(folder / "ablation.csv")
    assert {(r["variant"], r["n"], r["seeds"], r["unpaired_seeds"], r["partial"]) for r in rows} == {
        (c, "2", "0 1", "2", "True") for c in COMPONENTS}
    assert status(folder)["failed"] == {failed_id: "RuntimeError: node lost"}
    assert all(math.isfinite(float(r["diff"])) for r in rows)


def test_test_run_scores_of_a_climate_surrogate(physics_cube, tmp_path):
    """The climate branch of score_runs against time means, climatology and RMSEs computed here with numpy."""
    from astrohpc.train.trainer import train

    names = read_meta(physics_cube).run_names
    cfg = from_dict(Config, {"run": {"root": str(tmp_path), "name": "climate"},
                             "model": {"task": "climate", "architecture": "unet", "unet": {"width": 4, "depth": 1}},
                             "train": {"cube": str(physics_cube), "validation_runs": [names[1]], "epochs": 1,
                                       "batch_size": 1, "checkpoint_every": 0, "threads": 1}}, source="test")
    export = train(cfg)["exports"]["best"]
    rows = ablation.score_runs(export, [names[1]], unroll_steps=1)
    # reference by hand: the run's time mean from the cube, the climatology as the mean of the training
    # runs' time means (numpy), the model's prediction, and numpy RMSEs
    import torch

    from astrohpc.data.cube import LazyCube
    from astrohpc.data.runs import RunDataset
    from astrohpc.train.export import load_exported

    model, info = load_exported(export)
    meta = read_meta(physics_cube)
    channels = list(model.plan.cube_channels)
    spinup = info["config"]["model"]["spinup_steps"]
    lazy = LazyCube(physics_cube).prepare()
    try:
        means = {r: lazy.read(r, spinup, int(meta.time_count[r]) - spinup)[:, channels].astype(np.float64).mean(axis=0)
                 for r in range(len(names))}
    finally:
        lazy.close()
    train_ids = [names.index(n) for n in info["run_split"]["train"]]
    climatology = np.nanmean([means[r] for r in train_ids], axis=0)
    data = RunDataset(physics_cube, spinup, runs=[1], variables=list(model.plan.variables),
                      param_norm=info["param_norm"], static=bool(model.plan.static))
    try:
        item = torch.utils.data.default_collate([data[0]])
    finally:
        data.close()
    with torch.no_grad():
        predicted = model.physical(model(item["params"], item.get("spinup"), item.get("static")))["datacube"]
    area = model.grid.area_weight.double().numpy()
    truth = means[1][None]
    expected_model = _area_rmse(predicted.double().numpy(), truth, area)
    expected_clim = _area_rmse(climatology[None], truth, area)
    assert [r["channel"] for r in rows] == list(model.plan.describe()["channel_names"])
    for c, row in enumerate(rows):
        # the study keeps time means in float32: a field of size F carries ~eps32·F of rounding (0.01 Pa of ps)
        tol = {"rel": 1e-5, "abs": float(np.finfo(np.float32).eps * np.nanmax(np.abs(truth[:, c]))), "nan_ok": True}
        assert row["climatology_rmse"] == pytest.approx(expected_clim[c], **tol), row["channel"]
        assert row["rmse"] == pytest.approx(expected_model[c], **tol), row["channel"]
    assert np.nanmax(expected_clim) > 0
    assert set(ablation.channel_metrics(rows, prefix="test_")[0]) == {"test_rmse_ratio_mean", "test_ts_rmse_K"}


def test_report_states_the_resolving_power(finished_study, tmp_path):
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_sections import add_study_section

    folder, _ = finished_study
    report = MarkdownReport(tmp_path / "report", "ablation")
    add_study_section(report, folder)
    text = "".join(report.parts)
    # 2 pairs, 4 tests: 2/2^2 = 0.5, 4 x 0.5 capped at 1
    assert "With 2 pairs and 4 tests, the exact Wilcoxon's smallest two-sided p is 0.5, 1 after Holm" in text
    assert "cannot reach 0.05 whatever the effect" in text and "over one family of all 4" in text
    assert "| resolution |" in text
