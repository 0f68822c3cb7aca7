"""wrap() puts a task's argv inside `apptainer exec` and refuses what Apptainer would misread."""

from __future__ import annotations

import shlex

import pytest

from astrohpc.errors import ConfigError
from astrohpc.launch.container import wrap


def test_argv_order_binds_and_env():
    argv = wrap(["astrohpc", "train", "cfg.yaml", "train.lr=1e-3"], "/images/astrohpc.sif",
                binds=["/scratch/me", "/data/cubes:/cubes:ro"], env={"OMP_NUM_THREADS": "4", "A_B": "x y"})
    assert argv == ["apptainer", "exec", "--nv", "--bind", "/scratch/me:/scratch/me,/data/cubes:/cubes:ro",
                    "--env", "OMP_NUM_THREADS=4", "--env", "A_B=x y", "/images/astrohpc.sif",
                    "astrohpc", "train", "cfg.yaml", "train.lr=1e-3"]


def test_minimal_and_nv_off():
    assert wrap(["hostname"], "a.sif") == ["apptainer", "exec", "--nv", "a.sif", "hostname"]
    assert wrap(["hostname"], "a.sif", nv=False) == ["apptainer", "exec", "a.sif", "hostname"]


@pytest.mark.parametrize("image", ["docker://pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime",
                                   "oras://ghcr.io/me/astrohpc:0.1", "library://me/astrohpc/img:latest",
                                   "relative/astrohpc.sif"])
def test_accepted_images(image):
    assert wrap(["true"], image, nv=False)[2] == image


@pytest.mark.parametrize("image", ["astrohpc.simg", "Apptainer.def", "", "https://x/astrohpc.sif.gz"])
def test_refused_images(image):
    with pytest.raises(ConfigError, match=r"expected a path ending in \.sif .*docker://"):
        wrap(["true"], image)


def test_image_path_with_whitespace_is_refused():
    with pytest.raises(ConfigError, match="contains whitespace: move or link the image"):
        wrap(["true"], "/img/a b.sif")


def test_argument_elements_stay_whole():
    # an argument with spaces or shell syntax is one list element; a shell sees it as one word after shlex.join
    evil = "x; rm -rf ~ && echo 'quoted'"
    argv = wrap(["echo", evil], "a.sif", nv=False)
    assert argv[-1] == evil and shlex.split(shlex.join(argv)) == argv


@pytest.mark.parametrize("bind, match", [
    ("/a,/b", r"contains a comma: Apptainer splits --bind lists on commas; pass each path as its own bind"),
    ("/my data", r"contains whitespace: bind a parent folder"),
    ("/a:/b:ro:x", r"at most two colons"),
    (":/b", r"a source path first"),
    ("/a:relative", r"destination 'relative' must be an absolute path"),
    ("/a:/b:rx", r"unknown option 'rx'; one of ro, rw"),
    ("", r"expected 'src\[:dst\[:ro\|rw\]\]'"),
])
def test_bad_binds_name_the_fix(bind, match):
    with pytest.raises(ConfigError, match=match):
        wrap(["true"], "a.sif", binds=[bind])


def test_bind_with_options_and_relative_source():
    assert wrap(["true"], "a.sif", nv=False, binds=["runs:/work/runs:rw"])[3] == "runs:/work/runs:rw"


@pytest.mark.parametrize("env, match", [
    ({"1BAD": "x"}, r"env name '1BAD'"),
    ({"A-B": "x"}, r"env name 'A-B'"),
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, r"cannot carry a comma .* export APPTAINERENV_CUDA_VISIBLE_DEVICES"),
    ({"Q": 'say "hi"'}, r"double quote"),
])
def test_bad_env(env, match):
    with pytest.raises(ConfigError, match=match):
        wrap(["true"], "a.sif", env=env)


@pytest.mark.parametrize("argv", [[], (), "astrohpc train cfg.yaml"])
def test_command_must_be_a_nonempty_list(argv):
    with pytest.raises(ConfigError, match="non-empty argv list"):
        wrap(argv, "a.sif")
