"""Cluster profiles (configs/cluster/NAME.yaml), chosen when a job is submitted, not written into
the job's config.

A config file describes the work (and may size its jobs: `slurm.time`, `slurm.mem`); the profile
describes the site (partition, account, GPUs, container, module loads). `load_job_config` merges
them as `profile < config file < overrides`: the profile *replaces* any other, so nothing of the
local cluster's settings (`max_parallel: 2`, the debug partition) leaks into a job for another.

The profile is, first found: the `cluster` argument (`--cluster NAME` or a path), the
ASTROHPC_CLUSTER variable, the profile the config itself extends (older configs), `local`.
A config that extends one profile while another is asked for is refused: drop its `extends`
line of configs/cluster/.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

from astrohpc.config import EXTENDS_KEY, load_config
from astrohpc.errors import ConfigError

CLUSTER_DIR = Path(__file__).resolve().parents[2] / "configs" / "cluster"
CLUSTER_VARIABLE = "ASTROHPC_CLUSTER"
DEFAULT_CLUSTER = "local"


def profile_path(name: str | Path) -> Path:
    """configs/cluster/NAME.yaml, or `name` itself when it is a file; ConfigError listing the profiles."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    path = CLUSTER_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CLUSTER_DIR.glob("*.yaml"))
        raise ConfigError(f"cluster profile {name!r} not found; profiles in configs/cluster: {', '.join(known)} "
                          "(or give the path of a YAML file with a slurm: section)")
    return path.resolve()


def read_profile(name: str | Path) -> dict[str, Any]:
    """The raw {"slurm": {...}} of a profile; ConfigError for any other section."""
    path = profile_path(name)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or set(data) - {"slurm"}:
        extra = sorted(set(data) - {"slurm"}) if isinstance(data, dict) else [type(data).__name__]
        raise ConfigError(f"{path}: a cluster profile holds only a slurm: section, found {', '.join(extra)}")
    return {"slurm": dict(data.get("slurm") or {})}


def extended_profiles(config: str | Path) -> list[Path]:
    """The files under configs/cluster that `config` extends, directly or through its bases."""
    found: list[Path] = []
    pending, seen = [Path(config).resolve()], set()
    while pending:
        path = pending.pop()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        bases = data.get(EXTENDS_KEY) if isinstance(data, dict) else None
        for base in [bases] if isinstance(bases, str) else bases or []:
            resolved = (path.parent / base).resolve()
            if resolved.parent == CLUSTER_DIR:
                found.append(resolved)
            else:
                pending.append(resolved)
    return found


def choose_profile(config: Optional[str | Path], cluster: Optional[str | Path] = None) -> Optional[Path]:
    """The profile a job of `config` uses (order: module doc); None when the config extends it already."""
    wanted = cluster or os.environ.get(CLUSTER_VARIABLE) or None
    extended = extended_profiles(config) if config is not None else []
    if extended:
        if wanted is None or {profile_path(wanted)} == set(extended):
            return None  # the config's own extends line brings it in
        names = ", ".join(p.stem for p in extended)
        raise ConfigError(f"{config} extends the cluster profile {names} but {Path(str(wanted)).stem} was asked for "
                          f"(--cluster or ${CLUSTER_VARIABLE}); remove the 'extends: ../cluster/{names}.yaml' line: "
                          "the profile is chosen when the job is submitted")
    return profile_path(wanted or DEFAULT_CLUSTER)


def load_job_config(config: Optional[str | Path], overrides: Iterable[str] = (),
                    cluster: Optional[str | Path] = None, binds: Iterable[str] = ()) -> Any:
    """load_config with the chosen cluster profile under the file (profile < file < overrides);
    `binds` are added to slurm.binds (--bind on the command line adds to the profile's)."""
    profile = choose_profile(config, cluster)
    cfg = load_config(config, list(overrides), base=read_profile(profile) if profile else None)
    cfg.slurm.binds = [*cfg.slurm.binds, *binds]
    return cfg
