"""Timing helpers shared by the bench sections: thread settings and time-bounded repeats.

The machines are shared and noisy, so every measurement runs within a time budget (a busy
neighbour makes a run slower, never longer than planned) and keeps all its samples: peaks take
the best sample, throughputs the median.
"""
from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch


def usable_threads() -> int:
    """Logical CPUs this process may run on (its affinity mask, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op threads, then restore the previous setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_runs(fn: Callable[[], object], budget_s: float, min_runs: int = 1, max_runs: int = 20,
              warmup: int = 1) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed ones.

    Timed calls stop after ``max_runs`` or once the timed calls have taken ``budget_s`` (at least
    ``min_runs`` always run, so a slow machine still gives a number)."""
    for _ in range(max(0, warmup)):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max(1, max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= min_runs and time.perf_counter() - start >= budget_s:
            break
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def rounded(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant digits (JSON stays readable; the noise is larger anyway)."""
    return float(f"{x:.{digits}g}")
