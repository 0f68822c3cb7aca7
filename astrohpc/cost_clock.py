"""One clock for what a computation costs, used alike for ExoPlaSim and for the surrogates.

Two measures, reported side by side and never mixed:

    cpu_s         CPU time (user + system) of this process, every thread, plus that of its child
                  processes that ended and were waited for during the interval
                  (getrusage RUSAGE_SELF + RUSAGE_CHILDREN): ExoPlaSim's MPI ranks and its
                  postprocessor, torch's intra-op threads. Idle waiting on a loaded machine costs
                  nothing here.
    wall_core_s   wall time × the cores the work held (ExoPlaSim: gcm.ncpus ranks; a surrogate:
                  its torch threads): what an allocation is charged, idle and setup included.

A child still running when the interval ends is not counted (the runs here wait for theirs).
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from typing import Iterator

CPU_LABEL = "CPU time, process + children (getrusage)"
WALL_CORE_LABEL = "wall time × cores held"


def process_tree_cpu_s() -> float:
    """User + system CPU seconds of this process and of its waited-for descendants so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@contextmanager
def cost_clock(cores: int) -> Iterator[dict]:
    """Time the block: the yielded dict is filled on exit with wall_s, cpu_s (see the module doc),
    cores and wall_core_s = wall_s × cores."""
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    out: dict = {}
    cpu0, wall0 = process_tree_cpu_s(), time.perf_counter()
    try:
        yield out
    finally:
        wall = time.perf_counter() - wall0
        out.update(wall_s=wall, cpu_s=process_tree_cpu_s() - cpu0, cores=int(cores), wall_core_s=wall * cores)
