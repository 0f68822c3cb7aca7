"""The emulator in use: from an initial state and planet parameters, a trajectory of states.

`Emulator.rollout(init, steps, params=…, output_every=…, output=…)` steps the exported
EmulatorStepper with the rollout engine (astrohpc.studies.rollout: float64 states, hard
correctors, divergence watch) under the planet's own insolation (the orbit, from its
parameters), and returns the states every `output_every` steps as an xarray.Dataset (CF-1.8,
time in days since the run's start).

With `output`, the trajectory is written as it goes: the file's layout comes from xarray (an
unlimited time axis, one chunk per state), the states are appended into OUTPUT.partial, and every
`segment_steps` steps the engine's state is saved beside it (OUTPUT.restart.pt). Killed, the same
request continues from the last saved step; finished, the partial file is fsynced and renamed to
OUTPUT and the restart file removed. A member that leaves the divergence limits is flagged, its
later states are NaN, and the file says at which step and why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
import torch

from astrohpc.errors import ConfigError, DataError
from astrohpc.predict.exported import ExportedNet, param_units, provenance_attrs
from astrohpc.predict.fields_netcdf import fields_dataset
from astrohpc.predict.initial_state import InitialState, from_cube, from_netcdf
from astrohpc.predict.planets import shared_values

log = logging.getLogger(__name__)

ORBIT_PARAMS = ("instellation_W_m2", "rotation_period_days", "obliquity_deg", "eccentricity", "synchronous",
                "substellar_longitude_deg", "start_step")


class Emulator(ExportedNet):
    """An exported emulator in use (see the module doc)."""

    kind = "emulator"

    def __init__(self, path: str | Path, payload: dict[str, Any]):
        from astrohpc.config import Config, from_dict

        super().__init__(path, payload)
        self.config = from_dict(Config, payload["config"], source=f"{path} (config)")
        self.channels = list(payload["plan"]["cube_channels"])

    # -- inputs -----------------------------------------------------------------------------------
    def initial_state(self, cube: Optional[str] = None, run: Optional[str] = None, time: int = 0,
                      netcdf: Optional[str] = None, data: Optional[str] = None,
                      params: Optional[Mapping[str, float]] = None,
                      time_step_s: Optional[float] = None) -> InitialState:
        """The state to start from: `run` at time index `time` of `cube`, or the first state of the
        GCM output `netcdf` converted with the data config `data` (default: the settings the training
        cube was converted with)."""
        static = list(self.model.static_names)
        if (cube is None) == (netcdf is None):
            raise ConfigError("give the initial state as exactly one of predict.init.cube (a cube and run) or "
                              "predict.init.netcdf (a GCM NetCDF file or run folder)")
        if cube is not None:
            return from_cube(cube, run, time, self.meta, self.channels, static, time_step_s)
        if data:
            from astrohpc.config import load_config

            settings = load_config(data).data
        else:  # as the training cube was converted (its provenance), else the training config's data section
            from astrohpc.config import from_dict, to_dict
            from astrohpc.data.settings import DataSettings

            saved = self.payload.get("data_settings") or {}
            settings = from_dict(DataSettings, {**to_dict(self.config.data), **saved}, source=f"{self.path} (data)")
        return from_netcdf(netcdf, settings, dict(params or {}), self.meta, self.channels, static, time_step_s,
                           float(self.model.step_s) / 86400.0)

    def _run_params(self, init: InitialState, params: Mapping[str, float]) -> dict[str, float]:
        from astrohpc.physics.constants import FIELDS

        known = set(init.params) | set(self.param_names) | set(ORBIT_PARAMS) | set(FIELDS)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(f"{self.path}: unknown parameter {', '.join(unknown)}; the model reads "
                              f"{', '.join(self.param_names)}, the insolation {', '.join(ORBIT_PARAMS[:4])}, the "
                              f"constants {', '.join(FIELDS)}")
        out = {**shared_values(self.meta, self.param_names, self.train_rows), **init.params,
               **{k: float(v) for k, v in params.items()}}
        missing = [n for n in self.param_names if n not in out]
        if missing:
            raise ConfigError(f"{self.path}: parameter {', '.join(missing)} not given and not in the initial state's "
                              "run: add it to predict.params")
        return out

    def _inputs(self, init: InitialState, run: dict[str, float]) -> dict[str, Any]:
        from astrohpc.physics.constants import FIELDS, PlanetConstants
        from astrohpc.studies.rollout import OrbitForcing, forcing_names

        raw = np.array([[run[n] for n in self.param_names]], np.float64)
        z = self.normalized(raw)
        static = None
        if self.model.static_names:
            fields = []
            for s in self.model.static_names:
                if s in init.static:
                    fields.append(init.static[s])
                    continue
                values = self.meta.static[s][self.train_rows]
                if np.ptp(values, axis=0).max() > 0:
                    raise DataError(f"{init.source}: lacks the static field {s} the model reads, and the training "
                                    "runs' differ; convert the input with it (data.static_variables)")
                fields.append(values[0])
            # as training fed them: float32 (WindowDataset), then float64 in the stepper
            static = torch.as_tensor(np.stack(fields).astype(np.float32)).to(torch.float64)[None]
        planet = None
        if all(name in run for name in FIELDS):
            planet = PlanetConstants.from_run_params({n: torch.tensor([run[n]], dtype=torch.float64) for n in FIELDS})
        names = forcing_names(self.model)
        other = sorted({n for n in names if n != "rsdt"})
        if other:
            raise ConfigError(f"{self.path}: forcing channel(s) {', '.join(other)} cannot be computed for a new "
                              "planet; only rsdt (from the orbit) can")
        if not math.isfinite(init.time_step_s):
            raise ConfigError(f"{init.source}: the GCM's time step is unknown, so its insolation clock is too: set "
                              "predict.init.time_step_s (ExoPlaSim T21: 2700 s)")
        missing = [k for k in ORBIT_PARAMS[:4] if k not in run]
        if missing:
            raise ConfigError(f"{init.source}: the insolation needs {', '.join(missing)}: add to predict.params")
        day0 = init.day0 if math.isfinite(init.day0) else 0.0
        forcing = OrbitForcing.of_planet(run, init.time_step_s, self.model, self.meta.lat, self.meta.lon, day0)
        return {"x0": torch.as_tensor(init.x0, dtype=torch.float64)[None],
                "params": torch.as_tensor(z, dtype=torch.float32), "static": static, "planet": planet,
                "forcing": forcing, "raw": raw}

    # -- rollout ----------------------------------------------------------------------------------
    def rollout(self, init: InitialState | Mapping[str, Any], steps: int, params: Optional[Mapping[str, float]] = None,
                output_every: int = 1, output: Optional[str | Path] = None, segment_steps: int = 100,
                progress: bool = False) -> Any:
        """The trajectory (see the module doc): an xarray.Dataset (loaded; with `output`, the file's)."""
        from astrohpc.studies.rollout import RolloutState, rollout

        params = dict(params or {})
        if steps < 1 or output_every < 1 or steps % output_every:
            raise ConfigError(f"predict.steps ({steps}) must be a positive multiple of predict.output_every "
                              f"({output_every})")
        if segment_steps < 1 or segment_steps % output_every:
            raise ConfigError(f"predict.segment_steps ({segment_steps}) must be a positive multiple of "
                              f"predict.output_every ({output_every})")
        if not isinstance(init, InitialState):
            init = self.initial_state(**{**dict(init), "params": params})
        run = self._run_params(init, params)
        inputs = self._inputs(init, run)
        flags, reasons = self.verdicts(inputs["raw"])
        flagged, reason = flags[0], reasons[0]
        if flagged:
            log.warning("outside the training envelope: %s", reason)
        request = {"model": str(self.path.resolve()), "source": init.source, "steps": steps, "every": output_every,
                   "params": {k: run[k] for k in sorted(run)}}
        key = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
        times = inputs["forcing"].day0 + np.arange(0, steps + 1, output_every) * inputs["forcing"].interval_days
        m = self.meta
        c = self.channels
        attrs = {**provenance_attrs(self.path, self.payload, "emulator trajectory"),
                 "initial_state": init.source, "steps": steps, "output_every_steps": output_every,
                 "step_days": inputs["forcing"].interval_days, "request_key": key,
                 "ood_flag": int(flagged), "ood_reason": reason,
                 **{f"param_{k}": float(v) for k, v in sorted(run.items())}}
        coords = {"time": ("time", times, {"standard_name": "time", "long_name": "time since the start of the run",
                                           "units": "days", "axis": "T"})}
        template = fields_dataset(np.full((len(times), len(c), len(m.lat), len(m.lon)), np.nan, np.float32),
                                  [m.variables[i] for i in c], [m.levels[i] for i in c], [m.level_kinds[i] for i in c],
                                  [m.units[i] for i in c], m.lat, m.lon, "time", coords, attrs=attrs)
        for name in self.param_names:
            template[name] = ((), float(run[name]), {"long_name": f"planet parameter {name}",
                                                     "units": param_units(name)})
        sink = _Sink(template, output, key, [m.variables[i] for i in c], [m.levels[i] for i in c])
        state = sink.resume()
        if state is None:
            sink.write(0, init.x0, None)
        bar = _progress(progress, steps, int(state["step"]) if state else 0)

        def on_segment(st: Any) -> None:
            sink.write(st.step // output_every, st.x[0].numpy(), st.flags[0])
            if bar is not None:
                bar.update(output_every)
            if st.step % segment_steps == 0 and st.step < steps:
                sink.save(st)

        restored = RolloutState.from_dict(state) if state else None
        torch_threads = torch.get_num_threads()
        result = rollout(self.model, inputs["x0"], inputs["params"], inputs["static"], inputs["planet"],
                         inputs["forcing"], steps, segment=output_every, state=restored, on_segment=on_segment)
        if bar is not None:
            bar.close()
        flag = result.flags[0]
        return sink.finish({"diverged_at_step": -1 if flag is None else int(flag[0]),
                            "divergence_reason": "" if flag is None else str(flag[1]),
                            "wall_s": float(result.state.wall_s), "cpu_s": float(result.state.cpu_s),
                            "torch_threads": torch_threads})


def _progress(enabled: bool, total: int, done: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="step", desc="rollout")


class _Sink:
    """Where the states go: a loaded Dataset, or OUTPUT.partial written record by record (see the
    module doc)."""

    def __init__(self, template: Any, output: Optional[str | Path], key: str, variables: list[str],
                 levels: list[float]):
        self.ds, self.key = template, key
        self.variables = list(dict.fromkeys(variables))
        lev = template["lev"].values if "lev" in template.coords else np.zeros(0)
        # channel c of the state -> (variable, its position on lev, or None for a surface field)
        self.where = [(v, None if not np.isfinite(level) else int(np.searchsorted(lev, level)))
                      for v, level in zip(variables, levels)]
        self.output = Path(output) if output else None
        self.nc = None
        self.flag_step = -1
        if self.output is not None:
            self.partial = self.output.with_name(self.output.name + ".partial")
            self.restart = self.output.with_name(self.output.name + ".restart.pt")

    def resume(self) -> Optional[dict[str, Any]]:
        """The saved engine state of an interrupted identical request, or None (a fresh file)."""
        if self.output is None:
            return None
        import netCDF4

        if self.output.exists():
            raise ConfigError(f"{self.output}: exists; choose another output or remove it (nothing is overwritten)")
        state = None
        if self.partial.is_file() and self.restart.is_file():
            saved = torch.load(self.restart, weights_only=True)
            if saved.get("key") != self.key:
                raise ConfigError(f"{self.partial}: an unfinished prediction of another request is there; remove "
                                  f"it and {self.restart.name}, or rerun that request")
            state = saved["state"]
            log.info("continuing %s from step %d", self.output, int(state["step"]))
        else:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            encoding = {v: {"chunksizes": (1, *self.ds[v].shape[1:]), "zlib": False} for v in self.variables}
            self.ds.isel(time=slice(0, 0)).to_netcdf(self.partial, engine="netcdf4", unlimited_dims=["time"],
                                                     encoding=encoding)
        self.nc = netCDF4.Dataset(self.partial, "a")
        self.nc.set_auto_mask(False)
        self.nc["time"].set_auto_scale(False)
        return state

    def _fields(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """[C, lat, lon] in the model's channel order -> name: [lev, lat, lon] or [lat, lon]."""
        out = {v: np.full(self.ds[v].shape[1:], np.nan) for v in self.variables}
        for c, (v, k) in enumerate(self.where):
            if k is None:
                out[v] = x[c]
            else:
                out[v][k] = x[c]
        return out

    def write(self, index: int, x: np.ndarray, flag: Optional[tuple]) -> None:
        x = np.asarray(x, np.float64)
        if flag is not None:
            x = np.full_like(x, np.nan)
            self.flag_step = int(flag[0])
        fields = self._fields(x)
        if self.nc is None:
            for v, a in fields.items():
                self.ds[v][index] = a.astype(np.float32)
            return
        self.nc["time"][index] = self.ds["time"].values[index]
        for v, a in fields.items():
            self.nc[v][index] = a.astype(np.float32)

    def save(self, state: Any) -> None:
        from astrohpc.atomic_write import atomic_path

        self.nc.sync()
        with atomic_path(self.restart) as tmp:
            torch.save({"key": self.key, "state": state.to_dict()}, tmp)

    def finish(self, attrs: dict[str, Any]) -> Any:
        import xarray as xr

        if self.nc is None:
            self.ds.attrs.update(attrs)
            return self.ds
        for k, v in attrs.items():
            self.nc.setncattr(k, v)
        self.nc.close()
        with open(self.partial, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.partial, self.output)
        self.restart.unlink(missing_ok=True)
        with xr.open_dataset(self.output) as ds:
            return ds.load()
