"""Section ``peak``: this machine's own matmul and 3x3-convolution GFLOP/s, measured in the same run.

The other sections divide their achieved FLOP/s by these numbers, so a fraction of peak compares
like with like on whatever machine (and neighbour load) the run had. FLOPs: a multiply-add is 2,
as in ``densepred.cost``. bf16 is measured everywhere, but where the CPU has no native bf16
(``cpu_has_fast_bf16()`` false) oneDNN emulates it, so the row is flagged ``emulated`` and runs a
smaller problem (it is ~30x slower than fp32 there).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from .timing import rounded, time_runs, torch_threads, usable_threads

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_case(n: int, dtype: torch.dtype) -> tuple[Callable[[], object], float, str]:
    """An ``n x n`` by ``n x n`` product: (call, FLOPs per call, shape text)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    return (lambda: torch.mm(a, b)), 2.0 * n ** 3, f"{n}x{n}x{n}"


def conv_case(batch: int, dtype: torch.dtype, channels: int = 64, hw: tuple[int, int] = (64, 48)
              ) -> tuple[Callable[[], object], float, str]:
    """A 3x3, stride-1, padded ``channels -> channels`` convolution in channels-last (the layout
    training uses): (call, FLOPs per call, shape text)."""
    h, w = hw
    x = torch.randn(batch, channels, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(channels, channels, 3, 3).to(dtype).contiguous(memory_format=torch.channels_last)
    flops = 2.0 * batch * channels * h * w * channels * 9
    return (lambda: F.conv2d(x, weight, padding=1)), flops, f"{batch}x{channels}x{h}x{w} 3x3 -> {channels}"


def _sizes(quick: bool, emulated: bool) -> tuple[int, int, float]:
    """(matmul n, conv batch, seconds per measurement) for this run."""
    if emulated:  # reference kernels: a small problem is enough to show the gap
        return 384, 2, 0.3
    return (1024, 8, 0.4) if quick else (2048, 32, 1.5)


def measure_gflops(case: tuple[Callable[[], object], float, str], budget_s: float) -> float:
    """Best GFLOP/s over time-bounded repeats (a peak: the least disturbed run counts)."""
    fn, flops, _ = case
    with torch.no_grad():
        times = time_runs(fn, budget_s, min_runs=2, max_runs=50, warmup=1)
    return flops / min(times) / 1e9


def run_peak(quick: bool, log: Callable[[str], None] = print) -> dict[str, Any]:
    """fp32 and bf16 matmul and 3x3 convolution at 1 thread and at all threads."""
    from ..engine.loop import cpu_has_fast_bf16

    fast_bf16 = cpu_has_fast_bf16()
    counts = sorted({1, usable_threads()})
    rows = []
    with torch.no_grad():
        for precision, dtype in DTYPES.items():
            emulated = precision == "bf16" and not fast_bf16
            n, batch, budget = _sizes(quick, emulated)
            for op, case in (("matmul", matmul_case(n, dtype)), ("conv3x3", conv_case(batch, dtype))):
                for threads in counts:
                    with torch_threads(threads):
                        gflops = measure_gflops(case, budget)
                    rows.append({"op": op, "precision": precision, "threads": threads, "shape": case[2],
                                 "gflops_per_s": rounded(gflops), "emulated": emulated})
                    log(f"  peak {op:8s} {precision} {threads} thread(s): {gflops:8.1f} GFLOP/s"
                        + ("  (bf16 emulated: no native bf16)" if emulated else ""))
    return {"rows": rows, "fast_bf16": fast_bf16, "thread_counts": counts,
            "flop_convention": "a multiply-add counts 2 FLOPs; best of time-bounded repeats"}


def peak_gflops(peak: dict[str, Any], precision: str, threads: int) -> float:
    """The machine's peak for ``precision`` with up to ``threads`` threads: the best matmul or
    convolution rate measured at any thread count not above ``threads``. (On shared vCPUs two
    threads can run slower than one; work given two threads can still reach the 1-thread rate.)"""
    rows = [r for r in peak["rows"] if r["precision"] == precision and r["threads"] <= max(1, threads)]
    if not rows:
        raise KeyError(f"no {precision} peak measured at {threads} thread(s) or fewer")
    return max(r["gflops_per_s"] for r in rows)


def against_peak(achieved_gflops_per_s: float, peak: dict[str, Any], precision: str, threads: int
                 ) -> dict[str, Any]:
    """``achieved_gflops_per_s`` of work done in ``precision`` next to the peak of that same
    precision (``peak_gflops``) and the fraction of it. The one place a fraction of peak is made:
    bf16 work is divided by the bf16 peak, fp32 work by the fp32 peak. With no peak measured for
    ``precision`` (e.g. fp16) the peak and fraction are None rather than a wrong comparison."""
    try:
        value: Optional[float] = peak_gflops(peak, precision, threads)
    except KeyError:
        value = None
    return {"precision": precision, "achieved_gflops_per_s": rounded(achieved_gflops_per_s),
            "peak_gflops_per_s": value,
            "fraction_of_peak": rounded(achieved_gflops_per_s / value) if value else None}
