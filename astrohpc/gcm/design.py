"""Parameter designs: the `sweep:` section -> a list of points, each {config key: value}.

Pure functions. Keys are dotted config paths under `planet.` or `gcm.` (e.g.
`planet.instellation_W_m2`); an unknown key fails the whole sweep at once, while a bad value
(e.g. a negative instellation) only fails its own task, with the reason in the manifest.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import typing
import warnings
from typing import Any

from astrohpc.config import Config, from_dict, to_dict
from astrohpc.errors import ConfigError

SWEEPABLE_SECTIONS = ("planet", "gcm")


def check_key(key: str, where: str) -> None:
    """ConfigError unless `key` is a leaf config path under a sweepable section."""
    parts = key.split(".")
    if len(parts) != 2 or parts[0] not in SWEEPABLE_SECTIONS:
        raise ConfigError(f"{where}: sweep key {key!r} must be SECTION.FIELD with SECTION one of "
                          f"{', '.join(SWEEPABLE_SECTIONS)} (e.g. planet.instellation_W_m2)")
    section_type = typing.get_type_hints(Config)[parts[0]]
    names = [f.name for f in dataclasses.fields(section_type)]
    if parts[1] not in names or parts[1] == "preset":
        import difflib

        close = difflib.get_close_matches(parts[1], names, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(f'{parts[0]}.{c}') for c in close)}?" if close else ""
        raise ConfigError(f"{where}: unknown sweep key {key!r}{hint} (valid fields of {parts[0]}: "
                          f"{', '.join(n for n in names if n != 'preset')})")


def design_points(sweep: Any, source: str = "sweep") -> list[dict[str, Any]]:
    """The points of `sweep` (astrohpc.gcm.settings.SweepSettings), in task order."""
    for i, point in enumerate(sweep.points):
        for key in point:
            check_key(key, f"{source}: sweep.points[{i}]")
    listed = [dict(p) for p in sweep.points]
    if sweep.design == "list":
        if not sweep.points:
            raise ConfigError(f"{source}: design 'list' needs sweep.points: [{{planet.instellation_W_m2: 900}}, ...]")
        return listed
    if not sweep.parameters:
        raise ConfigError(f"{source}: design {sweep.design!r} needs sweep.parameters: {{KEY: ...}}")
    for key in sweep.parameters:
        check_key(key, f"{source}: sweep.parameters")
    for key in sweep.log_scale:
        if key not in sweep.parameters:
            raise ConfigError(f"{source}: sweep.log_scale names {key!r}, which is not in sweep.parameters")
    # with a grid or sampled design, listed points follow the design's (e.g. runs outside its envelope)
    if sweep.design == "grid":
        return _grid(sweep.parameters, source) + listed
    return _sample(sweep, source) + listed


MAXIMIN_CANDIDATES = 200


def maximin_lhs(dims: int, samples: int, seed: int, candidates: int = MAXIMIN_CANDIDATES):
    """The Latin hypercube, of `candidates` drawn from `seed`, whose closest pair of points is
    farthest apart (maximin), in the unit cube [samples, dims]."""
    import numpy as np
    from scipy.spatial.distance import pdist
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    best, best_gap = None, -1.0
    for _ in range(candidates):
        unit = qmc.LatinHypercube(d=dims, seed=rng).random(samples)
        gap = float(pdist(unit).min()) if samples > 1 else 0.0
        if gap > best_gap:
            best, best_gap = unit, gap
    return best


def _grid(parameters: dict[str, Any], source: str) -> list[dict[str, Any]]:
    for key, values in parameters.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: grid values of sweep.parameters.{key} must be a non-empty list")
    keys = list(parameters)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(parameters[k] for k in keys))]


def _sample(sweep: Any, source: str) -> list[dict[str, Any]]:
    from scipy.stats import qmc

    if sweep.samples < 1:
        raise ConfigError(f"{source}: design {sweep.design!r} needs sweep.samples >= 1")
    keys = list(sweep.parameters)
    bounds = []
    for key in keys:
        value = sweep.parameters[key]
        if (not isinstance(value, list) or len(value) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
                or not value[0] < value[1]):
            raise ConfigError(f"{source}: sweep.parameters.{key} must be [low, high] with low < high "
                              f"for design {sweep.design!r}, got {value!r}")
        low, high = float(value[0]), float(value[1])
        if key in sweep.log_scale:
            if low <= 0:
                raise ConfigError(f"{source}: sweep.parameters.{key} is in log_scale, so low must be > 0")
            low, high = math.log10(low), math.log10(high)
        bounds.append((low, high))
    if sweep.design == "sobol":
        sampler = qmc.Sobol(d=len(keys), scramble=True, seed=sweep.seed)
        with warnings.catch_warnings():  # Sobol warns when samples is not a power of 2: allowed here
            warnings.simplefilter("ignore")
            unit = sampler.random(sweep.samples)
    elif sweep.design == "maximin-lhs":
        unit = maximin_lhs(len(keys), sweep.samples, sweep.seed)
    else:
        unit = qmc.LatinHypercube(d=len(keys), seed=sweep.seed).random(sweep.samples)
    points = []
    for row in unit:
        point = {}
        for key, u, (low, high) in zip(keys, row, bounds):
            value = low + float(u) * (high - low)
            point[key] = 10.0 ** value if key in sweep.log_scale else value
        points.append(point)
    return points


def apply_point(base: dict, point: dict[str, Any], source: str) -> Config:
    """The Config of `base` (a plain config dict) with `point` set; ConfigError if a value is invalid."""
    raw = {section: dict(values) if isinstance(values, dict) else values for section, values in base.items()}
    for key, value in point.items():
        section, name = key.split(".")
        raw[section][name] = value
    return from_dict(Config, raw, source=source)


def config_for_point(cfg: Config, point: dict[str, Any], source: str) -> Config:
    return apply_point(to_dict(cfg), point, source)
