"""Checkpoint files: RNG round trip, weights_only round trip of a training state, bit-identical resume,
pruning, corrupt/truncated/incomplete files, and a crash during save."""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
import torch

from astrohpc.errors import CheckpointError
from astrohpc.train import checkpoint as ckpt
from astrohpc.train.checkpoint import (
    capture_rng,
    list_checkpoints,
    load_checkpoint,
    load_latest,
    restore_rng,
    save_checkpoint,
)

TOTAL_STEPS = 8


def draws() -> tuple:
    python_draws = [random.random() for _ in range(5)]
    return torch.rand(5).tolist(), np.random.rand(5).tolist(), np.random.randn(3).tolist(), python_draws


def test_rng_restore_gives_identical_draws():
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = capture_rng()
    expected = draws()
    draws()
    restore_rng(state)
    assert draws() == expected


def test_rng_state_survives_weights_only_file(tmp_path):
    torch.manual_seed(4)
    save_checkpoint(tmp_path, 0, {"rng": capture_rng()}, rank_states=[capture_rng(), capture_rng()])
    expected = draws()
    loaded, _ = load_latest(tmp_path)
    restore_rng(loaded["rank_states"][1])
    assert draws() == expected


class Training:
    """Small nn.Linear with AdamW, OneCycleLR and a GradScaler; data and dropout from the global RNG."""

    def __init__(self) -> None:
        self.model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2, weight_decay=0.01)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, max_lr=5e-2, total_steps=TOTAL_STEPS)
        self.scaler = torch.amp.GradScaler("cpu")
        self.step = 0

    def train_step(self) -> None:
        x = torch.randn(16, 4)
        y = torch.from_numpy(np.random.randn(16, 2).astype(np.float32)) + random.random()
        loss = torch.nn.functional.mse_loss(self.model(x), y)
        self.optimizer.zero_grad()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1

    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": 0,
            "config": {"lr": 1e-2, "name": "demo", "levels": [1, 2, 3], "nested": {"amp": None, "flag": True}},
            "rng": capture_rng(),
        }

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        restore_rng(state["rng"])


def test_resume_is_bit_identical_to_uninterrupted_training(tmp_path):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    reference = Training()
    initial = {k: v.clone() for k, v in reference.model.state_dict().items()}
    for _ in range(TOTAL_STEPS):
        reference.train_step()

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    first = Training()
    first.model.load_state_dict(initial)
    for _ in range(3):
        first.train_step()
    path = save_checkpoint(tmp_path, first.step, first.state())
    assert path.name == "ckpt-000000003.pt"

    torch.manual_seed(999)  # a new process: other RNG states, fresh objects
    np.random.seed(999)
    random.seed(999)
    resumed = Training()
    state, loaded_path = load_latest(tmp_path)
    assert loaded_path == path
    assert state["config"] == first.state()["config"]
    resumed.load(state)
    assert resumed.scheduler.get_last_lr() == first.scheduler.get_last_lr()
    while resumed.step < TOTAL_STEPS:
        resumed.train_step()
    for key, value in reference.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_keep_prunes_to_newest(tmp_path):
    for step in range(0, 60, 10):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-000000040.pt", "ckpt-000000050.pt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-000000040.pt", "ckpt-000000040.pt.sha256", "ckpt-000000050.pt", "ckpt-000000050.pt.sha256",
    ]


def test_sidecar_is_sha256sum_format(tmp_path):
    path = save_checkpoint(tmp_path, 7, {"step": 7})
    digest, name = (tmp_path / "ckpt-000000007.pt.sha256").read_text().split()
    assert name == path.name and len(digest) == 64


def test_truncated_newest_is_skipped_with_warning(tmp_path, caplog):
    save_checkpoint(tmp_path, 1, {"step": 1})
    newest = save_checkpoint(tmp_path, 2, {"step": 2, "w": torch.ones(100)})
    newest.write_bytes(newest.read_bytes()[:-50])
    with caplog.at_level(logging.WARNING, logger="astrohpc.train.checkpoint"):
        state, path = load_latest(tmp_path)
    assert state["step"] == 1 and path.name == "ckpt-000000001.pt"
    assert newest.name in caplog.text and "sha256" in caplog.text


def test_wrong_sidecar_is_skipped_with_warning(tmp_path, caplog):
    save_checkpoint(tmp_path, 1, {"step": 1})
    newest = save_checkpoint(tmp_path, 2, {"step": 2})
    ckpt.sidecar_path(newest).write_text("0" * 64 + "  " + newest.name + "\n")
    with caplog.at_level(logging.WARNING, logger="astrohpc.train.checkpoint"):
        state, _ = load_latest(tmp_path)
    assert state["step"] == 1
    assert newest.name in caplog.text and "does not match" in caplog.text


def test_unloadable_file_with_matching_sidecar_is_skipped(tmp_path, caplog):
    save_checkpoint(tmp_path, 1, {"step": 1})
    newest = save_checkpoint(tmp_path, 2, {"step": 2})
    newest.write_bytes(b"not a torch file")
    ckpt.sidecar_path(newest).write_text(ckpt.sha256_file(newest) + "  " + newest.name + "\n")
    with caplog.at_level(logging.WARNING, logger="astrohpc.train.checkpoint"):
        state, _ = load_latest(tmp_path)
    assert state["step"] == 1 and "torch.load" in caplog.text


def test_all_corrupt_raises_naming_directory(tmp_path):
    for step in (1, 2):
        path = save_checkpoint(tmp_path, step, {"step": step})
        path.write_bytes(path.read_bytes()[:10])
    with pytest.raises(CheckpointError, match=str(tmp_path)) as info:
        load_latest(tmp_path)
    assert "delete them" in str(info.value)


def test_empty_or_missing_directory_gives_none(tmp_path):
    assert load_latest(tmp_path) is None
    assert load_latest(tmp_path / "absent") is None


def test_pt_without_sidecar_is_ignored(tmp_path):
    save_checkpoint(tmp_path, 1, {"step": 1})
    orphan = save_checkpoint(tmp_path, 2, {"step": 2})
    ckpt.sidecar_path(orphan).unlink()  # a crash between the two writes
    assert list_checkpoints(tmp_path) == [tmp_path / "ckpt-000000001.pt"]
    assert load_latest(tmp_path)[0]["step"] == 1
    with pytest.raises(CheckpointError, match="did not finish"):
        load_checkpoint(orphan)
    only_orphan = tmp_path / "only"
    ckpt.sidecar_path(save_checkpoint(only_orphan, 5, {"step": 5})).unlink()
    assert load_latest(only_orphan) is None


def test_crash_during_save_leaves_previous_intact(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 1, {"step": 1}, keep=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 2, {"step": 2}, keep=1)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path, 1, {"step": 1}, keep=1)  # re-saving the same step must not lose it either
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert load_latest(tmp_path)[0]["step"] == 1


def test_stale_temp_files_and_leftovers_are_pruned(tmp_path):
    save_checkpoint(tmp_path, 1, {"step": 1})
    (tmp_path / ".ckpt-000000002.pt.abc.tmp").write_bytes(b"killed writer")
    ckpt.sidecar_path(save_checkpoint(tmp_path, 2, {"step": 2})).unlink()
    for step in (3, 4, 5):
        save_checkpoint(tmp_path, step, {"step": step}, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-000000004.pt", "ckpt-000000004.pt.sha256", "ckpt-000000005.pt", "ckpt-000000005.pt.sha256",
    ]


def test_newer_checkpoints_from_an_earlier_run_are_kept_and_logged(tmp_path, caplog):
    save_checkpoint(tmp_path, 10, {"step": 10}, keep=1)
    with caplog.at_level(logging.WARNING, logger="astrohpc.train.checkpoint"):
        written = save_checkpoint(tmp_path, 5, {"step": 5}, keep=1)
    assert list_checkpoints(tmp_path) == [written, tmp_path / "ckpt-000000010.pt"]
    assert "newer than step 5" in caplog.text


@pytest.mark.parametrize("bad", [np.float64(1.0), np.zeros(2), {"a": {1, 2}, "b": (1, object())}])
def test_state_weights_only_rejects_is_refused_before_writing(tmp_path, bad):
    with pytest.raises(CheckpointError, match="weights_only"):
        save_checkpoint(tmp_path, 1, {"config": {"x": bad}})
    assert list(tmp_path.iterdir()) == []


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 3, {"v": 1})
    save_checkpoint(tmp_path, 3, {"v": 2})
    assert load_latest(tmp_path)[0]["v"] == 2
