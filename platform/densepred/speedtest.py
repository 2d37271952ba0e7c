"""A short, bounded timing of interchangeable inference candidates on one input.

The two vCPUs are shared and noisy, so candidates are timed in interleaved rounds (A B C A B C ...)
and each keeps its best time: a busy neighbour slows a round, not one candidate. The total time is
bounded: when a few passes of every candidate at the full batch would not fit the budget, a smaller
batch (a prefix of the input) is timed instead and the plan says so. The floor is one call of each
candidate on one input (needed for the accuracy check): on a badly overloaded machine that floor,
not the budget, sets the time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

Runner = Callable[[torch.Tensor], Any]


@dataclass
class Timing:
    """``ms``: best milliseconds per batch of ``batch`` inputs; ``outputs``: each candidate's first
    output (for the accuracy check); ``failed``: candidates that raised, with the reason."""

    batch: int
    ms: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def measure_batch(probe: Runner, x: torch.Tensor, n_candidates: int, budget_s: float) -> int:
    """The largest batch (at most ``x``'s) at which warm-up plus two rounds of ``n_candidates``
    fit ``budget_s``, judged from one call of ``probe`` on a single input."""
    start = time.perf_counter()
    with torch.no_grad():
        probe(x[:1])
    _sync(x)
    per_input = max(time.perf_counter() - start, 1e-6)
    fits = int(budget_s / (3 * n_candidates * per_input))
    return max(1, min(int(x.shape[0]), fits))


def time_candidates(runners: dict[str, Runner], x: torch.Tensor, budget_s: float, max_rounds: int = 5) -> Timing:
    """Call each runner once on ``x`` (warm-up, keeping its output and time), then time interleaved
    rounds while ``budget_s`` lasts (at most ``max_rounds``). A candidate's time is its best call:
    the warm-up call counts too, so a busy machine that leaves no time for a round still gets a
    (pessimistic) figure instead of overrunning the budget."""
    timing = Timing(batch=int(x.shape[0]))
    start = time.perf_counter()
    live: dict[str, Runner] = {}
    with torch.no_grad():
        for name, run in runners.items():
            try:
                timing.outputs[name] = _timed(run, x, timing.ms, name)
                live[name] = run
            except Exception as e:  # noqa: BLE001 - a candidate that fails is reported, never fatal
                timing.failed[name] = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        for _ in range(max_rounds):
            if time.perf_counter() - start > budget_s:
                break
            for name, run in live.items():
                _timed(run, x, timing.ms, name)
    timing.seconds = time.perf_counter() - start
    return timing


def _timed(run: Runner, x: torch.Tensor, best_ms: dict[str, float], name: str) -> Any:
    t = time.perf_counter()
    out = run(x)
    _sync(x)
    ms = (time.perf_counter() - t) * 1e3
    best_ms[name] = min(ms, best_ms.get(name, ms))
    return out


def _sync(x: torch.Tensor) -> None:
    """Wait for queued GPU work: a CUDA call returns before its kernels have run."""
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
