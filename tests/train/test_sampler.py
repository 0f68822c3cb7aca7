"""ResumableDistributedSampler: torch's DistributedSampler order and partition, plus mid-epoch resume."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
from torch.utils.data import DistributedSampler

from astrohpc.errors import CheckpointError
from astrohpc.train.sampler import ResumableDistributedSampler


def ranks(length: int, num_replicas: int, **kwargs) -> list[ResumableDistributedSampler]:
    return [ResumableDistributedSampler(length, num_replicas, rank, **kwargs) for rank in range(num_replicas)]


def torch_order(length: int, num_replicas: int, rank: int, epoch: int = 0, **kwargs) -> list[int]:
    sampler = DistributedSampler(range(length), num_replicas=num_replicas, rank=rank, **kwargs)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_two_ranks_cover_each_index_once():
    both = ranks(10, 2)
    for epoch in range(3):
        for sampler in both:
            sampler.set_epoch(epoch)
        seen = [i for sampler in both for i in sampler]
        assert sorted(seen) == list(range(10))
        assert all(len(sampler) == 5 for sampler in both)


def test_without_drop_last_pads_like_torch():
    both = ranks(11, 2, drop_last=False)
    seen = Counter(i for sampler in both for i in sampler)
    assert set(seen) == set(range(11)) and sum(seen.values()) == 12  # one sample repeated as padding
    assert [len(s) for s in both] == [6, 6]


CASES = [
    (length, num_replicas, shuffle, drop_last)
    for length, num_replicas in [(10, 2), (11, 2), (7, 3), (2, 4)]
    for shuffle in (False, True)
    for drop_last in (False, True)
    if not (drop_last and length < num_replicas)  # no samples per rank: refused by the constructor
]


@pytest.mark.parametrize("length,num_replicas,shuffle,drop_last", CASES)
def test_matches_torch_distributed_sampler(length, num_replicas, shuffle, drop_last):
    for rank, sampler in enumerate(ranks(length, num_replicas, shuffle=shuffle, seed=5, drop_last=drop_last)):
        sampler.set_epoch(3)
        expected = torch_order(length, num_replicas, rank, epoch=3, shuffle=shuffle, seed=5, drop_last=drop_last)
        assert list(sampler) == expected
        assert len(sampler) == len(expected)


def test_same_seed_and_epoch_same_order_other_epoch_other_order():
    a, b = ResumableDistributedSampler(50, seed=1), ResumableDistributedSampler(50, seed=1)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(ResumableDistributedSampler(50, seed=2)) != first


def test_skip_gives_the_tail_of_the_epoch():
    sampler = ResumableDistributedSampler(40, num_replicas=2, rank=1, seed=3)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip(7)
    assert list(sampler) == full[7:]
    assert len(sampler) == 20 and sampler.remaining == 13
    sampler.set_epoch(3)
    assert sampler.consumed == 0 and sampler.remaining == 20
    with pytest.raises(ValueError):
        sampler.skip(21)


def test_state_dict_round_trip_resumes_at_same_index():
    sampler = ResumableDistributedSampler(40, num_replicas=2, rank=0, seed=9)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.skip(6)
    resumed = ResumableDistributedSampler(40, num_replicas=2, rank=0, seed=0)
    resumed.load_state_dict(sampler.state_dict())
    assert resumed.epoch == 4 and resumed.seed == 9
    assert list(resumed) == full[6:]


def test_other_world_size_converts_consumed_through_global_count(caplog):
    old = ResumableDistributedSampler(40, num_replicas=4, rank=0)
    old.skip(3)  # 12 samples done globally
    new = ResumableDistributedSampler(40, num_replicas=2, rank=1)
    with caplog.at_level(logging.WARNING, logger="astrohpc.train.sampler"):
        new.load_state_dict(old.state_dict())
    assert new.consumed == 6 and "not bit-identical" in caplog.text
    # Same global permutation: together the new ranks continue where the old ones stopped.
    old_done = {i for rank in range(4) for i in ResumableDistributedSampler(40, 4, rank).epoch_indices()[:3]}
    new_done = {i for rank in range(2) for i in ResumableDistributedSampler(40, 2, rank).epoch_indices()[:6]}
    assert old_done == new_done


def test_other_dataset_length_is_refused():
    state = ResumableDistributedSampler(40).state_dict()
    with pytest.raises(CheckpointError, match="40 samples"):
        ResumableDistributedSampler(41).load_state_dict(state)


def test_state_dict_survives_weights_only(tmp_path):
    sampler = ResumableDistributedSampler(40, num_replicas=2, rank=1)
    sampler.skip(5)
    torch.save(sampler.state_dict(), tmp_path / "s.pt")
    assert torch.load(tmp_path / "s.pt", weights_only=True) == sampler.state_dict()


def test_invalid_arguments():
    with pytest.raises(ValueError):
        ResumableDistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError):
        ResumableDistributedSampler(0)
