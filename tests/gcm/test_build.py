"""The compile cache and its lock (no compile here: the smoke fixture builds once per session)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests_gcm_paths import SMOKE_CONFIG

from astrohpc.errors import GCMError
from astrohpc.gcm.build import BuildKey, build_lock, cache_dir_for, exoplasim_package_dir, require_build


def test_array_tasks_never_compile_they_say_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("ASTROHPC_CACHE", str(tmp_path))  # an empty cache
    key = BuildKey(resolution="T21", levels=10, ncpus=1)
    with pytest.raises(GCMError, match="astrohpc gcm build"):
        require_build(key)
    assert not any(tmp_path.iterdir()), "require_build must not create or compile anything"
    assert cache_dir_for(key).parent == tmp_path / "exoplasim"


def test_build_keys_are_checked():
    with pytest.raises(GCMError, match="T42"):
        BuildKey(resolution="T22")
    with pytest.raises(GCMError, match="precision"):
        BuildKey(precision=2)
    with pytest.raises(GCMError, match="levels must be >= 6"):
        BuildKey(levels=5)
    assert BuildKey(levels=20).executable_name == "most_plasim_t21_l20_p1.x"


def test_two_processes_never_hold_the_build_lock_at_once():
    package = exoplasim_package_dir()
    contender = ("from pathlib import Path; from astrohpc.gcm.build import build_lock\n"
                 f"with build_lock(Path({str(package)!r}), timeout_s=1.0): print('got it')")
    with build_lock(package):
        proc = subprocess.run([sys.executable, "-c", contender], capture_output=True, text=True)
    assert proc.returncode != 0 and "waited 1 s for another ExoPlaSim build" in proc.stderr
    proc = subprocess.run([sys.executable, "-c", contender], capture_output=True, text=True)
    assert proc.returncode == 0 and "got it" in proc.stdout  # released when the holder is done


@pytest.mark.exoplasim
def test_a_fresh_package_is_restored_from_the_cache_without_compiling(tmp_path, smoke_gcm_run):
    """What a fresh CI virtual environment sees: an unconfigured exoplasim next to a warm cache."""
    import shutil

    fresh = tmp_path / "site" / "exoplasim"
    shutil.copytree(exoplasim_package_dir(), fresh, ignore=shutil.ignore_patterns(
        "firstrun", "most_compiler*", "pyfft*.so", "most_plasim_*.x", "bld", ".astrohpc-build.lock", "__pycache__"))
    program = """if True:
        import json, sys
        import exoplasim
        from astrohpc.config import load_config
        from astrohpc.gcm.build import BuildKey, ensure_build, find_build
        from astrohpc.gcm.run import run_simulation
        fresh, config, run_dir = sys.argv[1:]
        assert exoplasim.__file__.startswith(fresh), exoplasim.__file__
        assert find_build(BuildKey()) is None
        build, compiled = ensure_build(BuildKey())
        summary = run_simulation(load_config(config, ["gcm.snapshot_interval_days=0"]), run_dir)
        print(json.dumps({"compiled": compiled, "ready": find_build(BuildKey()) is not None,
                          "run": summary["status"]}))
    """
    env = {**__import__("os").environ, "PYTHONPATH": str(fresh.parent)}
    proc = subprocess.run([sys.executable, "-c", program, str(fresh), str(SMOKE_CONFIG), str(tmp_path / "run")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == '{"compiled": false, "ready": true, "run": "finished"}'
    assert (fresh / "firstrun").is_file() and any(fresh.glob("pyfft.*.so"))


def test_a_restored_package_is_reconfigured_before_a_new_compile(tmp_path):
    """Restored from the cache (configure products, no plasim/bld), a package must configure again
    before compiling another resolution: ExoPlaSim's compile.sh without plasim/bld deletes files."""
    from astrohpc.gcm.build import reconfigure_if_unbuilt

    package = tmp_path / "exoplasim"
    (package / "plasim").mkdir(parents=True)
    (package / "firstrun").touch()
    assert reconfigure_if_unbuilt(package) is True
    assert not (package / "firstrun").exists()
    (package / "firstrun").touch()
    (package / "plasim" / "bld").mkdir()
    assert reconfigure_if_unbuilt(package) is False
    assert (package / "firstrun").exists()
