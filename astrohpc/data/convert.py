"""GCM NetCDF files -> one HDF5 datacube (layout: astrohpc.data.schema, docs/datacube.md).

Each *run* is one or more NetCDF files concatenated in time (a GCM run's output); several runs
(a sweep) become the cube's `run` axis with a table of each run's parameters. Everything is
checked before the first byte is written where it can be (names, grids, channels, times); the
cube is written to a temporary file and renamed only when complete, so an error leaves no
partial output.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from astrohpc.atomic_write import atomic_path
from astrohpc.checksum import sha256_file
from astrohpc.data import schema
from astrohpc.data.grid import area_weights, latitude_bounds
from astrohpc.data.settings import DataSettings
from astrohpc.data.sources import SourceInfo, inspect_source, load_source, load_static
from astrohpc.data.timeaxis import days_since_start
from astrohpc.data.validate import check_same_channels, check_same_grid
from astrohpc.errors import DataError

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"


@dataclass
class RunInput:
    """One run: its NetCDF files (concatenated in time, in this order) and its parameters."""

    name: str
    files: list[Path]
    params: dict[str, Any] = field(default_factory=dict)
    step_s: Optional[float] = None  # the GCM's integration step, s (unknown for plain files)
    output_interval_days: Optional[float] = None  # between records; the first is one interval after the start
    log_params: tuple[str, ...] = ()  # parameters the run's sweep sampled in log10 (sweep.log_scale)


def run_from_dir(run_dir: Path, kind: str) -> Optional[RunInput]:
    """A RunInput from a GCM run folder's summary.json; None when the run did not finish."""
    run_dir = Path(run_dir)
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise DataError(f"{run_dir}: no {SUMMARY_FILE} (is this a run folder written by `astrohpc gcm run`?)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{summary_path}: not valid JSON ({exc})") from None
    if summary.get("status") != "finished":
        log.warning("%s: status %r, not converted", run_dir, summary.get("status"))
        return None
    entries = [e for e in summary.get("files", []) if e.get("kind") == kind]
    if not entries:
        kinds = sorted({e.get("kind") for e in summary.get("files", [])})
        raise DataError(f"{summary_path}: no files of kind {kind!r} "
                        f"(kinds present: {', '.join(map(str, kinds)) or 'none'})")
    files = []
    for entry in sorted(entries, key=lambda e: e["path"]):
        path = run_dir / entry["path"]
        if not path.is_file():
            raise DataError(f"{summary_path}: lists {entry['path']} but {path} does not exist")
        if entry.get("sha256") and sha256_file(path) != entry["sha256"]:
            raise DataError(f"{path}: sha256 differs from the one in {summary_path} (file changed after the run)")
        files.append(path)
    params = dict(summary.get("planet") or {})
    for key, value in (summary.get("point") or {}).items():
        if isinstance(value, (int, float, str, bool)):
            params[f"point.{key}"] = value
    name = str(summary.get("name") or run_dir.name)
    gcm = summary.get("gcm") or {}
    step_s = 60.0 * float(gcm["timestep_minutes"]) if gcm.get("timestep_minutes") else None
    if gcm.get("model", "exoplasim") == "exoplasim" and step_s and "rotation_period_days" in params:
        # the model's step counter at the run's start: where the sun is (astrohpc/gcm/calendar.py)
        from astrohpc.gcm.calendar import first_step

        start = gcm.get("start_step")
        if start is None and not gcm.get("restart_file"):
            start = first_step(float(params["rotation_period_days"]), float(gcm["timestep_minutes"]))
        if start is not None:
            params["start_step"] = int(start)
    interval = gcm.get("snapshot_interval_days" if kind == "snapshots" else "means_interval_days")
    return RunInput(name, files, params, step_s, float(interval) if interval else None, _log_params(run_dir))


def _log_params(run_dir: Path) -> tuple[str, ...]:
    """Planet parameters the run's sweep sampled in log (its config.yaml's sweep.log_scale)."""
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return ()
    sweep = (yaml.safe_load(path.read_text()) or {}).get("sweep") or {}
    return tuple(k.split(".", 1)[1] for k in sweep.get("log_scale") or () if k.startswith("planet."))


def convert_run_dirs(run_dirs: list[Path], output: Path, kind: str = "snapshots",
                     settings: DataSettings | None = None) -> Path:
    """Convert the finished runs among `run_dirs` (GCM run folders with summary.json) into one cube.

    kind: which listed files to use ("snapshots" or "means"). Returns the cube path.
    """
    runs = [r for r in (run_from_dir(Path(d), kind) for d in run_dirs) if r is not None]
    if not runs:
        raise DataError(f"none of the {len(run_dirs)} run folder(s) has status 'finished'; nothing to convert")
    return write_cube(runs, Path(output), settings or DataSettings(), extra={"run_dirs": [str(d) for d in run_dirs],
                                                                              "kind": kind})


def convert(inputs: Sequence[str | Path], output: str | Path, *, variables: Optional[list[str]] = None,
            levels: Optional[str] = None, variable_table: Optional[dict[str, str]] = None,
            run_params: Optional[list[dict]] = None, settings: DataSettings | None = None,
            kind: str = "snapshots") -> Path:
    """Convert `inputs` into one cube at `output`; each input is one run.

    An input is a NetCDF file, or a GCM run folder (its summary.json's files of `kind`).
    `variables`, `levels`, `variable_table` override the matching `settings` fields.
    `run_params`: one dict of parameters per input (default: from summary.json, else none).
    """
    settings = settings or DataSettings()
    overrides = {k: v for k, v in (("variables", variables), ("levels", levels),
                                   ("variable_table", variable_table)) if v is not None}
    settings = replace(settings, **overrides)
    runs: list[RunInput] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            run = run_from_dir(path, kind)
            if run is not None:
                runs.append(run)
        else:
            step = settings.source_step_minutes
            runs.append(RunInput(path.stem, [path], step_s=None if step is None else 60.0 * step,
                                 output_interval_days=settings.source_output_interval_days))
    if not runs:
        raise DataError("no inputs to convert (run folders given have not finished)")
    if run_params is not None:
        if len(run_params) != len(runs):
            raise DataError(f"run_params has {len(run_params)} entries for {len(runs)} runs")
        for run, params in zip(runs, run_params):
            run.params = dict(params)
    return write_cube(runs, Path(output), settings, extra={"inputs": [str(i) for i in inputs]})


# ---------------------------------------------------------------------------- planning


@dataclass
class CubePlan:
    runs: list[RunInput]
    sources: list[list[SourceInfo]]  # [run][file]
    reference: SourceInfo
    n_time: list[int]
    days: list[np.ndarray]  # [run][time] days since the run's start
    grid_diff_deg: float
    notes: list[str]


def plan_cube(runs: list[RunInput], settings: DataSettings) -> CubePlan:
    """Inspect every input (no field values read) and check they fit one cube."""
    levels = schema.parse_levels(settings.levels)
    sources: list[list[SourceInfo]] = []
    reference: Optional[SourceInfo] = None
    grid_diff = 0.0
    notes: list[str] = []
    n_time, days = [], []
    for run in runs:
        if not run.files:
            raise DataError(f"run {run.name!r}: no files")
        infos = []
        for path in run.files:
            info = inspect_source(Path(path), list(settings.variables), settings, levels)
            if reference is None:
                reference = info
            else:
                grid_diff = max(grid_diff, check_same_grid(reference, info, settings.grid_tolerance_deg))
                check_same_channels(reference, info)
            notes.extend(n for n in info.notes if n not in notes)
            infos.append(info)
        times = np.concatenate([i.time for i in infos])
        if times.size > 1 and not np.all(np.diff(times) > 0):
            bad = int(np.argmin(np.diff(times)))
            raise DataError(f"run {run.name!r}: time is not strictly increasing across its files "
                            f"(step {bad}: {times[bad]} then {times[bad + 1]}); list the files in time order")
        needed = sorted({c for p in infos[0].plans if p.derivation is not None for c in p.derivation.constants})
        missing = [c for c in needed if not isinstance(run.params.get(c), (int, float))]
        if missing:
            raise DataError(f"run {run.name!r}: derived variables need the planet's {', '.join(missing)}, which the "
                            "run's parameters lack (run folders carry them in summary.json; for plain files give "
                            "run_params, or drop the variable from data.derived)")
        sources.append(infos)
        n_time.append(int(times.size))
    assert reference is not None
    for run, infos in zip(runs, sources):  # after every grid and channel check
        times = np.concatenate([i.time for i in infos])
        days.append(days_since_start(times, infos[0].time_units, run.step_s, run.output_interval_days,
                                     f"run {run.name!r} ({run.files[0]})"))
    return CubePlan(runs, sources, reference, n_time, days, grid_diff, notes)


# ---------------------------------------------------------------------------- writing


def _string_column(values: Iterable[str]) -> np.ndarray:
    import h5py

    return np.array([str(v) for v in values], dtype=h5py.string_dtype())


def _param_column(values: list[Any]) -> tuple[np.ndarray, str]:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return np.array([-1 if v is None else int(v) for v in values], dtype=np.int8), "bool"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64), "float"
    return _string_column("" if v is None else v for v in values), "str"


def write_cube(runs: list[RunInput], output: Path, settings: DataSettings, extra: dict | None = None) -> Path:
    """Plan, then write the cube atomically. Returns `output`."""
    import h5py

    from astrohpc.provenance import collect

    plan = plan_cube(runs, settings)
    ref = plan.reference
    channels = ref.channels
    n_run, n_time, n_chan = len(runs), max(plan.n_time), len(channels)
    n_lat, n_lon = ref.orient.lat.size, ref.orient.lon.size
    lat_bnds = latitude_bounds(ref.orient.lat, None if ref.gw is None else ref.gw[ref.orient.lat_index])
    sources_rows = [(r, str(p.resolve()), p.stat().st_size, sha256_file(p))
                    for r, run in enumerate(runs) for p in map(Path, run.files)]
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:
        with h5py.File(tmp, "w") as f:
            fields = f.create_dataset(schema.FIELDS, shape=(n_run, n_time, n_chan, n_lat, n_lon), dtype="f4",
                                      chunks=(1, 1, n_chan, n_lat, n_lon), fillvalue=np.float32(np.nan))
            fields.attrs["dims"] = json.dumps(schema.FIELDS_DIMS)
            fields.attrs["long_name"] = "GCM fields; channel metadata in /channels"
            time = np.full((n_run, n_time), np.nan)
            source_time = np.full((n_run, n_time), np.nan)
            time_units = []
            static: dict[str, np.ndarray] = {}
            for r, infos in enumerate(plan.sources):
                t0 = 0
                for info in infos:
                    data = load_source(info, settings, runs[r].params)
                    fields[r, t0:t0 + info.n_time] = data
                    source_time[r, t0:t0 + info.n_time] = info.time
                    t0 += info.n_time
                time[r, :t0] = plan.days[r]
                time_units.append(infos[0].time_units)
                for name, values in load_static(infos[0]).items():
                    static.setdefault(name, np.full((n_run, n_lat, n_lon), np.nan))[r] = values
                log.info("run %d/%d (%s): %d steps", r + 1, n_run, runs[r].name, t0)
            _write_coordinates(f, ref, lat_bnds, n_lon)
            f.create_dataset(schema.TIME_DAYS, data=time).attrs.update(schema.CF_TIME)
            f.create_dataset(schema.SOURCE_TIME, data=source_time).attrs[
                "long_name"] = "time of each step as stored in the source (units per run in source_time_units)"
            f.create_dataset(schema.SOURCE_TIME_UNITS, data=_string_column(time_units))
            f.create_dataset(schema.TIME_STEP, data=np.array([np.nan if r.step_s is None else r.step_s for r in runs],
                                                             np.float64)).attrs.update(schema.CF_TIME_STEP)
            f.create_dataset(schema.TIME_COUNT, data=np.array(plan.n_time, dtype=np.int64)).attrs[
                "long_name"] = "valid time steps of each run (later steps are NaN fill)"
            _write_static(f, static, ref)
            _write_vertical(f, ref)
            group = f.create_group(schema.CHANNEL_GROUP)
            for column in schema.CHANNEL_COLUMNS:
                values = [getattr(c, column) for c in channels]
                group.create_dataset(column, data=np.array(values, np.float64) if column == "level"
                                     else _string_column(values))
            f.create_dataset(schema.RUN_NAME, data=_string_column(r.name for r in runs))
            params = f.create_group(schema.RUN_PARAMS_GROUP)
            log_params = {k for r in runs for k in r.log_params}
            for key in sorted({k for r in runs for k in r.params}):
                column, kind = _param_column([r.params.get(key) for r in runs])
                dset = params.create_dataset(key, data=column)
                dset.attrs["kind"] = kind
                if key in log_params:
                    dset.attrs["transform"] = "log10"  # as the sweep sampled it: models read log10(x)
            src = f.create_group(schema.SOURCES_GROUP)
            for i, column in enumerate(schema.SOURCE_COLUMNS):
                values = [row[i] for row in sources_rows]
                src.create_dataset(column, data=_string_column(values) if column in ("path", "sha256")
                                   else np.array(values, np.int64))
            provenance = collect(extra={
                **(extra or {}),
                "settings": {k: getattr(settings, k) for k in ("variables", "static_variables", "derived", "levels",
                                                               "variable_table", "expected_units",
                                                               "grid_tolerance_deg")},
                "models": sorted({i.model for infos in plan.sources for i in infos}),
                "latitude_flipped": ref.orient.lat_flipped,
                "grid_max_abs_diff_deg": plan.grid_diff_deg,
                "notes": plan.notes,
            })
            f.attrs.update({
                "schema": schema.SCHEMA_NAME, "schema_version": schema.SCHEMA_VERSION, "Conventions": "CF-1.8",
                "cube_id": uuid.uuid4().hex,
                "levels": schema.parse_levels(settings.levels).text, "provenance": json.dumps(provenance, default=str),
                "grid_max_abs_diff_deg": plan.grid_diff_deg,
            })
            _write_dimensions(f, [r.name for r in runs], channels, n_time, len(sources_rows))
    return output


def _write_dimensions(f, run_names: list[str], channels: list, n_time: int, n_files: int) -> None:
    """Dimension scales and CF coordinates, then every dataset attached to its dimensions
    (`cube_dims`), so that xarray (engine h5netcdf) sees named dimensions and coordinates."""
    from astrohpc.data.cube import channel_label

    run = f.create_dataset(schema.RUN, data=_string_column(run_names))
    run.attrs.update(schema.CF_RUN)
    time = f.create_dataset(schema.TIME, data=np.arange(n_time, dtype=np.int64))
    time.attrs.update(schema.CF_TIME_INDEX)
    channel = f.create_dataset(schema.CHANNEL, data=_string_column(channel_label(c.variable, c.level)
                                                                   for c in channels))
    channel.attrs.update(schema.CF_CHANNEL)
    f.create_dataset(schema.CHANNEL_UNITS, data=_string_column(c.units for c in channels)).attrs[
        "long_name"] = "units of each channel"
    f.create_dataset(schema.CHANNEL_STANDARD_NAME, data=_string_column(
        schema.CF_STANDARD_NAMES.get(c.variable, "") for c in channels)).attrs[
        "long_name"] = "CF standard name of each channel's variable (empty: none fits)"
    for name in (schema.RUN, schema.TIME, schema.CHANNEL, schema.LAT, schema.LON):
        f[name].make_scale(name)
    schema.netcdf_dimension(f, schema.SCALES[schema.BNDS_DIM], 2)
    schema.netcdf_dimension(f, schema.SCALES[schema.FILE_DIM], n_files)
    vertical = f[schema.VERTICAL_GROUP]
    if len(vertical):
        schema.netcdf_dimension(f, schema.SCALES[schema.INTERFACE_DIM], next(iter(vertical.values())).shape[0])
    fields = f[schema.FIELDS]
    fields.attrs["coordinates"] = " ".join((schema.TIME_DAYS, schema.CHANNEL_UNITS, schema.CHANNEL_STANDARD_NAME))
    datasets: list[str] = []
    f.visititems(lambda name, obj: datasets.append(name) if hasattr(obj, "dtype") else None)
    for name in datasets:
        dims = schema.cube_dims(name)
        if dims is not None:
            schema.attach_dims(f[name], [f[schema.SCALES[d]] for d in dims])


def _write_static(f, static: dict[str, np.ndarray], ref: SourceInfo) -> None:
    """static/<name> [run, lat, lon] float64, with the source's units."""
    if not static:
        return
    group = f.create_group(schema.STATIC_GROUP)
    units = {p.variable: (p.units, p.long_name) for p in ref.static_plans}
    for name, values in static.items():
        dset = group.create_dataset(name, data=values)
        dset.attrs.update({"units": units[name][0], "long_name": units[name][1]})
        if name in schema.CF_STANDARD_NAMES:
            dset.attrs["standard_name"] = schema.CF_STANDARD_NAMES[name]


def _write_vertical(f, ref: SourceInfo) -> None:
    """vertical/sigma_half [lev+1] (sigma cubes) or vertical/hyai, hybi, p0_Pa (hybrid files)."""
    group = f.create_group(schema.VERTICAL_GROUP)
    if ref.sigma_half is not None:
        dset = group.create_dataset("sigma_half", data=ref.sigma_half)
        dset.attrs.update({"long_name": "sigma at the model's layer interfaces, top (0) to surface (1)", "units": "1",
                           "standard_name": "atmosphere_sigma_coordinate", "positive": "down",
                           "source": "recovered from the full levels (their midpoints, PlaSim's convention)"})
    if ref.hybrid_interfaces is not None:
        for key in ("hyai", "hybi"):
            group.create_dataset(key, data=ref.hybrid_interfaces[key])
        group.attrs["p0_Pa"] = ref.hybrid_interfaces["p0_Pa"]
        group.attrs["formula"] = "p_interface = hyai * p0_Pa + hybi * ps"


def _write_coordinates(f, ref: SourceInfo, lat_bnds: np.ndarray, n_lon: int) -> None:
    lat = f.create_dataset(schema.LAT, data=ref.orient.lat)
    lat.attrs.update(schema.CF_LAT)
    lon = f.create_dataset(schema.LON, data=ref.orient.lon)
    lon.attrs.update(schema.CF_LON)
    f.create_dataset(schema.LAT_BNDS, data=lat_bnds).attrs.update({"units": "degrees_north",
                                                                   "long_name": "latitude cell bounds"})
    weights = f.create_dataset(schema.AREA_WEIGHT, data=area_weights(lat_bnds, n_lon))
    weights.attrs.update(schema.CF_AREA)
    from astrohpc.data.grid import is_gaussian

    weights.attrs["source"] = ("Gauss weights (gw) from the source file" if ref.gw is not None else
                               "Gauss-Legendre weights (Gaussian latitudes detected)" if is_gaussian(ref.orient.lat)
                               else "regular grid: bounds at midpoints between latitudes")
