"""The training engine on the real smoke-run cube (2 ExoPlaSim runs, 5 daily states each).

One run trains, the other validates (whole runs). Checked: the step count the schedule and the
sampler imply, metrics tables with physical units beside the baseline, exported weights that
rebuild the same model, a run stopped by a signal that resumes to weights bit-identical to an
uninterrupted run, 2-rank DDP that matches 1 rank, and each bad setting's error.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from astrohpc.config import Config, from_dict
from astrohpc.data.cube import read_meta
from astrohpc.errors import CheckpointError, ConfigError
from astrohpc.train import trainer as trainer_module
from astrohpc.train.distributed import detect
from astrohpc.train.export import load_exported, read_export
from astrohpc.train.trainer import Trainer, train

REPO = Path(__file__).resolve().parents[2]
SMALL_UNET = {"width": 4, "depth": 1, "dropout": 0.1}
TRANSFORMER = {"task": "emulator", "architecture": "transformer", "mode": "datacube",
               "transformer": {"dim": 16, "depth": 1, "heads": 2, "patch": [8, 8], "dropout": 0.0}}


def make_cfg(cube, root, name="t", dropout=0.1, **train):
    meta = read_meta(cube)
    model = train.pop("model", {"task": "emulator", "architecture": "unet", "unet": {**SMALL_UNET, "dropout": dropout},
                                "physics": {"loss_weights": {"dry_mass": 1.0, "humidity_negative": 1.0}}})
    settings = {"cube": str(cube), "validation_runs": [meta.run_names[1]], "epochs": 2, "batch_size": 2,
                "checkpoint_every": 1, "keep_checkpoints": 2, "log_every": 1, "lr": 1e-3, **train}
    return from_dict(Config, {"run": {"root": str(root), "name": name, "seed": 3}, "model": model,
                              "train": settings}, source="test")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _weights(path):
    return read_export(path)["model_state"]


def test_emulator_trains_validates_and_exports(physics_cube, tmp_path):
    cfg = make_cfg(physics_cube, tmp_path)
    summary = train(cfg)
    run = tmp_path / "t"
    # run 0 has 5 states: 4 windows of 1+1 steps, a global batch of 2 -> 2 steps per epoch
    assert summary["status"] == "finished"
    assert (summary["steps_per_epoch"], summary["total_steps"], summary["step"]) == (2, 4, 4)
    assert summary["split"]["train"] == [read_meta(physics_cube).run_names[0]]
    train_rows = _rows(run / "metrics" / "train.csv")
    assert [int(r["step"]) for r in train_rows] == [1, 2, 3, 4]
    assert all(float(r["loss"]) > 0 and float(r["samples_per_s"]) > 0 for r in train_rows)
    # OneCycle: the rate rises then falls
    lrs = [float(r["lr"]) for r in train_rows]
    assert max(lrs) > lrs[-1]
    val = _rows(run / "metrics" / "validation.csv")
    assert {int(r["epoch"]) for r in val} == {0, 1}
    by_channel = {r["channel"]: r for r in val if r["epoch"] == "1"}
    assert by_channel["ts"]["units"] == "K" and float(by_channel["ts"]["rmse"]) > 0
    assert float(by_channel["ts"]["persistence_rmse"]) > 0
    ckpts = sorted((run / "checkpoints").glob("ckpt-*.pt"))
    assert len(ckpts) == 2 and ckpts[-1].name == "ckpt-000000004.pt"
    summary_file = json.loads((run / "metrics.json").read_text())
    assert summary_file["best"]["epoch"] in (0, 1)
    assert (run / "run.json").is_file() or (run / "provenance.json").is_file() or any(run.glob("*.json"))

    # the exported weights rebuild the model and predict exactly what the trained one does
    model, info = load_exported(run / "export" / "last.pt")
    assert info["step"] == 4 and info["param_norm"]["names"]
    direct = Trainer(cfg, detect({}))
    direct.resume()  # the final checkpoint: the same weights
    from torch.utils.data import DataLoader

    batch = next(iter(DataLoader(direct.data.train, batch_size=2)))
    direct.model.eval()
    with torch.no_grad():
        args = (batch["input"][:, 0], batch["target"][:, 0, model.forcing], batch["params"], batch.get("static"))
        assert torch.equal(model.predict(*args), direct.model.predict(*args))


def test_export_needs_no_cube_and_an_old_export_says_how_to_upgrade(physics_cube, tmp_path):
    """The export carries the cube's layout: with the training cube moved away the model loads and
    predicts what the trainer's model does; a format-1 export is refused with the upgrade command,
    which (given the cube) writes a self-contained one that loads to the same weights."""
    import shutil

    from astrohpc.data.meta_state import meta_from_state
    from astrohpc.train.export import upgrade_export

    cube = tmp_path / "moved" / "physics.h5"
    cube.parent.mkdir()
    for src in (physics_cube, physics_cube.with_suffix(".stats.h5")):
        shutil.copy(src, cube.parent / src.name)
    cfg = make_cfg(cube, tmp_path, epochs=1)
    train(cfg)
    export = tmp_path / "t" / "export" / "last.pt"
    info = read_export(export)
    meta, layout = read_meta(cube), meta_from_state(info["meta"])
    assert layout.channel_names == meta.channel_names and layout.units == meta.units
    assert np.array_equal(layout.area_weight, meta.area_weight) and np.array_equal(layout.lat, meta.lat)
    assert np.array_equal(layout.stats["fields"]["mean"], meta.stats["fields"]["mean"])
    assert set(info["envelope"]["names"]) == set(info["param_norm"]["names"])
    from torch.utils.data import DataLoader

    from astrohpc.data.dataset import WindowDataset

    before, _ = load_exported(export)
    data = WindowDataset(cube, 1, 1, param_norm=info["param_norm"], static=True)
    batch = next(iter(DataLoader(data, batch_size=2)))
    data.close()
    shutil.move(str(cube.parent), str(tmp_path / "elsewhere"))
    model, _ = load_exported(export)
    elsewhere = tmp_path / "elsewhere" / "physics.h5"
    with torch.no_grad():
        args = (batch["input"][:, 0], batch["target"][:, 0, model.forcing], batch["params"], batch.get("static"))
        assert torch.equal(model.predict(*args), before.predict(*args))

    old = {k: v for k, v in info.items() if k not in ("meta", "envelope")}
    old["format"] = "astrohpc-surrogate/1"
    torch.save(old, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="astrohpc export upgrade .*old.pt --cube"):
        load_exported(tmp_path / "old.pt")
    upgraded = upgrade_export(tmp_path / "old.pt", elsewhere)
    assert upgraded.name == "old.v2.pt"
    again, _ = load_exported(upgraded)
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_init_from_starts_from_an_exports_weights(physics_cube, tmp_path):
    """train.init_from: a run at a vanishing rate (1e-30) exports the weights it started from (a fresh
    start would differ by O(0.1)); another model is refused."""
    train(make_cfg(physics_cube, tmp_path, name="a", epochs=1))
    source = tmp_path / "a" / "export" / "last.pt"
    cfg = make_cfg(physics_cube, tmp_path, name="b", epochs=1, lr=1e-30, weight_decay=0.0, schedule="constant",
                   init_from=str(source))
    train(cfg)
    a, b = _weights(source), _weights(tmp_path / "b" / "export" / "last.pt")
    learned = [k for k in a if "running_" not in k and "num_batches_tracked" not in k]  # BatchNorm stats move anyway
    assert a.keys() == b.keys() and len(learned) > 10
    assert all(torch.allclose(a[k].double(), b[k].double(), rtol=0, atol=1e-20) for k in learned)
    fresh = _weights(tmp_path / "a" / "export" / "best.pt")
    other = make_cfg(physics_cube, tmp_path, name="c", epochs=1, dropout=0.3, init_from=str(source))
    with pytest.raises(CheckpointError, match="init_from .* differs in unet"):
        train(other)
    assert fresh  # the source run is untouched


def _stop_after(monkeypatch, step):
    """Send this process SIGUSR1 right after optimizer step `step` (as Slurm's --signal would)."""
    original = trainer_module.Trainer.train_step

    def train_step(self, batch):
        out = original(self, batch)
        if self.step == step:
            os.kill(os.getpid(), signal.SIGUSR1)
        return out

    monkeypatch.setattr(trainer_module.Trainer, "train_step", train_step)


def test_signal_checkpoint_and_resume_is_bit_identical(physics_cube, tmp_path, monkeypatch):
    reference = train(make_cfg(physics_cube, tmp_path, "straight", checkpoint_every=0))
    assert reference["status"] == "finished"

    cfg = make_cfg(physics_cube, tmp_path, "stopped", checkpoint_every=0)
    with monkeypatch.context() as m:
        _stop_after(m, 3)  # mid second epoch
        first = train(cfg)
    assert first["status"] == "preempted" and first["step"] == 3
    assert first["requeue"]["requeued"] is False  # not in Slurm: nothing to requeue, said so
    assert not (tmp_path / "stopped" / "export" / "last.pt").exists()
    second = train(cfg)
    assert second["status"] == "finished" and second["step"] == 4
    a, b = _weights(tmp_path / "straight" / "export" / "last.pt"), _weights(tmp_path / "stopped" / "export" / "last.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    # the metrics tables hold each step once
    steps = [int(r["step"]) for r in _rows(tmp_path / "stopped" / "metrics" / "train.csv")]
    assert steps == [1, 2, 3, 4]


def test_checkpoint_of_another_run_is_refused(physics_cube, tmp_path):
    train(make_cfg(physics_cube, tmp_path, "r", epochs=1))
    changed = make_cfg(physics_cube, tmp_path, "r", epochs=2, lr=5e-3)
    with pytest.raises(CheckpointError, match="different train"):
        train(changed)


def test_climate_surrogate_trains_against_climatology(physics_cube, tmp_path):
    model = {"task": "climate", "architecture": "unet", "mode": "datacube", "unet": {"width": 4, "depth": 1}}
    summary = train(make_cfg(physics_cube, tmp_path, "clim", model=model, batch_size=1, epochs=3))
    assert summary["status"] == "finished" and summary["step"] == 3
    val = _rows(tmp_path / "clim" / "metrics" / "validation.csv")
    ts = [r for r in val if r["channel"] == "ts"]
    assert len(ts) == 3 and all(float(r["climatology_rmse"]) > 0 for r in ts)


@pytest.mark.parametrize("override,match", [
    ({"amp": "fp16"}, "fp16 needs a CUDA device"),
    ({"batch_size": 8}, "fewer than a batch"),
    ({"validation_runs": ["no-such-run"]}, "no run named no-such-run"),
    ({"signal": "USR9@60"}, "signal"),
])
def test_bad_settings_are_config_errors(physics_cube, tmp_path, override, match):
    with pytest.raises(ConfigError, match=match):
        train(make_cfg(physics_cube, tmp_path, "bad", **override))


def test_bf16_autocast_trains_on_cpu(physics_cube, tmp_path):
    summary = train(make_cfg(physics_cube, tmp_path, "bf16", amp="bf16", epochs=1))
    assert summary["status"] == "finished"
    losses = [float(r["loss"]) for r in _rows(tmp_path / "bf16" / "metrics" / "train.csv")]
    assert all(torch.isfinite(torch.tensor(losses)))


def _ddp_worker(rank, world, port, cube, root, out):
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    summary = train(make_cfg(cube, root, "ddp", epochs=2, batch_size=2, model=TRANSFORMER))
    with open(f"{out}.{rank}.json", "w") as f:
        json.dump(summary, f, default=str)


def test_two_rank_ddp_matches_one_rank(physics_cube, tmp_path, free_port):
    """A global batch of 2 as 2 ranks × 1 gives the same training as 1 rank × 2: the same loss and
    gradient norm at every step (float rounding). The transformer without dropout: dropout masks
    are drawn per rank, and the U-Net's BatchNorm normalises each rank's own samples on CPU (gloo
    has no SyncBatchNorm; on CUDA it is synced). Weights are not compared element-wise: Adam's
    first steps move a weight with a rounding-level gradient by ±lr whatever its sign."""
    single = train(make_cfg(physics_cube, tmp_path / "one", "ddp", epochs=2, batch_size=2, model=TRANSFORMER))
    torch.multiprocessing.spawn(_ddp_worker, args=(2, free_port, str(physics_cube), str(tmp_path / "two"),
                                                   str(tmp_path / "summary")), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"summary.{r}.json").read_text()) for r in range(2)]
    assert [r["distributed"]["rank"] for r in ranks] == [0, 1]
    assert [r["distributed"]["world_size"] for r in ranks] == [2, 2]
    assert all(r["step"] == single["step"] == 4 for r in ranks)
    one = _rows(tmp_path / "one" / "ddp" / "metrics" / "train.csv")
    two = _rows(tmp_path / "two" / "ddp" / "metrics" / "train.csv")
    assert [r["step"] for r in one] == [r["step"] for r in two] == ["1", "2", "3", "4"]
    for a, b in zip(one, two):
        for key in ("loss", "grad_norm"):
            assert float(a[key]) == pytest.approx(float(b[key]), rel=1e-4), (a["step"], key)
    # the 2-rank validation pools both ranks' shares: the same table as 1 rank
    v1 = _rows(tmp_path / "one" / "ddp" / "metrics" / "validation.csv")
    v2 = _rows(tmp_path / "two" / "ddp" / "metrics" / "validation.csv")
    assert [r["channel"] for r in v1] == [r["channel"] for r in v2]
    for a, b in zip(v1, v2):
        assert float(a["persistence_rmse"]) == pytest.approx(float(b["persistence_rmse"]), rel=1e-9)
        assert float(a["rmse"]) == pytest.approx(float(b["rmse"]), rel=1e-3)


def test_cli_train(physics_cube, tmp_path):
    cfg = tmp_path / "train.yaml"
    meta = read_meta(physics_cube)
    cfg.write_text(f"""run: {{root: {tmp_path}, name: cli}}
model: {{task: emulator, architecture: unet, unet: {{width: 4, depth: 1}}}}
train: {{cube: {physics_cube}, validation_runs: [{meta.run_names[1]}], batch_size: 2, checkpoint_every: 0}}
""")
    done = subprocess.run([sys.executable, "-m", "astrohpc", "train", str(cfg), "train.epochs=1"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    brief = json.loads(done.stdout)
    assert brief["status"] == "finished" and brief["step"] == 2
    bad = subprocess.run([sys.executable, "-m", "astrohpc", "train", str(cfg), "train.epoch=1"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert bad.returncode == 2 and "train.epoch" in bad.stderr and "epochs" in bad.stderr


SFNO_MODEL = {"task": "emulator", "architecture": "sfno", "variables": ["ts", "tas", "ps", "ta", "ua", "va", "hus"],
              "diagnostics": ["pr", "rlut"], "params": ["instellation_W_m2"], "project_tendency": True,
              "sfno": {"embed": 8, "layers": 1}, "loss_weights": {"ts": 2.0},
              "physics": {"correctors": ["humidity", "dry_mass"]}}


def test_rollout_selection_ema_and_input_noise(physics_cube, tmp_path):
    """train.select_by: rollout scores each epoch by stepping the validation run from its first state
    (numpy recomputation below) and a stability run past its end on the orbit's forcing; the exported
    weights are the EMA's."""
    cfg = make_cfg(physics_cube, tmp_path, "sfno", model=SFNO_MODEL, unroll_steps=2, input_noise=0.01,
                   ema_decay=0.9, select_by="rollout", stability_steps=8, epochs=2, checkpoint_every=0)
    summary = train(cfg)
    history = summary["history"]
    assert all({"rollout_score", "stable"} <= set(h) for h in history)
    best = min(history, key=lambda h: (not h["stable"], h["rollout_score"]))
    assert summary["best"]["epoch"] == best["epoch"]

    # the score of the exported best weights, recomputed: RMSE / std per channel over the run, averaged
    model, info = load_exported(tmp_path / "sfno" / "export" / "best.pt")
    meta = read_meta(physics_cube)
    run = meta.run_names.index(cfg.train.validation_runs[0])
    with h5py.File(physics_cube, "r", locking=False) as f:
        states = f["fields"][run, :int(meta.time_count[run])][:, list(model.plan.cube_channels)].astype(np.float64)
    z = meta.normalized_params(info["param_norm"])[run:run + 1]
    static = np.stack([meta.static[s][run] for s in model.static_names])[None]
    from astrohpc.physics.constants import FIELDS, PlanetConstants

    planet = PlanetConstants.from_run_params({k: torch.tensor([float(meta.params[k][run])]) for k in FIELDS})
    scored = np.concatenate([model.predicted.numpy(), model.diagnostic.numpy()])
    std = model.normalizer.std[0, scored, 0, 0].numpy()
    area = np.asarray(meta.area_weight) / np.sum(meta.area_weight)
    x, sq = torch.as_tensor(states[:1]), np.zeros(len(scored))
    with torch.no_grad():
        for t in range(1, len(states)):
            forcing = torch.as_tensor(states[t:t + 1, model.forcing.numpy()])
            x = model(x, forcing, torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(static), planet)
            sq += (((x[0].numpy()[scored] - states[t, scored]) / std[:, None, None]) ** 2 * area).sum(axis=(-2, -1))
    by_hand = float(np.mean(np.sqrt(sq / (len(states) - 1))))
    assert summary["best"]["rollout_score"] == pytest.approx(by_hand, rel=1e-5)

    # the exported weights are the moving average, not the last optimiser step's
    state = torch.load(sorted((tmp_path / "sfno" / "checkpoints").glob("ckpt-*.pt"))[-1], weights_only=False)
    last = read_export(tmp_path / "sfno" / "export" / "last.pt")["model_state"]
    for name, value in state["ema"].items():
        assert torch.equal(last[f"net.{name}"], value)
    assert any(not torch.equal(state["model"][f"net.{n}"], v) for n, v in state["ema"].items())
