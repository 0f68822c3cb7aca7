"""The Apptainer definition is checked for what Apptainer would silently accept, and read back
with an outside parser (spython) for what the image promises: a CUDA PyTorch base, the
environment jobs need, `astrohpc` as the runscript and a %test that exercises the stack."""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest
from spython.main.parse.parsers import SingularityParser

from astrohpc.errors import AstrohpcError
from astrohpc.launch.apptainer import check_definition, exported, section_bodies

REPO = Path(__file__).resolve().parents[2]
DEFINITION = REPO / "Apptainer.def"


@pytest.fixture(scope="module")
def recipe():
    """The definition as spython reads it (one layer: no multi-stage build)."""
    layers = list(SingularityParser(str(DEFINITION)).recipe.values())
    assert len(layers) == 1
    return layers[0]


def _pin(package: str) -> str:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    for line in cfg["options"]["install_requires"].split():
        if line.startswith(f"{package}=="):
            return line.split("==")[1]
    raise AssertionError(f"{package} is not pinned in setup.cfg")


def test_project_definition_is_well_formed():
    info = check_definition(DEFINITION)
    assert info["bootstrap"] == "docker"
    for section in ("files", "environment", "post", "runscript", "test", "labels", "help"):
        assert section in info["sections"].split(",")
    # the image installs through the same script as a developer machine
    assert "tools/setup.sh" in section_bodies(DEFINITION)["post"]


def test_base_is_an_official_cuda_pytorch_runtime_image_pinned_by_tag(recipe):
    base = recipe.fromHeader
    assert base == check_definition(DEFINITION)["from"]
    assert re.fullmatch(r"pytorch/pytorch:\d+\.\d+\.\d+-cuda\d+\.\d+-cudnn\d+-runtime", base), base


def test_post_installs_the_pinned_torch_as_a_cuda_wheel():
    post = section_bodies(DEFINITION)["post"]
    assert f'"torch=={_pin("torch")}"' in post
    assert re.search(r"--index-url \"\{\{ TORCH_INDEX \}\}\"", post)
    assert re.search(r"TORCH_INDEX=https://download\.pytorch\.org/whl/cu\d+", section_bodies(DEFINITION)["arguments"])
    # Open MPI and parallel HDF5 from apt, before setup.sh builds mpi4py and h5py against them
    for package in ("openmpi-bin", "libopenmpi-dev", "libhdf5-openmpi-dev", "gfortran"):
        assert package in post
    assert post.index("libhdf5-openmpi-dev") < post.index("tools/setup.sh")


def test_environment_isolates_python_and_points_at_the_gcm_build(recipe):
    environ = dict(line.split("=", 1) for line in recipe.environ)
    assert environ["PYTHONNOUSERSITE"] == "1"
    assert environ["PATH"].startswith("/opt/astrohpc/.venv/bin:")
    assert environ["HDF5_USE_FILE_LOCKING"] == "FALSE"
    assert environ["ASTROHPC_SPINUP_CACHE"].startswith("$HOME/")
    assert any(name.startswith("OMPI_MCA_") for name in environ)
    # the GCM is compiled in %post into the same ASTROHPC_CACHE jobs are given
    post = section_bodies(DEFINITION)["post"]
    assert environ["ASTROHPC_CACHE"] == exported(post, "ASTROHPC_CACHE") == "/opt/astrohpc/cache"
    assert post.index("ASTROHPC_CACHE") < post.index("gcm build")


def test_runscript_execs_astrohpc_with_all_arguments(recipe):
    assert re.fullmatch(r'exec (/opt/astrohpc/\.venv/bin/)?astrohpc "\$@"', recipe.cmd), recipe.cmd


def test_test_section_runs_the_doctor_and_the_selftest(recipe):
    # spython turns a multi-line %test into a script written by echo lines in the install steps
    assert recipe.test == "/bin/bash /tests.sh"
    script = [line for line in recipe.install if line.endswith(">> /tests.sh")]
    assert any("astrohpc doctor" in line for line in script)
    assert any("/opt/astrohpc/tools/container_selftest.py" in line for line in script)
    # the selftest is in the repository and copied into the image by %files
    assert (REPO / "tools" / "container_selftest.py").is_file()
    assert "tools /opt/astrohpc/tools" in recipe.files


def test_files_copied_into_the_image_exist(recipe):
    for line in recipe.files:
        assert (REPO / line.split()[0]).exists(), line


def test_labels_and_help(recipe):
    labels = dict(line.split(None, 1) for line in recipe.labels)
    for key in ("title", "version", "source", "description"):
        assert labels.get(f"org.opencontainers.image.{key}"), key
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    assert labels["org.opencontainers.image.version"] == cfg["metadata"]["version"]
    help_text = section_bodies(DEFINITION)["help"]
    assert "apptainer run --nv astrohpc.sif train CONFIG" in help_text
    assert "srun --mpi=pmix" in help_text and "--bind" in help_text


def test_container_selftest_passes_on_this_machine():
    # exactly what %test runs after the doctor: one AdamW step of a tiny U-Net on the CPU
    done = subprocess.run([sys.executable, str(REPO / "tools" / "container_selftest.py")], cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "container selftest ok" in done.stdout and "parameter tensors updated" in done.stdout


@pytest.mark.parametrize("text, match", [
    ("Bootstrap: docker\nFrom: debian\n%enviroment\n  export A=1\n",
     r":3: unknown section %enviroment \(did you mean %environment"),
    ("From: debian\n%post\n  true\n", r"no 'Bootstrap:' line"),
    ("Bootstrap: docker\n%post\n  true\n", r"needs a 'From:' line"),
    ("Bootstrap: dockr\nFrom: x\n", r"unknown bootstrap agent 'dockr'"),
])
def test_bad_definitions(tmp_path, text, match):
    path = tmp_path / "bad.def"
    path.write_text(text)
    with pytest.raises(AstrohpcError, match=match):
        check_definition(path)


def test_a_build_cache_jobs_cannot_find_is_refused(tmp_path):
    path = tmp_path / "cache.def"
    path.write_text("Bootstrap: docker\nFrom: debian\n%environment\n  export PATH=/x:$PATH\n"
                    "%post\n  astrohpc gcm build\n")
    with pytest.raises(AstrohpcError, match="jobs in the image would not find the build"):
        check_definition(path)
