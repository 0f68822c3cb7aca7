"""Cluster profiles chosen at submission replace the local one (profile < file < overrides), and
the pre-flight checks find what would fail only after the wait in the queue."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from astrohpc.errors import ConfigError
from astrohpc.launch.preflight import bound_at_same_path, preflight
from astrohpc.launch.profiles import choose_profile, extended_profiles, load_job_config


@pytest.fixture
def config(tmp_path, monkeypatch):
    monkeypatch.delenv("ASTROHPC_CLUSTER", raising=False)
    path = tmp_path / "job.yaml"
    path.write_text("run: {name: j}\nslurm: {time: '00:45:00'}\n")
    return path


def test_the_profile_replaces_local_and_the_file_and_overrides_win(config):
    local = load_job_config(config)
    assert (local.slurm.partition, local.slurm.max_parallel, local.slurm.ntasks_per_node) == ("debug", 2, 2)
    a500 = load_job_config(config, ["slurm.account=proj42"], cluster="a500")
    s = a500.slurm
    assert (s.partition, s.account, s.gpus_per_node, s.cpus_per_task) == ("a500", "proj42", 2, 4)
    assert s.max_parallel is None and s.ntasks_per_node == 1  # nothing of local.yaml is left
    assert s.time == "00:45:00"  # the config file sizes its own jobs
    assert load_job_config(config, cluster="a500", binds=["/scratch"]).slurm.binds == ["/scratch"]


def test_the_environment_names_the_profile(config, monkeypatch):
    monkeypatch.setenv("ASTROHPC_CLUSTER", "example-gpu-site")
    assert load_job_config(config).slurm.partition == "gpu"
    assert load_job_config(config, cluster="a500").slurm.partition == "a500"  # the flag wins


def test_unknown_profile_lists_the_known_ones(config):
    with pytest.raises(ConfigError, match="a500, example-gpu-site, local"):
        choose_profile(config, "nope")


def settings(**kw):
    base = dict(account=None, container=None, binds=[], env={}, partition=None)
    return SimpleNamespace(**{**base, **kw})


def test_preflight_findings(tmp_path):
    cube = tmp_path / "cube.h5"
    cube.write_text("")
    assert preflight(settings(account="proj42", partition="gpu"), {"train.cube": str(cube)}, [str(tmp_path)],
                     partitions={"gpu", "cpu"}) == []
    problems = preflight(settings(account="CHANGE_ME", partition="gpux", env={"NCCL_ASYNC_ERROR_HANDLING": "1"}),
                         {"study.model": "/nowhere/best.pt", "study.sweep": None}, [], partitions={"gpu"})
    text = " | ".join(problems)
    assert len(problems) == 4 and "CHANGE_ME" in text and "/nowhere/best.pt does not exist" in text
    assert "TORCH_NCCL_ASYNC_ERROR_HANDLING" in text and "gpux is not a partition" in text
    # sinfo not answering: the partition is not judged
    assert preflight(settings(partition="gpux"), partitions=set()) == []


def test_binds_must_show_every_path_at_the_same_place(monkeypatch):
    monkeypatch.setenv("HOME", "/home/me")
    assert bound_at_same_path("/scratch/me/runs/x", ["/scratch"])
    assert bound_at_same_path("/scratch/me/cube.h5", ["/scratch/me:/scratch/me:ro"])
    assert not bound_at_same_path("/scratch/me/runs", ["/scratch/me:/data"])  # elsewhere inside the image
    assert not bound_at_same_path("/scratchy/x", ["/scratch"])
    assert bound_at_same_path("/home/me/runs", []) and bound_at_same_path("/tmp/x", [])
    problems = preflight(settings(account="p", container="docker://org/astrohpc:1"), {"train.cube": None},
                         ["/project/runs/t"])
    assert len(problems) == 1 and "slurm.binds=[/project/runs/t]" in problems[0]


def test_demo_configs_do_not_hard_wire_a_cluster_profile():
    """Every config tools/demo.sh runs takes its profile at submission (--cluster), so that the same
    config submits to a500 without a trace of local.yaml."""
    repo = Path(__file__).resolve().parents[2]
    demo = (repo / "tools" / "demo.sh").read_text()
    configs = sorted(set(re.findall(r"configs/(?:gcm|train|study)/[\w.-]+\.yaml", demo)))
    assert len(configs) >= 8
    wired = {c: [p.name for p in extended_profiles(repo / c)] for c in configs}
    assert {c: p for c, p in wired.items() if p} == {}, "drop their 'extends: ../cluster/...' entries"
