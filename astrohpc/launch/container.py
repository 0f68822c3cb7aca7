"""Wrap a task's command in `apptainer exec`, so that a job step runs inside the image.

    wrap(["astrohpc", "train", "cfg.yaml"], "astrohpc.sif", binds=["/scratch/me"])
    -> ["apptainer", "exec", "--nv", "--bind", "/scratch/me:/scratch/me", "astrohpc.sif",
        "astrohpc", "train", "cfg.yaml"]

The result is an argv list: render_sbatch joins it with shlex, nothing here quotes.

MPI and distributed training use the hybrid model. The launcher runs on the host and starts
one container per rank: `srun --mpi=pmix apptainer exec ... IMAGE CMD` (or the host's
`mpirun -n N apptainer exec ...`). The MPI library inside the image (Open MPI 4.1, see
Apptainer.def) wires up through the host launcher's PMIx (or PMI2) server, so the image's Open
MPI must have the same major version as the host's (4.x here); under srun, Slurm's PMIx plugin
must be one it can talk to (`srun --mpi=list`; `--mpi=pmi2` is the fallback).

`--nv` binds the host's NVIDIA driver into the container; the CUDA libraries and NCCL come from
the torch wheel inside the image, so the host contributes only the driver, which must support
the image's CUDA 12. DDP gradients go through NCCL; MPI carries parallel-HDF5 I/O and the
statistics reductions, over InfiniBand only where the image's UCX/verbs libraries work with the
host's adapters (over TCP otherwise: correct, slower).
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from astrohpc.errors import ConfigError

IMAGE_SCHEMES = ("docker://", "oras://", "library://")
BIND_OPTIONS = ("ro", "rw")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def wrap(argv: Sequence[str], image: str, binds: Sequence[str] = (), nv: bool = True,
         env: Mapping[str, str] | None = None) -> list[str]:
    """`apptainer exec [--nv] [--bind a:a,b:c] [--env K=V ...] IMAGE *argv` as an argv list.

    argv: the command to run inside the image (not empty). image: a path ending in .sif, or a
    docker://, oras:// or library:// URI, without whitespace. binds: "src[:dst[:ro|rw]]" each;
    a bare "src" is bound at the same path. nv: bind the host's NVIDIA driver (--nv). env:
    variables set inside the container (on top of the host environment Apptainer passes in).
    Raises ConfigError naming the fix for an empty command, a bad image name, a bind spec
    Apptainer would split or misread, an invalid variable name, a value with a comma or a quote.
    """
    if isinstance(argv, str) or not argv:
        raise ConfigError(f"container command must be a non-empty argv list, got {argv!r} "
                          "(e.g. ['astrohpc', 'train', 'cfg.yaml'])")
    check_image(image)
    command = ["apptainer", "exec"]
    if nv:
        command.append("--nv")
    if binds:
        command += ["--bind", ",".join(bind_spec(b) for b in binds)]
    for name, value in (env or {}).items():
        command += ["--env", env_assignment(name, value)]
    return [*command, image, *argv]


def check_image(image: str) -> None:
    """ConfigError unless `image` is a .sif file path or a docker://, oras:// or library:// URI, without
    whitespace (submitit's `slurm_python` joins the wrapped command with spaces, unquoted)."""
    if not isinstance(image, str) or not (image.endswith(".sif") or image.startswith(IMAGE_SCHEMES)):
        raise ConfigError(f"container image {image!r}: expected a path ending in .sif (apptainer build "
                          f"astrohpc.sif Apptainer.def) or a URI starting with {', '.join(IMAGE_SCHEMES)}")
    if any(c.isspace() for c in image):
        raise ConfigError(f"container image {image!r} contains whitespace: move or link the image to a path "
                          "without spaces")


def bind_spec(spec: str) -> str:
    """A bind spec `src[:dst[:opts]]` checked and made explicit (`src` -> `src:src`); ConfigError naming the fix."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"bind {spec!r}: expected 'src[:dst[:ro|rw]]', e.g. '/scratch/me:/data:ro'")
    if "," in spec:
        raise ConfigError(f"bind {spec!r} contains a comma: Apptainer splits --bind lists on commas; pass each "
                          "path as its own bind (binds=['/a', '/b']), or rename the folder")
    if any(c.isspace() for c in spec):
        raise ConfigError(f"bind {spec!r} contains whitespace: bind a parent folder whose path has none, or a "
                          "symlink to it without spaces")
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise ConfigError(f"bind {spec!r}: expected 'src[:dst[:ro|rw]]' (at most two colons, a source path first)")
    src, dst = parts[0], parts[1] if len(parts) > 1 else parts[0]
    if not dst.startswith("/"):
        raise ConfigError(f"bind {spec!r}: the destination {dst!r} must be an absolute path inside the container")
    if len(parts) == 3 and parts[2] not in BIND_OPTIONS:
        raise ConfigError(f"bind {spec!r}: unknown option {parts[2]!r}; one of {', '.join(BIND_OPTIONS)}")
    return ":".join([src, dst, *parts[2:]])


def env_assignment(name: str, value: str) -> str:
    """`NAME=value` for --env; ConfigError for a bad name or a value Apptainer would split or misparse."""
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ConfigError(f"container env name {name!r}: expected letters, digits and _ (not starting with a digit)")
    value = str(value)
    # Apptainer reads --env as comma-separated, CSV-quoted pairs: a comma splits, a double quote is a parse error
    if "," in value or '"' in value:
        raise ConfigError(f"container env {name}={value!r}: Apptainer's --env cannot carry a comma or a double "
                          f"quote; export APPTAINERENV_{name} in the job's environment instead (Apptainer passes "
                          f"it into the container as {name})")
    return f"{name}={value}"
