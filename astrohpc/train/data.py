"""What a training run reads: the cube's runs split whole, the datasets of each task, the loaders.

emulator: windows of 1 input state and `train.unroll_steps` targets (WindowDataset) of the
    training runs; validation: the same windows of the validation runs.
climate: one item per run (RunDataset: planet parameters, the first spin-up days, the time mean).

Items stay in physical units (the models normalise); planet parameters are normalised over the
TRAINING runs only, so nothing of a held-out run leaks into the inputs' scaling. The training
sampler shards a seeded permutation over the ranks and can resume mid-epoch
(astrohpc.train.sampler); the global batch `train.batch_size` is split evenly over the ranks.
Every DataLoader gets its own seeded generator: creating an iterator then never draws from the
global RNG, which is what keeps a resumed run bit-identical to an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, Dataset

from astrohpc.data.cube import read_meta
from astrohpc.data.split import RunSplit, split_runs
from astrohpc.errors import ConfigError, DataError
from astrohpc.train.sampler import ResumableDistributedSampler


@dataclass
class TrainData:
    """The split, the datasets and the sampler of one run (see the module doc)."""

    cube: Path
    meta: Any
    split: RunSplit
    train: Dataset
    validation: Optional[Dataset]
    sampler: ResumableDistributedSampler
    rank_batch: int
    param_norm: dict

    @property
    def steps_per_epoch(self) -> int:
        return len(self.sampler) // self.rank_batch


def cube_path(cfg: Any) -> Path:
    """train.cube, else data.cube; ConfigError when neither is set, DataError when missing."""
    path = cfg.train.cube or cfg.data.cube
    if not path:
        raise ConfigError("no cube to train on: set train.cube (or data.cube) to a cube written by "
                          "`astrohpc data convert` or a sweep")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such cube (train.cube / data.cube); convert the GCM output first")
    return path.resolve()  # exports record where it is, wherever the model is used from


def _dataset(cfg: Any, model: Any, cube: Path, runs: list[int], param_norm: dict) -> Dataset:
    from astrohpc.data.dataset import WindowDataset
    from astrohpc.data.runs import RunDataset

    plan = model.plan
    common = {"variables": list(plan.variables), "runs": runs, "param_norm": param_norm, "static": bool(plan.static)}
    if cfg.model.task == "emulator":
        return WindowDataset(cube, 1, cfg.train.unroll_steps, **common)
    spectral = cfg.model.mode in ("spectral", "joint")
    return RunDataset(cube, cfg.model.spinup_steps, spectra=spectral, **common)


def build_data(cfg: Any, model_for: Any, world_size: int = 1, rank: int = 0) -> tuple[TrainData, Any]:
    """(TrainData, model): `model_for(meta, train_runs)` builds the model (normalisation pooled over
    the training runs) once the split is known. ConfigError for a batch that does not split over
    the ranks or does not fit the training set."""
    cube = cube_path(cfg)
    meta = read_meta(cube)
    t = cfg.train
    split = split_runs(meta.run_names, t.validation_runs, t.test_runs, t.validation_fraction, cfg.run.seed)
    if t.batch_size % world_size:
        raise ConfigError(f"train.batch_size = {t.batch_size} does not split over {world_size} ranks; "
                          f"use a multiple of {world_size}")
    rank_batch = t.batch_size // world_size
    model = model_for(meta, list(split.train))
    param_norm = meta.param_normalization(list(model.plan.params), runs=list(split.train))
    train = _dataset(cfg, model, cube, list(split.train), param_norm)
    validation = (_dataset(cfg, model, cube, list(split.validation), param_norm)
                  if t.validate and split.validation else None)
    sampler = ResumableDistributedSampler(len(train), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=cfg.run.seed, drop_last=True)
    if len(sampler) < rank_batch:
        raise ConfigError(f"train.batch_size = {t.batch_size}: the {len(split.train)} training runs give "
                          f"{len(train)} samples, {len(sampler)} per rank, fewer than a batch of {rank_batch}; "
                          "lower train.batch_size or train on more runs")
    return TrainData(cube, meta, split, train, validation, sampler, rank_batch, param_norm), model


def _generator(seed: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def train_loader(data: TrainData, num_workers: int, seed: int) -> DataLoader:
    """The training loader of the current epoch (its sampler decides order and resume point)."""
    return DataLoader(data.train, batch_size=data.rank_batch, sampler=data.sampler, drop_last=True,
                      num_workers=num_workers, generator=_generator(seed), persistent_workers=False)


def validation_loader(data: TrainData, world_size: int, rank: int, num_workers: int = 0) -> Optional[DataLoader]:
    """This rank's share of the validation samples (rank r: samples r, r+W, …; none repeated —
    the sums are all-reduced, so uneven shares are fine), in order."""
    if data.validation is None:
        return None
    share = torch.utils.data.Subset(data.validation, list(range(rank, len(data.validation), world_size)))
    return DataLoader(share, batch_size=data.rank_batch, shuffle=False, num_workers=num_workers,
                      generator=_generator(0))
