"""Check each component of the stack and say in one line what was found.

Library side: `run_checks()` returns CheckResult rows; the CLI prints them and decides the
exit status from which components the user requires.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable

# Components every astrohpc install needs; the rest are required only when asked for.
CORE = ("python", "numpy", "torch", "mpi", "h5py", "netcdf", "yaml")


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


def _run(cmd: list[str], timeout: float = 10.0) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None


def _version_of(module: str) -> str:
    mod = importlib.import_module(module)
    return getattr(mod, "__version__", "?")


def check_python() -> CheckResult:
    ok = sys.version_info >= (3, 10)
    return CheckResult("python", ok, f"{sys.version.split()[0]} at {sys.executable}"
                       + ("" if ok else " (astrohpc needs >= 3.10)"))


def check_numpy() -> CheckResult:
    return CheckResult("numpy", True, f"numpy {_version_of('numpy')}, scipy {_version_of('scipy')}")


def check_yaml() -> CheckResult:
    return CheckResult("yaml", True, f"pyyaml {_version_of('yaml')}")


def nvidia_driver() -> str | None:
    """The NVIDIA driver version nvidia-smi reports ("550.54.15"), or None without a driver."""
    smi = shutil.which("nvidia-smi")
    done = _run([smi, "--query-gpu=driver_version", "--format=csv,noheader"]) if smi else None
    if done is None or done.returncode != 0 or not done.stdout.strip():
        return None
    return done.stdout.splitlines()[0].strip()


def check_torch() -> CheckResult:
    import torch

    from astrohpc.train.distributed import allocated_gpus

    built = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    driver = nvidia_driver()
    parts = [f"torch {torch.__version__} ({built})", f"NVIDIA driver {driver}" if driver else "no NVIDIA driver"]
    ok = True
    if torch.cuda.is_available():
        parts.append(f"{torch.cuda.device_count()} GPU(s): {torch.cuda.get_device_name(0)}")
        nccl = torch.cuda.nccl.version() if hasattr(torch.cuda, "nccl") else None
        parts.append(f"NCCL {'.'.join(map(str, nccl)) if isinstance(nccl, tuple) else nccl}")
        parts.append(f"bf16 {'yes' if torch.cuda.is_bf16_supported() else 'no'}")
    else:
        given = allocated_gpus(os.environ)
        parts.append("no CUDA device" + (f", although {given[0]}={given[1]} allocated GPUs: training would "
                                         "refuse to start (a CPU build, an old driver or no --nv)" if given else ""))
        ok = given is None
    import torch.distributed as dist

    backends = [b for b, on in (("gloo", dist.is_gloo_available()), ("nccl", dist.is_nccl_available()),
                                ("mpi", dist.is_mpi_available())) if on]
    parts.append(f"distributed backends: {', '.join(backends) or 'none'}")
    return CheckResult("torch", ok, "; ".join(parts))


def check_mpi() -> CheckResult:
    from mpi4py import MPI

    lib = MPI.Get_library_version().splitlines()[0].strip()
    launcher = shutil.which("mpirun") or shutil.which("mpiexec")
    detail = f"mpi4py {_version_of('mpi4py')}; {lib}; launcher {launcher or 'not found'}"
    return CheckResult("mpi", launcher is not None, detail)


def check_h5py() -> CheckResult:
    import h5py

    parallel = h5py.get_config().mpi
    detail = f"h5py {h5py.__version__}, HDF5 {h5py.version.hdf5_version}, parallel (mpio) {'yes' if parallel else 'NO'}"
    if not parallel:
        detail += " — rebuild with 'make setup' (h5py built with HDF5_MPI=ON)"
    return CheckResult("h5py", parallel, detail)


def check_netcdf() -> CheckResult:
    import netCDF4
    import xarray

    return CheckResult("netcdf", True, f"netCDF4 {netCDF4.__version__} (lib {netCDF4.__netcdf4libversion__}), "
                       f"xarray {xarray.__version__}")


def check_slurm() -> CheckResult:
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return CheckResult("slurm", False, "client not found (no sinfo on PATH); locally: tools/local-slurm.sh start")
    version = _run([sinfo, "--version"])
    ping = _run(["scontrol", "ping"])
    conf = os.environ.get("SLURM_CONF", "default /etc/slurm/slurm.conf")
    reachable = ping is not None and ping.returncode == 0 and "UP" in ping.stdout
    found = re.search(r"\d+\.\d+(\.\d+)?", version.stdout) if version else None
    text = f"Slurm {found.group(0) if found else '? (sinfo --version said nothing)'}; SLURM_CONF={conf}; controller "
    if reachable:
        nodes = _run([sinfo, "-h", "-o", "%D %T"])
        text += f"UP; nodes: {nodes.stdout.strip().replace(chr(10), ', ') if nodes else '?'}"
    else:
        text += "not reachable (start it: eval \"$(tools/local-slurm.sh env)\" after tools/local-slurm.sh start)"
    return CheckResult("slurm", reachable, text)


def check_submitit() -> CheckResult:
    return CheckResult("submitit", True, f"submitit {_version_of('submitit')}")


def check_exoplasim() -> CheckResult:
    import importlib.metadata

    try:
        version = importlib.metadata.version("exoplasim")
    except importlib.metadata.PackageNotFoundError:
        return CheckResult("exoplasim", False, "not installed (pip install exoplasim==3.4.2, needs gfortran)")
    gfortran = shutil.which("gfortran")
    compiler = f"at {gfortran}" if gfortran else "NOT FOUND (apt-get install gfortran)"
    return CheckResult("exoplasim", gfortran is not None, f"exoplasim {version}; gfortran {compiler}")


def check_apptainer() -> CheckResult:
    exe = shutil.which("apptainer") or shutil.which("singularity")
    if exe is None:
        return CheckResult("apptainer", False, "not found (on a cluster: module load apptainer)")
    version = _run([exe, "--version"])
    return CheckResult("apptainer", True, version.stdout.strip() if version else exe)


CHECKS: dict[str, Callable[[], CheckResult]] = {
    "python": check_python,
    "numpy": check_numpy,
    "yaml": check_yaml,
    "torch": check_torch,
    "mpi": check_mpi,
    "h5py": check_h5py,
    "netcdf": check_netcdf,
    "slurm": check_slurm,
    "submitit": check_submitit,
    "exoplasim": check_exoplasim,
    "apptainer": check_apptainer,
}


def run_checks(names: tuple[str, ...] | None = None) -> list[CheckResult]:
    """Run the named checks (all by default); an import failure becomes a failed row."""
    results = []
    for name in names or tuple(CHECKS):
        try:
            results.append(CHECKS[name]())
        except Exception as exc:  # a broken install must be reported, not crash the doctor
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results
