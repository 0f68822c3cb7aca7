"""The Apptainer definition is checked for what Apptainer would silently accept, and read back
with an outside parser (spython) for what the image promises: the tested Debian base, one torch
(a CUDA wheel from an index that carries that release), the
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
from astrohpc.launch.apptainer import TORCH_CUDA_BUILDS, check_definition, exported, section_bodies, torch_pin_and_index

REPO = Path(__file__).resolve().parents[2]
DEFINITION = REPO / "Apptainer.def"


@pytest.fixture(scope="module")
def recipe():
    """The definition as spython reads it (one layer: no multi-stage build)."""
    layers = list(SingularityParser(str(DEFINITION)).recipe.values())
    assert len(layers) == 1
    return layers[0]


def _pin(package: str) -> str:
    """The tested version of `package` (constraints.txt, which make setup installs)."""
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.startswith(f"{package}=="):
            return line.split("==")[1]
    raise AssertionError(f"{package} is not pinned in constraints.txt")


def test_project_definition_is_well_formed():
    info = check_definition(DEFINITION)
    assert info["bootstrap"] == "docker"
    for section in ("files", "environment", "post", "runscript", "test", "labels", "help"):
        assert section in info["sections"].split(",")
    # the image installs through the same script as a developer machine
    assert "tools/setup.sh" in section_bodies(DEFINITION)["post"]


def test_base_is_the_tested_debian_and_carries_no_torch_of_its_own(recipe):
    base = recipe.fromHeader
    assert base == check_definition(DEFINITION)["from"] == "debian:bookworm-slim"
    # one torch only: the CUDA wheel of %post (a pytorch/* or nvidia/cuda base would add several GB unused)
    assert "pytorch" not in base and "cuda" not in base


def test_post_installs_the_pinned_torch_as_a_cuda_wheel_that_exists(recipe):
    bodies = section_bodies(DEFINITION)
    post = bodies["post"]
    assert f'"torch=={_pin("torch")}"' in post
    assert re.search(r"--index-url \"\{\{ TORCH_INDEX \}\}\"", post)
    # the index %arguments gives carries that release (2.13: cu126 and cu130, no cu128)
    version, build = torch_pin_and_index(bodies)
    assert version == _pin("torch") and build in TORCH_CUDA_BUILDS[version.rsplit(".", 1)[0]], (version, build)
    # spython (an outside parser) reads the same install line from %post
    line = next(line for line in recipe.install if "--index-url" in line)
    assert f"torch=={version}" in line and "{{ TORCH_INDEX }}" in line
    # Open MPI and parallel HDF5 from apt, before setup.sh builds mpi4py and h5py against them
    for package in ("openmpi-bin", "libopenmpi-dev", "libhdf5-openmpi-dev", "gfortran", "python3-venv"):
        assert package in post
    assert post.index("libhdf5-openmpi-dev") < post.index("bash tools/setup.sh")
    # torch first: setup.sh then keeps the CUDA torch
    assert post.index('pip install --no-cache-dir "torch==') < post.index("bash tools/setup.sh")


@pytest.mark.parametrize("index, ok", [("cu126", True), ("cu130", True), ("cu128", False), ("cu121", False)])
def test_a_torch_index_without_that_release_is_refused(tmp_path, index, ok):
    path = tmp_path / "torch.def"
    path.write_text(DEFINITION.read_text().replace("whl/cu126", f"whl/{index}"))
    if ok:
        check_definition(path)
    else:
        with pytest.raises(AstrohpcError, match="ships CUDA wheels for cu126, cu130 only"):
            check_definition(path)


def test_setup_ranges_admit_the_tested_set():
    """setup.cfg holds ranges (a site's h5py or CUDA torch stays); constraints.txt pins each inside them."""
    from packaging.requirements import Requirement

    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in cfg["options.extras_require"].values():
        lines += extra.splitlines()
    requirements = [Requirement(x.strip()) for x in lines if x.strip() and not x.strip().startswith("#")]
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            pin = Requirement(line)
            pins[pin.name.lower()] = pin
    for req in requirements:
        pin = pins.get(req.name.lower())
        assert pin is not None, f"{req.name} has no line in constraints.txt"
        assert req.specifier.contains(next(iter(pin.specifier)).version), f"{pin} is outside setup.cfg's {req}"
    # ranges, not pins, where a site brings its own build
    for name in ("torch", "h5py", "mpi4py", "numpy"):
        assert all(s.operator != "==" for r in requirements if r.name == name for s in r.specifier), name


def test_pmix_settings_and_the_mpi_model_are_documented(recipe):
    environ = dict(line.split("=", 1) for line in recipe.environ)
    assert environ["PMIX_MCA_gds"] == "hash" and environ["PMIX_MCA_psec"] == "native"
    assert "hybrid model" in DEFINITION.read_text() and "srun --mpi=pmix" in section_bodies(DEFINITION)["help"]


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
