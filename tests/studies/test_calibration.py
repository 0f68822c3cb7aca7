"""The calibration study: its task list and the error for a method the model cannot use; the
σ-scale fitted on the validation runs only (changing the test data leaves it alone); a tiny real
calibration on a 3-run smoke cube (train / validation / test: one real ExoPlaSim run each; MC
dropout and a 2-member ensemble, one epoch each) whose reported scores equal the metrics computed
directly on its saved predictions; and its report section with the reliability diagram."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from gcm_smoke_fixture import cached_smoke_run

from astrohpc.analysis import metrics
from astrohpc.config import Config, from_dict, load_config, to_dict
from astrohpc.data.cube import read_meta
from astrohpc.errors import ConfigError
from astrohpc.studies import calibration
from astrohpc.studies.calibration import POOLED, Forecast
from astrohpc.studies.execute import aggregate_study, plan_study, run_local
from astrohpc.studies.tasks import read_result, task_dir
from astrohpc.train.export import read_export

REPO = Path(__file__).resolve().parents[2]
# A third real run between the other two: the tiny study's test run.
MIDDLE = ("planet.instellation_W_m2=1330",)
EMULATOR = {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1},
            "uncertainty": {"members": 2, "samples": 4}}
TRANSFORMER = {"task": "climate", "architecture": "transformer", "mode": "datacube",
               "transformer": {"dim": 16, "depth": 1, "heads": 2}}


def _cfg(cube, root, model=None, test=True, batch_size=2, **study):
    names = read_meta(cube).run_names
    train = {"cube": str(cube), "validation_runs": [names[1]], "epochs": 1, "batch_size": batch_size,
             "checkpoint_every": 0, "threads": 1, "log_every": 1}
    if test and len(names) > 2:
        train["test_runs"] = [names[2]]
    return from_dict(Config, {"run": {"root": str(root), "name": "calibration"}, "model": model or EMULATOR,
                              "train": train, "study": study}, source="test")


def test_expansion_and_invalid_methods(physics_cube, tmp_path):
    names = read_meta(physics_cube).run_names
    cfg = _cfg(physics_cube, tmp_path)
    tasks = calibration.expand(cfg)
    assert [(t["method"], t["seeds"]) for t in tasks] == [("mc_dropout", [0]), ("ensemble", [0, 1])]
    assert all(t["cube"] == str(Path(physics_cube).resolve()) and t["validation_runs"] == [names[1]]
               and t["test_runs"] == [] for t in tasks)
    assert "model.unet.dropout set to 0.1" in tasks[0]["note"] and tasks[1]["note"] is None

    # a member's config: the method, the dropout MC dropout needs, its own folder and seed, the split pinned
    mc = calibration.task_config({**tasks[0], "id": 0}, cfg, tmp_path / "study", 0)
    member = calibration.task_config({**tasks[1], "id": 1}, cfg, tmp_path / "study", 1)
    assert (mc.model.uncertainty.method, mc.model.unet.dropout) == ("mc_dropout", 0.1)
    assert (member.model.uncertainty.method, member.model.unet.dropout, member.run.seed) == ("ensemble", 0.0, 1)
    assert Path(member.run.root) == task_dir(tmp_path / "study", 1) / "train" and member.run.name == "ensemble-seed1"
    assert member.train.validation_runs == [names[1]] and member.train.cube == str(Path(physics_cube).resolve())
    with_dropout = calibration.expand(_cfg(physics_cube, tmp_path, model={**EMULATOR, "unet": {"width": 4,
                                                                                                "dropout": 0.2}}))
    assert with_dropout[0]["changes"] == {"model": {"uncertainty": {"method": "mc_dropout"}}}
    assert with_dropout[0]["note"] is None

    # the climate transformer can also train a Gaussian head; its dropout goes into the transformer
    climate = calibration.expand(_cfg(physics_cube, tmp_path, model=TRANSFORMER))
    assert [t["method"] for t in climate] == ["gaussian", "mc_dropout", "ensemble"]
    assert climate[1]["changes"]["model"]["transformer"] == {"dropout": 0.1}
    gaussian = calibration.task_config({**climate[0], "id": 0}, _cfg(physics_cube, tmp_path, model=TRANSFORMER),
                                       tmp_path, 0)
    assert gaussian.model.uncertainty.method == "gaussian"

    for model, methods in ((EMULATOR, ["gaussian"]), ({**TRANSFORMER, "architecture": "unet"}, ["gaussian"]),
                           (EMULATOR, ["ensemble", "bogus"])):
        with pytest.raises(ConfigError, match=r"not usable .* valid here: mc_dropout, ensemble \("):
            calibration.expand(_cfg(physics_cube, tmp_path, model=model, methods=methods))
    with pytest.raises(ConfigError, match="given more than once"):
        _cfg(physics_cube, tmp_path, methods=["ensemble", "ensemble"])
    with pytest.raises(ConfigError, match="members must be >= 2"):
        calibration.expand(_cfg(physics_cube, tmp_path, model={**EMULATOR, "uncertainty": {"members": 1}}))
    no_validation = from_dict(Config, {"run": {"root": str(tmp_path)}, "model": EMULATOR,
                                       "train": {"cube": str(physics_cube), "validation_fraction": 0.0}}, source="t")
    with pytest.raises(ConfigError, match="no validation run"):
        calibration.expand(no_validation)


def _forecast(rng, n, spread, truth_sigma, shift=0.0):
    """Forecasts of 3 channels whose σ is `spread` × the truth's: obs = mean + truth_sigma·ε + shift."""
    mean = rng.normal(size=(n, 3, 4, 8)) * np.array([1.0, 100.0, 5.0])[:, None, None] + \
        np.array([280.0, 1e5, 250.0])[:, None, None]
    sigma = np.broadcast_to(np.array([1.0, 50.0, 2.0])[:, None, None] * truth_sigma, mean.shape)
    obs = mean + sigma * rng.normal(size=mean.shape) + shift
    return Forecast(mean, sigma * spread, obs)


def test_sigma_scale_is_fitted_on_validation_runs_only():
    rng = np.random.default_rng(0)
    area = np.cos(np.linspace(-1.3, 1.3, 4))[:, None] * np.ones(8)
    area = area / area.sum()
    names, units = ["ts", "ps", "ta@0.5668"], ["K", "Pa", "K"]
    common = dict(area=area, names=names, units=units, norm_mean=np.array([280.0, 1e5, 250.0]),
                  norm_std=np.array([10.0, 1e3, 20.0]), clim_mean=np.array([280.0, 1e5, 250.0])[:, None, None]
                  * np.ones((3, 4, 8)), clim_sigma=np.array([10.0, 1e3, 20.0])[:, None, None] * np.ones((3, 4, 8)))
    validation = _forecast(rng, 60, spread=0.5, truth_sigma=1.0)   # over-confident: σ half the error
    test = _forecast(rng, 60, spread=0.5, truth_sigma=1.0)
    out = calibration.calibrate(validation, test, **common)
    expected = [metrics.fit_sigma_scale(validation.mean[:, c], validation.sigma[:, c], validation.obs[:, c],
                                        weights=area) for c in range(3)]
    np.testing.assert_array_equal(out["sigma_scale"], expected)
    assert np.all(np.abs(out["sigma_scale"] - 2.0) < 0.2) and out["reported_on"] == "test"

    # other test data, far worse: the same factors, other scores
    worse = Forecast(test.mean, test.sigma, test.obs + 3.0 * test.sigma)
    changed = calibration.calibrate(validation, worse, **common)
    np.testing.assert_array_equal(changed["sigma_scale"], out["sigma_scale"])
    assert changed["rows"][0]["crps"] > out["rows"][0]["crps"]
    # other validation data: other factors
    wider = Forecast(validation.mean, validation.sigma * 2.0, validation.obs)
    assert not np.allclose(calibration.calibrate(wider, test, **common)["sigma_scale"], out["sigma_scale"])

    # rows: ts, ps, ta (SELECTED order; tas and rlut absent), then pooled; before and after
    assert [(r["channel"], r["scaling"]) for r in out["rows"]] == [
        (c, s) for c in ("ts", "ps", "ta@0.5668", POOLED) for s in ("before", "after")]
    rows = {(r["channel"], r["scaling"]): r for r in out["rows"]}
    before, after = rows[("ts", "before")], rows[("ts", "after")]
    assert before["coverage95"] < 0.8 and abs(after["coverage95"] - 0.95) < 0.03
    assert after["ece"] < before["ece"] and after["crps"] < before["crps"]
    assert rows[(POOLED, "after")]["sharpness"] > rows[(POOLED, "before")]["sharpness"]
    assert 0 < after["crpss"] < 1  # the forecasts know far more than the climatology's ±10 K

    # without test runs the validation runs are scored, and the result says so
    assert calibration.calibrate(validation, None, **common)["reported_on"] == "validation"
    assert calibration.select_channels(["ps", "ta@0.4368", "ts", "ta@0.5668", "rlut"]) == [2, 0, 4, 3]


@pytest.fixture(scope="module")
def three_run_cube(smoke_gcm_runs, tmp_path_factory):
    """The two smoke runs and a third real run at 1330 W m-2: train on 1361, validate on 1300, test on 1330."""
    from astrohpc.data.convert import convert_run_dirs
    from astrohpc.data.stats import run_stats

    settings = load_config(REPO / "configs" / "data" / "exoplasim.yaml").data
    runs = [*smoke_gcm_runs, cached_smoke_run(MIDDLE)]
    path = convert_run_dirs(runs, tmp_path_factory.mktemp("three") / "three.h5", settings=settings)
    run_stats(path)
    return path


@pytest.fixture(scope="module")
def finished_study(three_run_cube, tmp_path_factory):
    cfg = _cfg(three_run_cube, tmp_path_factory.mktemp("calibration"))
    folder = plan_study("calibration", cfg)
    outcomes = list(run_local(folder))
    assert [s for _, s, _ in outcomes] == ["finished"] * 2, outcomes
    return folder, aggregate_study(folder)


def _direct(mean, sigma, obs, area, clim_mean, clim_sigma):
    """The scores of one forecast straight from astrohpc.analysis.metrics."""
    curve = metrics.ece_regression(mean, sigma, obs, weights=area)
    crps = metrics.crps_gaussian(mean, sigma, obs, weights=area)
    return {"coverage68": metrics.coverage(mean, sigma, obs, 0.68, weights=area),
            "coverage95": metrics.coverage(mean, sigma, obs, 0.95, weights=area), "crps": crps,
            "crpss": metrics.crps_skill_score(crps, metrics.crps_gaussian(clim_mean, clim_sigma, obs, weights=area)),
            "ece": curve.ece, "sharpness": metrics.sharpness(sigma, weights=area, statistic="mean"),
            "reliability": curve.observed.tolist()}


def test_tiny_calibration_matches_metrics_on_saved_predictions(finished_study, three_run_cube):
    folder, record = finished_study
    names = read_meta(three_run_cube).run_names
    assert record["complete"] and "warning" not in record
    assert record["targets"]["coverage95"] == [0.94, 0.96] and record["targets"]["published_ece"] == 0.034
    assert set(record["verdicts"]) == {"mc_dropout", "ensemble"}
    results = {r["method"]: r for r in (read_result(folder, i) for i in range(2))}
    ensemble, mc = results["ensemble"], results["mc_dropout"]
    assert (ensemble["members"], ensemble["seeds"], mc["members"], mc["samples"]) == (2, [0, 1], 1, 4)
    assert "dropout set to 0.1" in mc["notes"][0]
    digests = set()
    for res in results.values():
        assert res["split"] == {"train": [names[0]], "validation": [names[1]], "test": [names[2]]}
        assert (res["fitted_on"], res["reported_on"]) == ("validation", "test")
        assert "rsdt" in res["excluded_channels"] and "rsdt" not in res["channels"]  # a forcing, not forecast
        for summary in res["train_summaries"]:
            assert Path(summary["run_dir"]).parent == task_dir(folder, res["task"]["id"]) / "train"
            state = read_export(summary["exports"]["best"])["model_state"]
            digests.add(round(sum(float(v.double().abs().sum()) for v in state.values()), 6))
    assert len(digests) == 3  # the members and the MC-dropout model trained different weights

    for res in results.values():
        saved = np.load(res["predictions"])
        area, channels = saved["area"], list(saved["channels"])
        # rollouts from the test run's initial state over the whole run: one sample per lead day 1 … T−1
        steps = int(read_meta(three_run_cube).time_count[2]) - 1
        np.testing.assert_array_equal(saved["test_lead_days"], np.arange(1, steps + 1))
        assert saved["test_mean"].shape == saved["test_obs"].shape == (steps, len(channels), *area.shape)
        assert np.all(saved["test_sigma"] > 0)
        members, kept = saved["test_members"], [channels[c] for c in saved["member_channels"]]
        assert members.shape[:3] == ((2 if res["method"] == "ensemble" else 4), steps, len(kept))
        scales = [metrics.fit_sigma_scale(saved["validation_mean"][:, c], saved["validation_sigma"][:, c],
                                          saved["validation_obs"][:, c], weights=area) for c in range(len(channels))]
        np.testing.assert_allclose(saved["sigma_scale"], scales, rtol=1e-12)
        rows = {(r["channel"], r["scaling"], r["lead"]): r for r in res["rows"]}
        assert {c for c, _, _ in rows} == {"ts", "tas", "ps", "rlut", "ta@0.5668", POOLED}
        assert {lead for _, _, lead in rows} == {"all leads", "day 1", f"day {steps}"}
        for channel in ("ts", "ta@0.5668"):
            c, k = channels.index(channel), kept.index(channel)
            groups = (("all leads", slice(None)), ("day 1", slice(0, 1)), (f"day {steps}", slice(-1, None)))
            for scaling, factor in (("before", 1.0), ("after", scales[c])):
                for lead, pick in groups:
                    row = rows[(channel, scaling, lead)]
                    direct = _direct(saved["test_mean"][pick, c], saved["test_sigma"][pick, c] * factor,
                                     saved["test_obs"][pick, c], area, saved["clim_mean"][c], saved["clim_sigma"][c])
                    for key, value in direct.items():
                        assert row[key] == pytest.approx(value, rel=1e-9), (channel, scaling, lead, key)
                    # the members scored as an ensemble, their spread about the mean scaled by the factor
                    x = members[:, pick, k].astype(np.float64)
                    x = x.mean(axis=0) + factor * (x - x.mean(axis=0))
                    obs = saved["test_obs"][pick, c]
                    assert row["crps_fair"] == pytest.approx(metrics.crps_ensemble(x, obs, weights=area), rel=1e-9)
                    assert row["coverage95_ens"] == pytest.approx(
                        metrics.coverage_ensemble(x, obs, 0.95, weights=area), rel=1e-12)
                    assert row["rank_histogram"] == pytest.approx(metrics.rank_histogram(x, obs, weights=area).tolist())
            # the Gaussian summary is the members' mean and population std (the saved members are float32)
            np.testing.assert_allclose(members[:, :, k].mean(axis=0), saved["test_mean"][:, c], rtol=1e-6)
        mu, sd = saved["norm_mean"][:, None, None], saved["norm_std"][:, None, None]
        for scaling, factors in (("before", np.ones(len(channels))), ("after", np.asarray(scales))):
            direct = _direct((saved["test_mean"] - mu) / sd, saved["test_sigma"] / sd * factors[:, None, None],
                             (saved["test_obs"] - mu) / sd, area, (saved["clim_mean"] - mu) / sd,
                             saved["clim_sigma"] / sd)
            for key, value in direct.items():
                assert rows[(POOLED, scaling, "all leads")][key] == pytest.approx(value, rel=1e-9), (scaling, key)

    # the first lead of each ensemble member is one step of that member from the test run's initial GCM state,
    # computed here from the cube and the member's weights
    import torch

    from astrohpc.data.cube import LazyCube
    from astrohpc.studies.parity import _Run
    from astrohpc.train.export import load_exported

    saved = np.load(ensemble["predictions"])
    channels = list(saved["channels"])
    for m, summary in enumerate(ensemble["train_summaries"]):
        model, info = load_exported(summary["exports"]["best"])
        meta = read_meta(three_run_cube)
        lazy = LazyCube(three_run_cube).prepare()
        try:
            first = lazy.read(2, 0, 2)[:, list(model.plan.cube_channels)].astype(np.float64)
        finally:
            lazy.close()
        params, static, planet = _Run(info, meta).inputs(2)
        with torch.no_grad():
            step = model(torch.from_numpy(first[:1]), torch.from_numpy(first[1:, model.forcing.numpy()]), params,
                         static, planet)[0].numpy()
        table = list(model.plan.describe()["channel_names"])
        for k, c in enumerate(saved["member_channels"]):
            np.testing.assert_allclose(saved["test_members"][m, 0, k], step[table.index(channels[c])], rtol=1e-6)

    with open(folder / "calibration.csv", newline="") as f:
        table = list(csv.DictReader(f))
    # 2 methods × (5 channels × 2 scalings × 3 lead groups + the pooled row before and after)
    assert len(table) == 2 * (5 * 2 * 3 + 2) and {r["reported_on"] for r in table} == {"test"}
    key = ("ensemble", "ts", "after", "all leads")
    ts_after = next(r for r in table if (r["method"], r["channel"], r["scaling"], r["lead"]) == key)
    assert float(ts_after["coverage95"]) == pytest.approx(
        next(r for r in ensemble["rows"] if (r["channel"], r["scaling"], r["lead"]) == key[1:])["coverage95"])
    saved_json = json.loads((folder / "calibration.json").read_text())
    curve = saved_json["methods"]["mc_dropout"]["curves"][POOLED]["after"]
    assert len(curve["observed"]) == len(saved_json["levels"]) == 19
    assert len(saved_json["methods"]["ensemble"]["curves"]["ts"]["after"]["rank_histogram"]) == 3  # 2 members
    assert record["verdicts"]["ensemble"]["coverage95_after"] == next(
        r for r in ensemble["rows"] if (r["channel"], r["scaling"]) == (POOLED, "after"))["coverage95"]


def test_calibration_of_the_studied_export_reuses_it_and_its_configuration(finished_study, three_run_cube,
                                                                         tmp_path):
    """study.model (the parity emulator): its config, seed and split are used; it is the ensemble's first
    member, the other member is trained with its configuration; MC dropout without dropout retrains."""
    folder, _ = finished_study
    ensemble = read_result(folder, 1)
    studied = ensemble["train_summaries"][0]["exports"]["best"]
    exported = read_export(studied)
    # a study config that differs from the export (width 6, 2 epochs, no split): the export's wins
    cfg = from_dict(Config, {"run": {"root": str(tmp_path), "name": "cal", "seed": 7},
                             "model": {**EMULATOR, "unet": {"width": 6, "depth": 1}},
                             "train": {"cube": str(three_run_cube), "epochs": 2},
                             "study": {"model": studied, "methods": ["mc_dropout", "ensemble"]}}, source="test")
    tasks = calibration.expand(cfg)
    by_method = {t["method"]: t for t in tasks}
    seed = exported["config"]["run"]["seed"]
    assert by_method["ensemble"]["seeds"] == [seed, seed + 1]
    assert by_method["ensemble"]["reuse"] == {str(seed): str(Path(studied).resolve())}
    assert by_method["mc_dropout"]["reuse"] == {} and "trained" in by_method["mc_dropout"]["note"]
    split = exported["run_split"]
    assert all((t["validation_runs"], t["test_runs"]) == (split["validation"], split["test"]) for t in tasks)
    member = calibration.task_config({**by_method["ensemble"], "id": 1}, cfg, tmp_path / "study", seed + 1)
    assert member.model.unet.width == exported["config"]["model"]["unet"]["width"] == 4
    assert member.train.epochs == exported["config"]["train"]["epochs"] == 1

    study = plan_study("calibration", from_dict(Config, {**to_dict(cfg), "study": {"model": studied,
                                                                                   "methods": ["ensemble"]}},
                                                source="test"))
    assert [s for _, s, _ in run_local(study)] == ["finished"]
    res = read_result(study, 0)
    assert res["train_summaries"][0]["status"] == "reused" and res["reused"] == [str(Path(studied).resolve())]
    assert res["train_summaries"][1]["status"] == "finished" and res["studied_model"] == studied
    trained = read_export(res["train_summaries"][1]["exports"]["best"])["config"]
    assert trained["model"]["unet"] == exported["config"]["model"]["unet"] and trained["run"]["seed"] == seed + 1


def test_tiny_climate_calibration_of_a_gaussian_head(three_run_cube, tmp_path):
    """The climate path: time-mean fields of whole runs, σ from the Gaussian head or the dropout passes."""
    model = {**TRANSFORMER, "uncertainty": {"samples": 4}}
    folder = plan_study("calibration", _cfg(three_run_cube, tmp_path, model=model, batch_size=1,
                                            methods=["gaussian", "mc_dropout"]))
    assert [s for _, s, _ in run_local(folder)] == ["finished"] * 2
    for task_id, method in enumerate(["gaussian", "mc_dropout"]):
        res = read_result(folder, task_id)
        saved = np.load(res["predictions"])
        assert (res["method"], res["reported_on"], res["excluded_channels"]) == (method, "test", [])
        assert saved["test_mean"].shape[0] == 1 and saved["validation_mean"].shape[0] == 1  # one run each
        assert "one training run" in res["climatology"]
        truth = read_export(res["train_summaries"][0]["exports"]["best"])
        assert truth["config"]["model"]["uncertainty"]["method"] == method
        c = list(saved["channels"]).index("ts")
        after = next(r for r in res["rows"] if (r["channel"], r["scaling"], r["lead"]) == ("ts", "after", "time mean"))
        scale = metrics.fit_sigma_scale(saved["validation_mean"][:, c], saved["validation_sigma"][:, c],
                                        saved["validation_obs"][:, c], weights=saved["area"])
        assert after["coverage95"] == pytest.approx(metrics.coverage(
            saved["test_mean"][:, c], saved["test_sigma"][:, c] * scale, saved["test_obs"][:, c], 0.95,
            weights=saved["area"]), rel=1e-12)


def test_report_section_writes_the_reliability_diagram(finished_study, tmp_path):
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_sections import add_study_section

    folder, _ = finished_study
    report = MarkdownReport(tmp_path, "calibration")
    add_study_section(report, folder)
    text = report.write().read_text()
    assert (tmp_path / "calibration_reliability.png").stat().st_size > 1000
    assert "Calibration of the predictive uncertainty" in text and "fitted on the validation run(s)" in text
    assert "| ensemble | ts | K | all leads |" in text and "ECE ≤ 0.034" in text
    assert (tmp_path / "calibration_rank_histograms.png").stat().st_size > 1000
    assert "models trained here" in text and "scored at leads 1–" in text


def test_demo_config_loads():
    cfg = load_config(REPO / "configs" / "study" / "calibration_demo.yaml")
    assert cfg.study.methods == ["mc_dropout", "ensemble"] and cfg.model.uncertainty.members == 3
    # the parity emulator's export and the configuration it was trained with (configs/train/demo.yaml)
    parity = load_config(REPO / "configs" / "study" / "parity_demo.yaml")
    assert cfg.study.model == parity.study.model
    train = load_config(REPO / "configs" / "train" / "demo.yaml")
    assert (cfg.model.unet, cfg.train.epochs, cfg.train.test_runs) == (train.model.unet, train.train.epochs,
                                                                        train.train.test_runs)
    assert calibration.chosen_methods(cfg) == ["mc_dropout", "ensemble"]
