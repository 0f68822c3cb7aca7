"""The cube whose runs a study of an exported model scores: the training cube, or `study.cube`.

Without `study.cube`, the parity, rollout and calibration studies score held-out runs of the
cube the model was trained on (the export's `cube`), read by the export's channel plan. With it,
they score runs of that cube instead — a colleague's runs, converted separately — matched to the
model's layout, which the export carries (astrohpc.data.match): channels by variable, level and
units; the grid; the static fields; the planet parameters the model reads, normalised with the
export's own transform, mean and std; the states' interval against the emulator's step, and which
variables are means over the step. Each difference is one DataError naming the cube and the fix.

A cube is the training cube when its cube_id (written at conversion, kept by copies) is the
export's, or when it is the same file: its runs are then held out only if they were not training
runs. Runs of any other cube are held out whatever their names (two sweeps both name their tasks
task-0000 …).

The baselines (climatology, nearest run, regression) always come from the training runs: scoring
another cube needs the training cube at the path its export recorded (`training_cube`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.errors import ConfigError, DataError


@dataclass
class StudiedCube:
    """path; meta (its CubeMeta); channels: this cube's channels of the model's, in the model's
    order; foreign: not the training cube."""

    path: Path
    meta: Any
    channels: list[int]
    foreign: bool

    @property
    def where(self) -> str:
        return f"study.cube {self.path}"

    def provenance(self) -> dict[str, Any]:
        """Which cube the studied runs came from (every study output records it)."""
        return {"path": str(self.path.resolve()), "cube_id": self.meta.cube_id, "training_cube": not self.foreign}


def same_cube(meta: Any, other: Any) -> bool:
    """One cube: the same cube_id (a copy keeps it), else the same file."""
    if meta.cube_id and other.cube_id:
        return meta.cube_id == other.cube_id
    return Path(meta.path).resolve() == Path(other.path).resolve()


def studied_cube(study: Any, info: dict[str, Any], path: Optional[str] = None) -> StudiedCube:
    """The cube of the studied runs: `path` (a task's, resolved when the study was planned), else
    study.cube, else the training cube recorded in the export `info` (as it always was)."""
    from astrohpc.data.cube import read_meta
    from astrohpc.train.export import training_meta

    channels = list(info["plan"]["cube_channels"])
    given = path or study.cube
    if not given:
        return StudiedCube(Path(info["cube"]), read_meta(info["cube"]), channels, False)
    cube = Path(given)
    if not cube.is_file():
        raise DataError(f"study.cube {cube}: no such cube; give a cube of the runs to score, converted with the "
                        "model's data settings (`astrohpc data convert … --config` its export's `data:`)")
    meta = read_meta(cube, stats=False)
    model_meta = training_meta(info)
    if same_cube(meta, model_meta):
        return StudiedCube(cube, meta, channels, False)
    return StudiedCube(cube, meta, match_export(info, meta, f"study.cube {cube}"), True)


def match_export(info: dict[str, Any], meta: Any, where: str) -> list[int]:
    """`meta`'s channels of the model exported as `info`, after every check of the module doc."""
    from astrohpc.data.match import check_grid, match_channels, match_params, match_static
    from astrohpc.train.export import training_meta

    model_meta = training_meta(info)
    plan = info["plan"]
    check_grid(model_meta, meta, where)
    channels = match_channels(model_meta, list(plan["cube_channels"]), meta, where)
    match_static(model_meta, list(plan["static"]), meta, where)
    match_params(model_meta, info["param_norm"], meta, where)
    model = info["config"]["model"]
    if model["task"] == "emulator" or model.get("spinup_steps"):
        _check_interval(model_meta, meta, where)
    variables = set(plan["variables"])
    ours, theirs = set(model_meta.step_means) & variables, set(meta.step_means) & variables
    if ours != theirs:
        raise DataError(f"{where}: {', '.join(sorted(ours ^ theirs))} are step means in one cube and snapshots in "
                        f"the other (the model's step means: {', '.join(sorted(ours)) or 'none'}) — convert with "
                        "the model's data.step_mean_variables")
    return channels


def _intervals(meta: Any) -> np.ndarray:
    """Every interval between two consecutive states of every run, days."""
    rows = np.atleast_2d(np.asarray(meta.time_days, np.float64))
    return np.concatenate([np.diff(row[np.isfinite(row)]) for row in rows])


def _check_interval(model_meta: Any, meta: Any, where: str) -> None:
    """DataError when the cube's states are not as far apart as the model's (the emulator's step)."""
    ours, theirs = _intervals(model_meta), _intervals(meta)
    if ours.size == 0 or theirs.size == 0:
        return
    if not np.allclose(theirs, ours[0], rtol=1e-6, atol=1e-9):
        found = np.unique(np.round(theirs, 6)).tolist()
        raise DataError(f"{where}: its states are {found} days apart, the model's {ours[0]:g} days (its step) — "
                        f"convert the runs' output every {ours[0]:g} days")


def studied_runs(study: Any, info: dict[str, Any], cube: Optional[StudiedCube]) -> list[str]:
    """The names of the runs to score: study.runs, else the export's test runs (the training cube,
    or `cube` None: study.cube unset) or every run (another cube). ConfigError for a training run
    of the training cube, or a run `cube` lacks."""
    if cube is not None and cube.foreign:
        runs = list(study.runs) or list(cube.meta.run_names)
    else:
        runs = list(study.runs) or list(info["run_split"]["test"])
        trained = set(info["run_split"]["train"])
        seen = [r for r in runs if r in trained]
        if seen:
            raise ConfigError(f"study.runs {', '.join(seen)} were training runs of {study.model}; parity is measured "
                              "on held-out runs only")
    unknown = [r for r in runs if cube is not None and r not in cube.meta.run_names]
    if unknown:
        raise ConfigError(f"{cube.where}: no run {', '.join(unknown[:5])} (study.runs); its runs: "
                          f"{', '.join(cube.meta.run_names[:12])}")
    return runs


def study_tasks(study: Any) -> tuple[list[dict[str, Any]], dict[str, Any], Optional[StudiedCube]]:
    """(tasks, the export's info, the cube of the runs) of a study with one task per studied run
    (parity, rollout). A task is {"run": name}, and with study.cube also the cube's resolved path
    ("cube"), so array tasks started anywhere read the same file. Without study.cube the cube is
    None: the training cube is not opened when planning (as it never was)."""
    from astrohpc.train.export import read_export

    if not study.model:
        raise ConfigError("study.model is not set: give RUN_DIR/export/best.pt of `astrohpc train`")
    info = read_export(study.model)
    if not study.cube:
        return [{"run": r} for r in studied_runs(study, info, None)], info, None
    cube = studied_cube(study, info)
    path = str(cube.path.resolve())
    return [{"run": r, "cube": path} for r in studied_runs(study, info, cube)], info, cube


def training_cube(info: dict[str, Any], needs: str) -> Any:
    """The training cube's CubeMeta, read beside another cube's runs because `needs` (a clause: what
    comes from its runs); DataError saying so when it is gone from the path its export recorded,
    or another cube is there."""
    from astrohpc.data.cube import read_meta
    from astrohpc.train.export import training_meta

    path = Path(info["cube"])
    if not path.is_file():
        raise DataError(f"{path}: the model's training cube is gone, and {needs} — put it back at that path to "
                        "score study.cube")
    meta = read_meta(path)
    if not same_cube(meta, training_meta(info)):
        raise DataError(f"{path}: not the cube the model was trained on (cube_id {meta.cube_id}, the export's "
                        f"{training_meta(info).cube_id}), and {needs} — put the training cube back at that path")
    return meta


def check_sweep(sweep: str | Path, cube: StudiedCube, runs: list[str]) -> None:
    """ConfigError unless the sweep folder `sweep` produced `runs` of `cube`: a task that wrote each
    run (by name), with the run's planet parameters. Its task configs rerun the GCM twin and its
    cube of interval means gives the GCM's TOA flux, so another sweep's same-named run would be
    scored as this one."""
    from astrohpc.config import to_dict
    from astrohpc.gcm.design import apply_point
    from astrohpc.gcm.sweep import load_table

    sweep = Path(sweep)
    table = load_table(sweep)
    tasks = {Path(t["run_dir"]).name: t for t in table["tasks"]}
    lacking = [r for r in runs if r not in tasks]
    if lacking:
        raise ConfigError(f"study.sweep {sweep} wrote no run {', '.join(lacking[:5])} of {cube.where}: give the "
                          "sweep that produced the cube's runs, or leave study.sweep unset with study.twin=false")
    for name in runs:
        planet = to_dict(apply_point(table["base_config"], tasks[name]["point"], f"{sweep}: {name}"))["planet"]
        r = cube.meta.run_names.index(name)
        differ = [f"{k} {float(planet[k]):g} in the sweep, {float(v[r]):g} in the cube"
                  for k, v in cube.meta.params.items() if isinstance(planet.get(k), (int, float))
                  and np.isfinite(v[r]) and not np.isclose(float(planet[k]), float(v[r]), rtol=1e-9, atol=0.0)]
        if differ:
            raise ConfigError(f"study.sweep {sweep}: its run {name} is not {cube.where}'s ({'; '.join(differ[:3])}) "
                              "— give the sweep that produced the cube's runs, or leave study.sweep unset with "
                              "study.twin=false")
