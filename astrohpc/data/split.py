"""Whole runs held out: which runs of a cube train, validate and test a surrogate.

Accuracy is measured on runs the model never saw (whole runs: planet parameters not in the
training set), so a split is by run, never by time step. Named runs go where they are told;
otherwise a seeded draw takes `validation_fraction` of the remaining runs (at least one) for
validation. The same names, fraction and seed give the same split on every rank and every restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from astrohpc.errors import ConfigError


@dataclass(frozen=True)
class RunSplit:
    """Run indices into the cube (sorted) and their names."""

    train: tuple[int, ...]
    validation: tuple[int, ...]
    test: tuple[int, ...]
    names: tuple[str, ...]

    def describe(self) -> dict[str, list[str]]:
        return {part: [self.names[i] for i in getattr(self, part)] for part in ("train", "validation", "test")}


def split_runs(run_names: Sequence[str], validation_runs: Sequence[str] = (), test_runs: Sequence[str] = (),
               validation_fraction: float = 0.25, seed: int = 0) -> RunSplit:
    """See the module doc. ConfigError for a name the cube does not have, or for a split that
    leaves no training run."""
    names = list(run_names)
    unknown = [n for n in [*validation_runs, *test_runs] if n not in names]
    if unknown:
        raise ConfigError(f"train: no run named {', '.join(unknown)} in the cube; its runs: {', '.join(names)}")
    test = sorted(names.index(n) for n in test_runs)
    validation = sorted(names.index(n) for n in validation_runs)
    rest = [i for i in range(len(names)) if i not in test and i not in validation]
    if not validation and validation_fraction > 0 and len(rest) > 1:
        count = max(1, int(round(validation_fraction * len(rest))))
        count = min(count, len(rest) - 1)
        draw = np.random.default_rng(seed).permutation(rest)[:count]
        validation = sorted(int(i) for i in draw)
        rest = [i for i in rest if i not in validation]
    if not rest:
        raise ConfigError(f"train: no run left to train on ({len(names)} runs, {len(validation)} for validation, "
                          f"{len(test)} for testing); hold out fewer runs")
    return RunSplit(tuple(rest), tuple(validation), tuple(test), tuple(names))
