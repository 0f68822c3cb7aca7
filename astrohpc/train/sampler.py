"""A distributed sampler that resumes mid-epoch: torch's DistributedSampler order, plus a skip count.

The order is torch.utils.data.DistributedSampler's: per epoch a permutation from a torch.Generator
seeded with `seed + epoch` (or 0..length-1 without shuffling), cut to a multiple of the world size
(drop_last) or padded with its own head, and rank r takes `indices[r::num_replicas]`.

The sampler does not count what it yields, because DataLoader workers prefetch ahead of training.
The trainer reports progress with `skip(samples_done_this_epoch)` before `state_dict()`, and after
`load_state_dict` the next iteration starts at the first sample not yet trained on.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Iterator

import torch
from torch.utils.data import Sampler

from astrohpc.errors import CheckpointError

logger = logging.getLogger(__name__)


class ResumableDistributedSampler(Sampler[int]):
    """Indices of a dataset of `length` samples for one rank; `len()` is the full per-rank epoch
    length, `remaining` what is left of it after `skip`."""

    def __init__(
        self,
        length: int,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        if length < 1:
            raise ValueError(f"sampler length must be >= 1, got {length}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, num_replicas), got rank={rank}, num_replicas={num_replicas}")
        if drop_last and length < num_replicas:
            raise ValueError(f"drop_last with {length} samples over {num_replicas} ranks leaves none per rank")
        self.length = length
        self.num_replicas = num_replicas
        self.rank = rank
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.consumed = 0

    @property
    def num_samples(self) -> int:
        """Samples per rank in one epoch (torch's rule: drop the tail or pad to a multiple of the world size)."""
        if self.drop_last:
            return self.length // self.num_replicas
        return math.ceil(self.length / self.num_replicas)

    @property
    def remaining(self) -> int:
        """Samples this rank has left in the current epoch."""
        return self.num_samples - self.consumed

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Start epoch `epoch`: a new permutation, nothing consumed."""
        self.epoch = epoch
        self.consumed = 0

    def skip(self, consumed: int) -> None:
        """`consumed` samples of this rank's epoch are done; the next iteration starts after them."""
        if not 0 <= consumed <= self.num_samples:
            raise ValueError(f"consumed must be in [0, {self.num_samples}], got {consumed}")
        self.consumed = consumed

    def epoch_indices(self) -> list[int]:
        """This rank's full index list for the current epoch, consumed part included."""
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.length, generator=generator).tolist()
        else:
            indices = list(range(self.length))
        total = self.num_samples * self.num_replicas
        if total > len(indices):  # pad with the head, repeated when the world is larger than the dataset
            indices = (indices * math.ceil(total / len(indices)))[:total]
        else:
            indices = indices[:total]
        return indices[self.rank : total : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.consumed :])

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": self.consumed,
            "seed": self.seed,
            "num_replicas": self.num_replicas,
            "length": self.length,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the saved epoch and position, with the saved seed.

        Same world size: the rest of the epoch is exactly the uninterrupted one. Another world size:
        the per-rank count converts through the global count (consumed * old // new), so the run
        continues at (nearly, up to rounding) the same point of the same global permutation, but the
        split over ranks, hence the batches and the bits, differ. Raises CheckpointError when the
        dataset length differs (another dataset: the position means nothing).
        """
        if int(state["length"]) != self.length:
            raise CheckpointError(
                f"sampler state is for {state['length']} samples, this dataset has {self.length}; resume "
                "with the same data and split, or start a fresh run"
            )
        for key in ("shuffle", "drop_last"):
            if bool(state.get(key, getattr(self, key))) != getattr(self, key):
                logger.warning("sampler %s was %s when saved, is %s now; the epoch order differs",
                               key, state[key], getattr(self, key))
        if int(state["seed"]) != self.seed:
            logger.info("sampler seed %d replaced by the checkpoint's %d", self.seed, int(state["seed"]))
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        consumed = int(state["consumed"])
        old_replicas = int(state["num_replicas"])
        if old_replicas != self.num_replicas:
            converted = consumed * old_replicas // self.num_replicas
            logger.warning(
                "resuming on %d ranks from a %d-rank run: %d samples per rank done become %d; the sample "
                "order is not bit-identical to the uninterrupted run", self.num_replicas, old_replicas,
                consumed, converted,
            )
            consumed = converted
        self.consumed = min(consumed, self.num_samples)
