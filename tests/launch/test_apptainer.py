"""The Apptainer definition is checked for what Apptainer would silently accept."""

from __future__ import annotations

from pathlib import Path

import pytest

from astrohpc.errors import AstrohpcError
from astrohpc.launch.apptainer import check_definition

REPO = Path(__file__).resolve().parents[2]


def test_project_definition_is_well_formed():
    info = check_definition(REPO / "Apptainer.def")
    assert info["bootstrap"] == "docker" and info["from"].startswith("debian:bookworm")
    for section in ("files", "environment", "post", "runscript", "test"):
        assert section in info["sections"].split(",")
    # the image installs through the same script as a developer machine
    assert "tools/setup.sh" in (REPO / "Apptainer.def").read_text()


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


def test_project_definition_builds_the_gcm_where_jobs_look():
    from astrohpc.launch.apptainer import exported, section_bodies

    bodies = section_bodies(REPO / "Apptainer.def")
    at_build, at_run = exported(bodies["post"], "ASTROHPC_CACHE"), exported(bodies["environment"], "ASTROHPC_CACHE")
    assert at_build == at_run == "/opt/astrohpc/cache"
    # the export comes before the compile in %post
    assert bodies["post"].index("ASTROHPC_CACHE") < bodies["post"].index("gcm build")


def test_a_build_cache_jobs_cannot_find_is_refused(tmp_path):
    path = tmp_path / "cache.def"
    path.write_text("Bootstrap: docker\nFrom: debian\n%environment\n  export PATH=/x:$PATH\n"
                    "%post\n  astrohpc gcm build\n")
    with pytest.raises(AstrohpcError, match="jobs in the image would not find the build"):
        check_definition(path)
