"""Compile ExoPlaSim once, cache the result outside the clone, and find it again.

ExoPlaSim compiles into its own package folder (site-packages/exoplasim): a configure step
(`firstrun`, `most_compiler*`), f2py FFT modules (`pyfft*.so`) used by its postprocessor, and
one executable per (resolution, levels, CPUs) in `plasim/run/`. Two processes compiling at
once clobber each other's `plasim/bld/`, so every step here runs under one fcntl lock on the
package folder, and array tasks never compile: `require_build` raises GCMError instead.

The cache, `~/.cache/astrohpc/exoplasim/<version>-<resolution>-L<levels>-p<ncpu>-py<X.Y>/`
(or `$ASTROHPC_CACHE/exoplasim/...`), holds a copy of `plasim/run/` with the executable, the
configure products and the `.so` files; a fresh virtual environment is restored from it in
seconds instead of recompiling (~75 s). `BUILD.json`, written last, marks a complete entry.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from astrohpc.atomic_write import write_json
from astrohpc.errors import GCMError
from astrohpc.gcm.settings import SPECTRAL_TRUNCATIONS, check_build_settings

# Files that ExoPlaSim's configure step writes into its package folder.
CONFIGURE_PRODUCTS = ("most_compiler", "most_compiler_mpi", "most_precision_options",
                      "most_precision_optionsx", "most_debug_options", "F90_INTEGER", "F90_REAL")
STAMP = "BUILD.json"
LOCK_NAME = ".astrohpc-build.lock"


@dataclass(frozen=True)
class BuildKey:
    """What one compiled executable depends on."""

    resolution: str = "T21"
    levels: int = 10
    ncpus: int = 1
    precision: int = 8

    def __post_init__(self) -> None:
        try:
            check_build_settings(self.resolution, self.levels, self.ncpus, self.precision)
        except ValueError as exc:
            raise GCMError(str(exc)) from None

    @property
    def executable_name(self) -> str:
        return f"most_plasim_t{SPECTRAL_TRUNCATIONS[self.resolution]}_l{self.levels}_p{self.ncpus}.x"

    def cache_name(self, version: str) -> str:
        py = f"{sys.version_info.major}.{sys.version_info.minor}"
        prec = "" if self.precision == 8 else f"-r{self.precision}"
        return f"{version}-{self.resolution}-L{self.levels}-p{self.ncpus}{prec}-py{py}"


@dataclass(frozen=True)
class Build:
    """A usable build: `source` is the folder handed to exoplasim.Model(source=...)."""

    key: BuildKey
    cache_dir: Path
    version: str

    @property
    def source(self) -> Path:
        return self.cache_dir / "run"

    @property
    def executable(self) -> Path:
        return self.source / self.key.executable_name


def exoplasim_package_dir() -> Path:
    """The installed exoplasim package folder (where it compiles); GCMError if not installed."""
    spec = importlib.util.find_spec("exoplasim")
    if spec is None or spec.origin is None:
        raise GCMError("exoplasim is not installed in this Python: pip install exoplasim==3.4.2 netCDF4")
    return Path(spec.origin).parent


def exoplasim_version() -> str:
    try:
        return importlib.metadata.version("exoplasim")
    except importlib.metadata.PackageNotFoundError:
        raise GCMError("exoplasim is not installed in this Python: pip install exoplasim==3.4.2 netCDF4") from None


def cache_root() -> Path:
    """`$ASTROHPC_CACHE/exoplasim`, else `~/.cache/astrohpc/exoplasim`."""
    base = os.environ.get("ASTROHPC_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "astrohpc") / "exoplasim"


def cache_dir_for(key: BuildKey) -> Path:
    return cache_root() / key.cache_name(exoplasim_version())


@contextlib.contextmanager
def build_lock(package_dir: Path, timeout_s: float = 1800.0) -> Iterator[None]:
    """Hold an exclusive fcntl lock on the exoplasim package folder (one compile at a time)."""
    lock_path = package_dir / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise GCMError(f"cannot create the build lock {lock_path}: {exc} (is the exoplasim package "
                       "folder writable? install exoplasim into a virtual environment you own)") from None
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise GCMError(f"waited {timeout_s:.0f} s for another ExoPlaSim build holding "
                                   f"{lock_path}; if none is running, remove that file") from None
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _package_configured(package_dir: Path) -> bool:
    return ((package_dir / "firstrun").is_file()
            and all((package_dir / name).is_file() for name in ("most_compiler", "most_compiler_mpi"))
            and any(package_dir.glob("pyfft.*.so")))


def find_build(key: BuildKey) -> Build | None:
    """The cached build for `key` if it is complete and the package is configured, else None."""
    cache = cache_dir_for(key)
    build = Build(key=key, cache_dir=cache, version=exoplasim_version())
    if (cache / STAMP).is_file() and build.executable.is_file() and _package_configured(exoplasim_package_dir()):
        return build
    return None


def require_build(key: BuildKey) -> Build:
    """The build for `key`, or GCMError telling the user to run `astrohpc gcm build` (never compiles)."""
    build = find_build(key)
    if build is None:
        raise GCMError(
            f"no ExoPlaSim build for {key.resolution} L{key.levels} on {key.ncpus} CPU(s) in "
            f"{cache_dir_for(key)} (or the exoplasim package is not configured): run "
            f"'astrohpc gcm build CONFIG' once before running or submitting (array tasks never compile)")
    return build


def ensure_build(key: BuildKey, log_path: Path | None = None) -> tuple[Build, bool]:
    """Make the build for `key` available, compiling at most once; return (build, compiled_now).

    Under the lock: a complete cache entry is used (and restored into a fresh package folder);
    otherwise ExoPlaSim's own compile runs in a subprocess, its output goes to `build.log` in the
    cache entry, and the result is copied into the cache.
    """
    package = exoplasim_package_dir()
    cache = cache_dir_for(key)
    with build_lock(package):
        build = Build(key=key, cache_dir=cache, version=exoplasim_version())
        if (cache / STAMP).is_file() and build.executable.is_file():
            if not _package_configured(package):
                _restore_package(cache, package)
            return build, False
        _compile(key, package, cache, log_path)
        return build, True


def _restore_package(cache: Path, package: Path) -> None:
    """Copy configure products and f2py modules from the cache into a fresh package folder."""
    for path in (cache / "package").iterdir():
        shutil.copy2(path, package / path.name)
    (package / "firstrun").touch()
    if not _package_configured(package):
        raise GCMError(f"the ExoPlaSim cache {cache} is incomplete: remove it and run 'astrohpc gcm build' again")


def reconfigure_if_unbuilt(package: Path) -> bool:
    """Make ExoPlaSim run its configure step before compiling when the build tree is missing.

    A package restored from the cache holds the configure products but not `plasim/bld`, which
    only ExoPlaSim's configure step makes; its compile.sh run without that folder deletes files
    in the package folder itself. Removing `firstrun` makes exoplasim.Model configure first.
    Returns True when it did so.
    """
    if (package / "plasim" / "bld").is_dir() or not (package / "firstrun").exists():
        return False
    (package / "firstrun").unlink()
    return True


def _compile(key: BuildKey, package: Path, cache: Path, log_path: Path | None) -> None:
    for tool in ("gfortran", "gcc", "make"):
        if shutil.which(tool) is None:
            raise GCMError(f"'{tool}' not found on PATH: ExoPlaSim needs a Fortran toolchain "
                           "(Debian: apt-get install -y gfortran make; clusters: module load gcc)")
    if key.ncpus > 1 and shutil.which("mpif90") is None:
        raise GCMError("gcm.ncpus > 1 needs an MPI Fortran compiler (mpif90): apt-get install -y "
                       "openmpi-bin libopenmpi-dev, or module load openmpi")
    reconfigure_if_unbuilt(package)
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", dir=cache.parent))
    log_path = log_path or staging / "build.log"
    # exoplasim.Model compiles when the executable is missing; it needs a scratch workdir.
    script = ("import exoplasim; exoplasim.Model(resolution={r!r}, layers={l}, ncpus={n}, precision={p}, "
              "workdir={w!r}, modelname='build')").format(r=key.resolution, l=key.levels, n=key.ncpus,
                                                         p=key.precision, w=str(staging / "scratch"))
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run([sys.executable, "-c", script], cwd=staging, stdout=log,
                              stderr=subprocess.STDOUT)
    compiled = package / "plasim" / "run" / key.executable_name
    if proc.returncode == 0 and compiled.is_file():
        _ensure_pyfft(package, Path(log_path))
    if proc.returncode != 0 or not compiled.is_file() or not _package_configured(package):
        tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-15:])
        raise GCMError(f"ExoPlaSim compile failed (exit {proc.returncode}; executable "
                       f"{'present' if compiled.is_file() else 'missing'}); full log: {log_path}\n{tail}")
    shutil.rmtree(staging / "scratch", ignore_errors=True)
    shutil.copytree(package / "plasim" / "run", staging / "run")
    (staging / "package").mkdir()
    for name in CONFIGURE_PRODUCTS:
        if (package / name).is_file():
            shutil.copy2(package / name, staging / "package" / name)
    for so in package.glob("pyfft*.so"):
        shutil.copy2(so, staging / "package" / so.name)
    write_json(staging / STAMP, {
        "exoplasim_version": exoplasim_version(),
        "key": {"resolution": key.resolution, "levels": key.levels, "ncpus": key.ncpus,
                "precision": key.precision},
        "executable": key.executable_name,
        "compile_seconds": round(time.monotonic() - started, 1),
        "python": sys.version.split()[0],
        "gfortran": subprocess.run(["gfortran", "--version"], capture_output=True, text=True).stdout.split("\n")[0],
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    })
    if cache.exists():  # an incomplete earlier attempt (no stamp): replace it
        shutil.rmtree(cache)
    os.replace(staging, cache)


def _ensure_pyfft(package: Path, log_path: Path) -> None:
    """Build ExoPlaSim's f2py FFT modules with the meson backend when its own attempt left none.

    exoplasim 3.4.2 calls f2py's default (numpy.distutils) backend, which fails silently with
    setuptools >= 60; without these modules its postprocessor cannot write NetCDF.
    """
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    for module in ("pyfft", "pyfft991"):
        if any(package.glob(f"{module}.*.so")):
            continue
        if shutil.which("meson", path=env["PATH"]) is None or shutil.which("ninja", path=env["PATH"]) is None:
            raise GCMError("building ExoPlaSim's FFT module needs meson and ninja: pip install meson ninja")
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy2(package / f"{module}.f90", tmp)
            with open(log_path, "a", encoding="utf-8") as log:
                proc = subprocess.run([sys.executable, "-m", "numpy.f2py", "-c", "-m", module, f"{module}.f90",
                                       "--backend", "meson", "--f90flags=-O3"], cwd=tmp, env=env,
                                      stdout=log, stderr=subprocess.STDOUT)
            built = list(Path(tmp).glob(f"{module}.*.so"))
            if proc.returncode != 0 or not built:
                raise GCMError(f"f2py could not build ExoPlaSim's {module} module (exit {proc.returncode}); "
                               f"see {log_path}")
            shutil.copy2(built[0], package / built[0].name)


def build_info(build: Build) -> dict:
    """The BUILD.json record of a build."""
    return json.loads((build.cache_dir / STAMP).read_text())
