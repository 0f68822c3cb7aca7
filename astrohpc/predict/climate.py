"""Climate surrogates in use: planet parameters -> time-mean fields with their predictive spread,
as an xarray.Dataset (CF-1.8), each planet flagged inside or outside the training envelope.

Two kinds of export, one interface (`predict(params=… | planets=… | csv=…)`):

- `ClimateGP`: a climate study's export/gp.pt (astrohpc.train.gp_export). Spread: the GP's
  predictive σ. Flag: a parameter outside the envelope box (transformed as sampled), or the
  area-weighted mean σ of the flag channel above the study's threshold.
- `ClimateNet`: export/best.pt of `astrohpc train` with model.task: climate. Spread: its Gaussian
  head's σ when it has one (else none is written). Flag: a parameter outside the training runs'
  range (astrohpc.models.ood.ParameterEnvelope).

Neither reads a cube: everything comes from the export.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from astrohpc.errors import ConfigError
from astrohpc.predict.exported import ExportedNet, param_units, provenance_attrs
from astrohpc.predict.fields_netcdf import fields_dataset
from astrohpc.predict.planets import param_matrix, planet_rows, shared_values

log = logging.getLogger(__name__)


def _ood_vars(flags: Sequence[bool], reasons: Sequence[str]) -> dict[str, Any]:
    return {"ood_flag": (("planet",), np.asarray(flags, np.int8),
                         {"long_name": "prediction outside the training envelope",
                          "flag_values": np.array([0, 1], np.int8),
                          "flag_meanings": "inside_envelope outside_envelope"}),
            "ood_reason": (("planet",), np.asarray([r or "" for r in reasons], dtype=object),
                           {"long_name": "why the prediction is flagged (empty: not flagged)"})}


def _planet_coords(names: Sequence[str], matrix: np.ndarray, units: Mapping[str, str]) -> dict[str, tuple]:
    coords = {"planet": ("planet", np.arange(len(matrix)), {"long_name": "planet index (row of the request)"})}
    for j, name in enumerate(names):
        coords[name] = ("planet", matrix[:, j], {"long_name": f"planet parameter {name}",
                                                 "units": units.get(name, "1")})
    return coords


class ClimateGP:
    """A climate study's GP export in use (see the module doc)."""

    kind = "climate"

    def __init__(self, path: str | Path, payload: dict[str, Any]):
        from astrohpc.data.meta_state import meta_from_state
        from astrohpc.models.gp_climate import GPClimate

        self.path, self.payload = Path(path), payload
        self.gp = GPClimate.from_state_dict(payload["gp"])
        self.meta = meta_from_state(payload["meta"], str(path))
        self.channels = list(payload["channels"])
        self.param_names = list(payload["params"])
        self.transforms = list(payload["transforms"])

    def verdicts(self, matrix: np.ndarray, std: np.ndarray) -> tuple[list[bool], list[str]]:
        from astrohpc.data.cube import transform_params
        from astrohpc.studies.scores import global_mean

        box = np.asarray(self.payload["box"], np.float64)
        x = transform_params(matrix, self.param_names, self.transforms)
        labels = [self.meta.channel_names[c] for c in self.channels]
        first = labels.index(self.payload["sigma_channel"]) if self.payload["sigma_channel"] in labels else 0
        flags, reasons = [], []
        for i in range(len(x)):
            why = []
            for j, name in enumerate(self.param_names):
                span = box[j, 1] - box[j, 0]
                if not box[j, 0] - 1e-9 * span <= x[i, j] <= box[j, 1] + 1e-9 * span:
                    how = "log10 " if self.transforms[j] == "log10" else ""
                    why.append(f"{name} = {matrix[i, j]:g} outside {self.payload['box_source']} "
                               f"({how}[{box[j, 0]:.4g}, {box[j, 1]:.4g}])")
            sigma = float(global_mean(std[i, first], self.meta.area_weight))
            if sigma > self.payload["sigma_threshold"]:
                why.append(f"mean sigma of {labels[first]} {sigma:.3g} above the threshold "
                           f"{self.payload['sigma_threshold']:.3g}")
            flags.append(bool(why))
            reasons.append("; ".join(why))
        return flags, reasons

    def predict(self, params: Optional[Mapping[str, float]] = None, planets: Sequence[Mapping[str, float]] = (),
                csv: Optional[str | Path] = None) -> Any:
        """Time-mean fields of each planet as an xarray.Dataset (see the module doc)."""
        rows = planet_rows(params, planets, csv)
        matrix = param_matrix(rows, self.param_names, {}, str(self.path))
        mean, std = self.gp.predict(matrix)
        flags, reasons = self.verdicts(matrix, std)
        m = self.meta
        ds = fields_dataset(mean, [m.variables[c] for c in self.channels], [m.levels[c] for c in self.channels],
                            [m.level_kinds[c] for c in self.channels], [m.units[c] for c in self.channels],
                            m.lat, m.lon, "planet", _planet_coords(self.param_names, matrix,
                                                                    {n: param_units(n) for n in self.param_names}),
                            std=std, cell_methods="time: mean",
                            attrs={**provenance_attrs(self.path, self.payload, "climate (Gaussian process)"),
                                            "averaging_days": self.payload.get("average_days"),
                                            "train_runs": ", ".join(self.payload.get("train_runs", [])),
                                            "envelope": self.payload.get("box_source")})
        for name, value in _ood_vars(flags, reasons).items():
            ds[name] = value
        ds.attrs["ood_any"] = int(any(flags))
        return ds


class ClimateNet(ExportedNet):
    """A trained climate network's export in use (see the module doc)."""

    kind = "climate"

    def __init__(self, path: str | Path, payload: dict[str, Any]):
        super().__init__(path, payload)
        if self.model.spinup_steps:
            raise ConfigError(f"{path}: this climate surrogate reads the first {self.model.spinup_steps} days of a "
                              "run: `astrohpc predict` predicts from parameters alone (train with "
                              "model.spinup_steps: 0)")
        self.defaults = shared_values(self.meta, self.param_names, self.train_rows)

    def _static(self, n: int):
        import torch

        names = list(self.model.static_names)
        if not names:
            return None
        fields = np.stack([self.meta.static[s][self.train_rows] for s in names], axis=1)  # [run, S, lat, lon]
        if np.ptp(fields, axis=0).max() > 0:
            raise ConfigError(f"{self.path}: the training runs' static fields {', '.join(names)} differ; a new "
                              "planet's are unknown (train without model.static, or use an emulator from a state)")
        return torch.as_tensor(fields[0], dtype=torch.float64)[None].expand(n, -1, -1, -1)

    def _planet(self, rows: list[dict[str, float]]):
        import torch

        from astrohpc.physics.constants import FIELDS, PlanetConstants

        values = {}
        for name in FIELDS:
            known = shared_values(self.meta, [name], self.train_rows)
            column = [r.get(name, known.get(name, np.nan)) for r in rows]
            if not np.all(np.isfinite(column)):
                return None
            values[name] = torch.as_tensor(column, dtype=torch.float64)
        return PlanetConstants.from_run_params(values)

    def predict(self, params: Optional[Mapping[str, float]] = None, planets: Sequence[Mapping[str, float]] = (),
                csv: Optional[str | Path] = None) -> Any:
        import torch

        from astrohpc.models.uncertainty import GaussianPrediction

        rows = planet_rows(params, planets, csv)
        matrix = param_matrix(rows, self.param_names, self.defaults, str(self.path))
        z = self.normalized(matrix)
        static = self._static(len(rows))
        with torch.no_grad():
            out = self.model.physical(self.model(torch.as_tensor(z, dtype=torch.float32), None, static))
            fields = out["datacube"]
            std = None
            if isinstance(fields, GaussianPrediction):
                fields, std = fields.mean, fields.sigma.double().numpy()
            planet = self._planet(rows)
            if planet is not None:
                fields = self.model.correct(fields.double(), None, static, planet)
        mean = fields.double().numpy()
        flags, reasons = self.verdicts(matrix)
        plan, m = self.payload["plan"], self.meta
        cube = list(plan["cube_channels"])
        ds = fields_dataset(mean, [m.variables[c] for c in cube], [m.levels[c] for c in cube],
                            [m.level_kinds[c] for c in cube], [m.units[c] for c in cube], m.lat, m.lon, "planet",
                            _planet_coords(self.param_names, matrix, {n: param_units(n) for n in self.param_names}),
                            std=std, cell_methods="time: mean",
                            attrs={**provenance_attrs(self.path, self.payload, "climate (trained network)"),
                                            "train_runs": ", ".join(self.payload["run_split"]["train"]),
                                            "envelope": "the training runs' parameter range"})
        for name, value in _ood_vars(flags, reasons).items():
            ds[name] = value
        ds.attrs["ood_any"] = int(any(flags))
        return ds
