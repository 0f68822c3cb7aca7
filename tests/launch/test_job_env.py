"""The array task's index in the whole task list: Slurm's index plus the offset of a split array."""

from __future__ import annotations

from astrohpc.launch.job_env import ARRAY_OFFSET_VARIABLE, array_index


def test_array_index_adds_the_offset_of_a_split_array():
    assert array_index({}) is None  # not an array job
    assert array_index({"SLURM_ARRAY_TASK_ID": "7"}) == 7
    assert array_index({"SLURM_ARRAY_TASK_ID": "7", ARRAY_OFFSET_VARIABLE: "1001"}) == 1008
