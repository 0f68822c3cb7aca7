"""Another cube (or a converted GCM file) matched to a model's layout: the training cube's, which the
model's export carries (astrohpc.train.export.training_meta).

    match_channels   the model's channels found by variable and level, checked by units
    check_grid       the same latitudes and longitudes
    match_static     the static fields the model reads, with the same units
    match_params     the planet parameters the model reads (and the planet constants its physics
                     reads), set for every run — normalised with the model's own transform

Each check raises one DataError naming `where` (the cube, as the user gave it), what differs and
the fix. `model_meta` and `other` are CubeMeta (astrohpc.data.cube).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from astrohpc.errors import DataError


def match_channels(model_meta: Any, channels: list[int], other: Any, where: str) -> list[int]:
    """Indices into `other`'s channels of the model's channels `channels` (of `model_meta`), by
    variable and level (within 1e-3), with equal units. DataError naming every difference."""
    from astrohpc.data.cube import pick_channels

    labels = [model_meta.channel_names[c] for c in channels]
    found, missing, units = [], [], []
    for c, label in zip(channels, labels):
        hit = pick_channels(other.channel_names, [label], tolerance=1e-3)
        if not hit:
            missing.append(label)
            continue
        if (other.units[hit[0]] or "1") != (model_meta.units[c] or "1"):
            units.append(f"{label} in {other.units[hit[0]]!r}, the model's in {model_meta.units[c]!r}")
        found.append(hit[0])
    if missing:
        lacking = sorted({m.split("@")[0] for m in missing})
        raise DataError(f"{where}: lacks the model's channel(s) {', '.join(missing[:8])}"
                        f"{' …' if len(missing) > 8 else ''} — convert it with variable(s) {', '.join(lacking)} "
                        "at the model's levels (the model's data settings: its export's config `data:`)")
    if units:
        raise DataError(f"{where}: units differ: {'; '.join(units[:5])} — reconvert with the model's data settings")
    return found


def check_grid(model_meta: Any, other: Any, where: str) -> None:
    """DataError when `other`'s lat/lon grid is not the model's."""
    a, b = (np.asarray(model_meta.lat), np.asarray(model_meta.lon)), (np.asarray(other.lat), np.asarray(other.lon))
    if a[0].shape != b[0].shape or a[1].shape != b[1].shape or not (
            np.allclose(a[0], b[0], atol=1e-4) and np.allclose(a[1], b[1], atol=1e-4)):
        raise DataError(f"{where}: its grid ({b[0].size} lat x {b[1].size} lon, lat {b[0].min():.3g}.."
                        f"{b[0].max():.3g}) is not the model's ({a[0].size} x {a[1].size}, lat "
                        f"{a[0].min():.3g}..{a[0].max():.3g}); "
                        "regrid the input to the model's grid or use a model trained on this one")


def match_static(model_meta: Any, names: Sequence[str], other: Any, where: str) -> None:
    """DataError when `other` lacks one of the static fields `names` the model reads, or holds it
    in other units than the model's cube."""
    missing = [n for n in names if n not in other.static]
    if missing:
        raise DataError(f"{where}: lacks the static field(s) {', '.join(missing)} the model reads — convert it "
                        f"with data.static_variables: [{', '.join(names)}] (the model's data settings)")
    units = [f"{n} in {other.static_units.get(n, '')!r}, the model's in {model_meta.static_units.get(n, '')!r}"
             for n in names if (other.static_units.get(n) or "1") != (model_meta.static_units.get(n) or "1")]
    if units:
        raise DataError(f"{where}: static field units differ: {'; '.join(units)} — reconvert with the model's "
                        "data settings")


def match_params(model_meta: Any, norm: dict[str, Any], other: Any, where: str) -> np.ndarray:
    """float64 [run, P]: every run of `other`'s planet parameters as the model reads them — the
    model's own transform, mean and std (`norm`: its export's param_norm), never `other`'s. The
    planet constants the model's cube carries (radius, gravity, gas constant, cp: its correctors
    read them) must be set too. DataError naming each parameter missing, and for which runs."""
    from astrohpc.data.dataset import planet_params

    names = list(norm["names"])
    needed = names + [n for n in planet_params(model_meta) if n not in names]
    missing = [n for n in needed if n not in other.params]
    unset = {n: [other.run_names[r] for r in np.flatnonzero(np.isnan(other.params[n]))]
             for n in needed if n in other.params}
    unset = {n: runs for n, runs in unset.items() if runs}
    if missing or unset:
        detail = [f"{', '.join(missing)} for every run"] if missing else []
        detail += [f"{n} for run(s) {', '.join(runs[:5])}" for n, runs in unset.items()]
        raise DataError(f"{where}: lacks the planet parameter(s) the model reads: {'; '.join(detail)} — convert "
                        "the runs with their parameters (GCM run folders carry them in summary.json; NetCDF files "
                        "need run_params)")
    return other.normalized_params(norm)
