"""Choosing a compute thread count by a short measurement (training workers and ``platform bench``).

On shared vCPUs a busy neighbour can make 2 threads far slower than 1: measured here, a W32
training step 15x slower and a stack of small convolutions 13x slower. Every operator ends in an
OpenMP barrier, and libgomp's spin-waiting thread competes with the neighbour for the core the
working thread needs (with ``OMP_WAIT_POLICY=PASSIVE`` set before torch loads, the stall goes
away: 2 threads then run as fast as 1). A few large operators (the peak section) barely show it;
a network of thousands of small ones does, and one stalled W48 step can take minutes.

So a small stack of HRNet-sized convolutions is timed at 1 thread and at all threads,
interleaved (about 0.2 s), and all threads are used only if they win by a clear margin (a real
parallel speed-up); otherwise 1 thread. ``platform bench`` asks for a win in every round (its
figures must not be distorted by a stall); training workers, which also run with
``OMP_WAIT_POLICY=PASSIVE`` (see ``engine.launch``), drop to 1 thread only when more threads
are clearly slower in the median round: the probe runs while Ray and the loader are starting,
and a demotion on a noisy tie once made a whole segmentation run 40 % slower.
"""
from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F

from .bench.timing import median, rounded, torch_threads, usable_threads

MIN_SPEEDUP = 1.3  # all threads must be at least this much faster than 1 in every probe round


def _probe_workload() -> Any:
    """20 small 3x3 convolutions with ReLU: HRNet's many-small-operators pattern, ~25 ms."""
    x = torch.randn(2, 32, 32, 24).contiguous(memory_format=torch.channels_last)
    weights = [torch.randn(32, 32, 3, 3) * 0.05 for _ in range(20)]

    def run() -> None:
        with torch.no_grad():
            y = x
            for w in weights:
                y = F.relu(F.conv2d(y, w, padding=1))

    return run


def choose_threads(rounds: int = 3, max_threads: int = 0, every_round: bool = True,
                   min_speedup: float = MIN_SPEEDUP) -> tuple[int, dict[str, Any]]:
    """(thread count to use, what the probe measured): ``max_threads`` (default: all usable) when
    they beat 1 thread by ``min_speedup`` in each of ``rounds`` interleaved probe runs (or, with
    ``every_round=False``, in the median run), else 1."""
    counts = sorted({1, max_threads or usable_threads()})
    which = "every round" if every_round else "the median round"
    info: dict[str, Any] = {"omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (libgomp spins)"),
                            "rule": f"{counts[-1]} threads only if >= {min_speedup}x faster than 1 in {which}"}
    if len(counts) == 1:
        return 1, {**info, "probe_ms": {"1": None}, "chosen": 1}
    run = _probe_workload()
    times: dict[int, list[float]] = {n: [] for n in counts}
    for n in counts:
        with torch_threads(n):
            run()  # create the kernels at this thread count
    for _ in range(rounds):
        for n in counts:
            with torch_threads(n):
                t0 = time.perf_counter()
                run()
                times[n].append(time.perf_counter() - t0)
    many = counts[-1]
    if every_round:
        wins = all(one >= min_speedup * m for one, m in zip(times[1], times[many]))
    else:
        wins = median(times[1]) >= min_speedup * median(times[many])
    best = many if wins else 1
    ms = {str(n): rounded(median(t) * 1e3) for n, t in times.items()}
    return best, {**info, "probe_ms": ms, "chosen": best}
