"""The planets a prediction is asked for: parameters by name, from a mapping, a list or a CSV file,
checked against what the model reads.

A parameter the model reads but the training runs all shared (one value: nothing was learned
about it) may be left out and takes that value; any other the model reads must be given; a name
the model does not know is an error naming the ones it does.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from astrohpc.errors import ConfigError


def planet_rows(params: Mapping[str, float] | None = None, planets: Sequence[Mapping[str, float]] = (),
                csv_path: Optional[str | Path] = None) -> list[dict[str, float]]:
    """One dict per planet from exactly one of `params` (one planet), `planets` (several) or
    `csv_path` (one per row; a header of parameter names). ConfigError naming what is wrong."""
    given = [name for name, v in (("predict.params", params), ("predict.planets", planets),
                                  ("predict.planets_csv", csv_path)) if v]
    if len(given) != 1:
        raise ConfigError(f"give the planets in exactly one of predict.params, predict.planets, predict.planets_csv "
                          f"(got {', '.join(given) or 'none'})")
    if params:
        return [{str(k): float(v) for k, v in params.items()}]
    if planets:
        return [{str(k): float(v) for k, v in p.items()} for p in planets]
    path = Path(csv_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such CSV file (predict.planets_csv: one planet per row, a header of names)")
    rows = []
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append({k.strip(): float(v) for k, v in row.items() if k and v not in (None, "")})
            except ValueError as exc:
                raise ConfigError(f"{path}: line {i}: not a number ({exc})") from None
    if not rows:
        raise ConfigError(f"{path}: no planet in it (a header of parameter names, then one row per planet)")
    return rows


def shared_values(meta: Any, names: Sequence[str], runs: Sequence[int]) -> dict[str, float]:
    """Parameters of `names` that take one value over the training runs `runs`: name -> value."""
    out = {}
    for name in names:
        values = np.asarray(meta.params[name], np.float64)[list(runs)] if name in meta.params else np.array([np.nan])
        if np.all(np.isfinite(values)) and np.ptp(values) <= 1e-12 * (1.0 + abs(values[0])):
            out[name] = float(values[0])
    return out


def param_matrix(rows: Sequence[Mapping[str, float]], names: Sequence[str], defaults: Mapping[str, float],
                 where: str) -> np.ndarray:
    """float64 [planet, P] in the order of `names`; a name absent from a row takes `defaults`.
    ConfigError for a name the model does not read, or one it needs that is not given."""
    names = list(names)
    matrix = np.empty((len(rows), len(names)))
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown parameter {', '.join(unknown)} (planet {i + 1}); the model reads "
                              f"{', '.join(names)}")
        missing = [n for n in names if n not in row and n not in defaults]
        if missing:
            raise ConfigError(f"{where}: parameter {', '.join(missing)} not given (planet {i + 1}); the model reads "
                              f"{', '.join(names)} — those the training runs shared may be left out "
                              f"({', '.join(sorted(defaults)) or 'none'})")
        matrix[i] = [row.get(n, defaults.get(n, np.nan)) for n in names]
    return matrix
