"""The thermal emission spectrum of every (run, time) of a cube, stored in the sidecar CUBE.spectra.h5.

The spectrum is the grey two-stream formula of `astrohpc.physics.emission` applied to the
cube's own `ts`, `ta` (on its σ layers) and `ps`, averaged over the globe: a target for a
surrogate's spectral head. Like the statistics sidecar (`astrohpc/data/stats.py`) it is written
whole to a temporary file, fsynced and renamed, names the cube's `cube_id`, and a sidecar of
another conversion is refused. Layout:

| path | shape | meaning |
|---|---|---|
| `spectrum` | `[run, time, bin]` float64 | global-mean TOA outgoing spectral flux, W m⁻² (cm⁻¹)⁻¹; NaN: no step |
| `wavenumber_edges` | `[bin + 1]` float64 | cm⁻¹ |
| `wavenumber` | `[bin]` float64 | bin centres, cm⁻¹ |
| `time` | `[run, time]` float64 | days since the run's start (the cube's) |

Attributes: `schema`, `cube`, `cube_id`, `formula`, `tau_surface`, `exponent`, `diffusivity`,
`quadrature_points`, `units`, `computed_utc`, `provenance`.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.errors import DataError
from astrohpc.physics.emission import SPECTRAL_FLUX_UNITS, GreyAtmosphere, toa_spectral_flux, wavenumber_edges

SPECTRA_SUFFIX = ".spectra.h5"
SPECTRA_SCHEMA = "astrohpc-datacube-spectra"
FORMULA = ("F(nu) = pi B_nu(ts) T(ps) + sum_k pi B_nu(ta_k) [T(p_k-1/2) - T(p_k+1/2)], T(p) = exp(-D tau(p)), "
           "tau(p) = tau_surface (p/ps)^exponent, p = sigma ps; grey two-stream, diffusivity approximation; "
           "area-weighted global mean (astrohpc/physics/emission.py)")
REQUIRED = ["ta", "ts", "ps"]


def spectra_path(cube: str | Path) -> Path:
    """The spectra sidecar of `cube`: runs/cubes/x.h5 -> runs/cubes/x.spectra.h5."""
    cube = Path(cube)
    return cube.with_name((cube.name[: -len(cube.suffix)] if cube.suffix else cube.name) + SPECTRA_SUFFIX)


@dataclass
class CubeSpectra:
    """A cube's stored spectra. values: [run, time, n_bins] W m⁻² (cm⁻¹)⁻¹ (NaN past a run's end);
    edges_cm: [n_bins + 1]; time_days: [run, time]; grey: the formula's parameters."""

    values: np.ndarray
    edges_cm: np.ndarray
    time_days: np.ndarray
    grey: GreyAtmosphere
    quadrature_points: int
    cube_id: str
    units: str = SPECTRAL_FLUX_UNITS

    @property
    def centers_cm(self) -> np.ndarray:
        return 0.5 * (self.edges_cm[:-1] + self.edges_cm[1:])

    @property
    def n_bins(self) -> int:
        return len(self.edges_cm) - 1


def _sigma_layers(meta) -> tuple[np.ndarray, np.ndarray]:
    """(channel indices of ta, top -> bottom; σ interfaces [lev + 1]), checked against each other."""
    where = f"{meta.path}: the emission spectrum"
    half = meta.vertical.get("sigma_half")
    ta = meta.channels_of(["ta"])
    kinds = {meta.level_kinds[c] for c in ta}
    if half is None or kinds != {"sigma"}:
        raise DataError(f"{where} needs ta on the model's σ levels with σ interfaces (vertical/sigma_half); this "
                        f"cube has ta on {', '.join(sorted(kinds))} levels — reconvert with --levels sigma")
    half = np.asarray(half, np.float64)
    levels = np.asarray(meta.levels[ta], np.float64)
    if len(half) != len(levels) + 1 or not np.all((half[:-1] < levels) & (levels < half[1:])):
        raise DataError(f"{where}: ta's σ levels {levels.tolist()} do not lie one in each layer of the interfaces "
                        f"{half.tolist()} (top -> bottom); reconvert the cube")
    return ta, half


def compute_spectra(cube_path: str | Path, edges_cm: np.ndarray, grey: Optional[GreyAtmosphere] = None,
                    points: int = 8) -> np.ndarray:
    """float64 [run, time, n_bins]: the global-mean spectrum of every valid step (NaN past a run's end),
    read one step at a time; grey: the formula's parameters (None: `GreyAtmosphere()`)."""
    from astrohpc.data.cube import LazyCube, read_meta
    from astrohpc.physics.grid import SphereGrid, global_mean

    meta = read_meta(cube_path)
    meta.require(REQUIRED, "the emission spectrum")
    ta, half = _sigma_layers(meta)
    grey = grey or GreyAtmosphere()
    i_ts, i_ps = meta.channel("ts"), meta.channel("ps")
    grid = SphereGrid.from_meta(meta)
    edges = np.asarray(edges_cm, np.float64)
    out = np.full((meta.shape[0], meta.shape[1], len(edges) - 1), np.nan)
    cube = LazyCube(cube_path)
    try:
        for run, count in enumerate(np.asarray(meta.time_count).tolist()):
            for t in range(int(count)):
                x = cube.read(run, t, 1)[0].astype(np.float64)
                ps = x[i_ps]
                p_half = half[:, None, None] * ps[None]
                flux = toa_spectral_flux(x[i_ts], x[ta], p_half, ps, edges, grey, points)
                out[run, t] = global_mean(flux, grid).numpy()
                if not np.all(np.isfinite(out[run, t])):
                    raise DataError(f"{cube_path}: non-finite emission spectrum at run {run}, time index {t} "
                                    "(NaN, or ts/ta <= 0 K, in the cube?); check it with "
                                    "`astrohpc data validate --deep`")
    finally:
        cube.close()
    return out


def write_spectra(cube_path: str | Path, n_bins: int = 16, *, low_cm: float = 10.0, high_cm: float = 3000.0,
                  grey: Optional[GreyAtmosphere] = None, points: int = 8, extra: Optional[dict] = None) -> Path:
    """Compute the spectrum of every (run, time) of the cube into CUBE.spectra.h5 (temporary file,
    fsync, rename); return its path. Bins: n_bins evenly spaced from low_cm to high_cm (cm⁻¹);
    grey: τ_s, n, D (default `GreyAtmosphere()`); points: Gauss–Legendre nodes per bin.
    The cube itself is opened read-only."""
    import h5py

    from astrohpc.atomic_write import atomic_path
    from astrohpc.data.cube import open_file
    from astrohpc.provenance import collect

    cube_path = Path(cube_path)
    grey = grey or GreyAtmosphere()
    edges = wavenumber_edges(n_bins, low_cm, high_cm).numpy()
    values = compute_spectra(cube_path, edges, grey, points)
    with open_file(cube_path) as f:
        cube_id = str(f.attrs.get("cube_id", ""))
        time_days = f[schema.time_days_path(f)][()]
    target = spectra_path(cube_path)
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as out:
            dset = out.create_dataset("spectrum", data=values)
            dset.attrs.update({"units": SPECTRAL_FLUX_UNITS, "dims": "run time bin",
                               "long_name": "global-mean top-of-atmosphere outgoing thermal spectral flux"})
            out.create_dataset("wavenumber_edges", data=edges).attrs["units"] = "cm-1"
            out.create_dataset("wavenumber", data=0.5 * (edges[:-1] + edges[1:])).attrs["units"] = "cm-1"
            out.create_dataset("time", data=time_days).attrs["units"] = "days since run start"
            out.attrs.update({
                "schema": SPECTRA_SCHEMA, "cube": cube_path.name, "cube_id": cube_id, "formula": FORMULA,
                "tau_surface": grey.tau_surface, "exponent": grey.exponent, "diffusivity": grey.diffusivity,
                "quadrature_points": points, "units": SPECTRAL_FLUX_UNITS,
                "computed_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "provenance": json.dumps(collect(extra=extra), default=str),
            })
    return target


def read_spectra(cube_path: str | Path) -> CubeSpectra:
    """The stored spectra of the cube at `cube_path`; DataError when there are none, when the
    sidecar is damaged, or when it belongs to another conversion of the cube (cube_id differs)."""
    import h5py

    from astrohpc.data.cube import open_file

    target = spectra_path(cube_path)
    again = f"run `astrohpc data spectra {cube_path}`"
    if not target.is_file():
        raise DataError(f"{target}: no spectra stored for {cube_path}; {again}")
    with open_file(cube_path) as f:
        cube_id = str(f.attrs.get("cube_id", ""))
    try:
        with h5py.File(target, "r", locking=False) as f:
            if f.attrs.get("schema") != SPECTRA_SCHEMA:
                raise DataError(f"{target}: not an astrohpc spectra file; delete it and {again}")
            if str(f.attrs.get("cube_id", "")) != cube_id:
                raise DataError(f"{target}: spectra of another cube (cube_id differs: {cube_path} was reconverted); "
                                f"{again} again")
            grey = GreyAtmosphere(float(f.attrs["tau_surface"]), float(f.attrs["exponent"]),
                                  float(f.attrs["diffusivity"]))
            return CubeSpectra(f["spectrum"][()], f["wavenumber_edges"][()], f["time"][()], grey,
                               int(f.attrs["quadrature_points"]), cube_id, str(f.attrs["units"]))
    except (OSError, KeyError) as exc:
        raise DataError(f"{target}: damaged spectra file ({exc}); delete it and {again}") from None
