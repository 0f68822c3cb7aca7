"""The doctor's torch and Slurm lines: the CUDA torch was built for, the driver's version, the
Slurm version, and a failed torch row when GPUs were allocated but torch cannot use them."""

from __future__ import annotations

import subprocess

import torch

from astrohpc import doctor


def fake_run(outputs):
    def run(cmd, timeout=10.0):
        for key, text in outputs.items():
            if key in " ".join(cmd):
                return subprocess.CompletedProcess(cmd, 0, text, "")
        return None
    return run


def test_torch_line_names_the_build_and_the_driver(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(doctor, "_run", fake_run({"driver_version": "550.54.15\n"}))
    monkeypatch.delenv("SLURM_GPUS_ON_NODE", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    row = doctor.check_torch()
    assert row.ok and "built for CUDA 12.6" in row.detail and "NVIDIA driver 550.54.15" in row.detail


def test_allocated_gpus_without_cuda_fail_the_torch_row(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    monkeypatch.setenv("SLURM_GPUS_ON_NODE", "2")
    row = doctor.check_torch()
    assert not row.ok and "a CPU-only build" in row.detail and "SLURM_GPUS_ON_NODE=2" in row.detail
    assert "no NVIDIA driver" in row.detail


def test_slurm_line_carries_the_version(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(doctor, "_run", fake_run({"--version": "slurm 23.11.4\n", "ping": "Slurmctld is UP\n",
                                                   "%D %T": "4 idle\n"}))
    row = doctor.check_slurm()
    assert row.ok and row.detail.startswith("Slurm 23.11.4;") and "controller UP" in row.detail
