"""Section ``infer``: batch-1 latency and batched throughput, eager fp32 against the optimised
inference path (``densepred.inference.optimize(model, example_input)``).

The optimised path is imported when the section runs; if it does not exist or fails on a model,
that model's ``optimised`` entry is ``null`` and ``optimised_error`` says why: the eager numbers
are still measured. Eager fp32 is the model as built (NCHW, eval mode, ``torch.no_grad``).
Each path's fraction of peak divides by the peak of the precision it runs in (the optimised
plan's ``precision``: a bf16 plan against the bf16 peak), never bf16 work by the fp32 peak.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import torch

from .models import ModelCase, build, forward_gflops
from .peak import against_peak, peak_gflops
from ..threadprobe import choose_threads
from .timing import median, rounded, time_runs, torch_threads

BUDGET_ENV = "DENSEPRED_INFERENCE_BUDGET_S"  # optimize()'s candidate-measurement time bound
QUICK_OPTIMISE_BUDGET_S = 2.0

# (case, throughput batch, seconds per timed measurement). Segmentation's batch is reduced from
# 32: one 512x1024 image already has ~1/30 of the pose batch's work on these CPUs.
FULL = ((ModelCase("pose_hrnet_w32", "pose", (256, 192)), 32, 6.0),
        (ModelCase("seg_hrnetv2_w18_small_v2", "seg", (512, 1024)), 4, 5.0))
QUICK = ((ModelCase("pose_hrnet_w32", "pose", (256, 192)), 2, 0.5),
         (ModelCase("seg_hrnetv2_w18_small_v2", "seg", (256, 512)), 2, 0.5))


def measure_path(fn: Callable[[torch.Tensor], Any], case: ModelCase, batch: int, budget_s: float,
                 fwd_gflops: float, peak: dict[str, Any], precision: str, threads: int) -> dict[str, Any]:
    """Batch-1 latency (median) and batch-``batch`` throughput of ``fn`` under ``torch.no_grad``,
    with its fraction of the ``precision`` peak (``path_figures``)."""
    one = torch.randn(1, 3, *case.input_hw)
    many = torch.randn(batch, 3, *case.input_hw)
    with torch.no_grad():
        lat = median(time_runs(lambda: fn(one), budget_s, min_runs=3, max_runs=20, warmup=1))
        per_batch = median(time_runs(lambda: fn(many), budget_s, min_runs=1, max_runs=10, warmup=1))
    return path_figures(lat, per_batch, batch, fwd_gflops, peak, precision, threads)


def path_figures(latency_s: float, per_batch_s: float, batch: int, fwd_gflops: float, peak: dict[str, Any],
                 precision: str, threads: int) -> dict[str, Any]:
    """One inference path's row from its timings: latency, img/s, and achieved GFLOP/s against the
    peak of the same ``precision`` at up to ``threads`` threads."""
    img_s = batch / per_batch_s
    return {"latency_ms_batch1": rounded(latency_s * 1e3), "batch": batch, "img_per_s": rounded(img_s),
            **against_peak(fwd_gflops * img_s, peak, precision, threads)}


def load_optimize() -> tuple[Optional[Callable], Optional[str]]:
    """``densepred.inference.optimize``, or None and the reason it cannot be used."""
    try:
        from ..inference import optimize  # written separately; may not exist yet
    except Exception as e:  # ImportError, or an error inside the module
        return None, f"densepred.inference.optimize unavailable: {type(e).__name__}: {e}"
    return optimize, None


def optimised_entry(optimize: Callable, model: torch.nn.Module, case: ModelCase, batch: int,
                    budget_s: float, fwd: float, peak: dict[str, Any], threads: int) -> dict[str, Any]:
    """Optimise ``model`` for a batch-1 example and measure it like the eager path, against the
    peak of the precision its plan runs in."""
    t0 = time.perf_counter()
    with torch.no_grad():
        fast = optimize(model, torch.randn(1, 3, *case.input_hw))
    setup_s = time.perf_counter() - t0
    plan = getattr(fast, "plan", None)
    precision = plan.get("precision", "fp32") if isinstance(plan, dict) else "fp32"
    entry = measure_path(fast, case, batch, budget_s, fwd, peak, precision, threads)
    entry["optimise_s"] = rounded(setup_s)
    describe = getattr(fast, "describe", None)
    entry["plan"] = str(describe()) if callable(describe) else type(fast).__name__
    return entry


@contextmanager
def optimise_budget(quick: bool) -> Iterator[None]:
    """Quick mode gives ``optimize``'s own candidate measurement a shorter time bound (unless the
    user set ``$DENSEPRED_INFERENCE_BUDGET_S``)."""
    if not quick or os.environ.get(BUDGET_ENV):
        yield
        return
    os.environ[BUDGET_ENV] = str(QUICK_OPTIMISE_BUDGET_S)
    try:
        yield
    finally:
        os.environ.pop(BUDGET_ENV, None)


def run_infer(quick: bool, peak: dict[str, Any], log: Callable[[str], None] = print,
              official_repo: Optional[Any] = None) -> dict[str, Any]:
    """One entry per model: ``eager_fp32`` and ``optimised`` (or null with ``optimised_error``);
    with ``official_repo`` the W32 entry also times the official code's model, eager fp32."""
    optimize, why = load_optimize()
    threads, probe = choose_threads()
    log(f"  infer threads: {threads} (probe ms by threads: {probe['probe_ms']})")
    entries = []
    with torch_threads(threads), optimise_budget(quick):
        for case, batch, budget in (QUICK if quick else FULL):
            entries.append(infer_entry(case, batch, budget, optimize, why, threads, peak))
            if official_repo is not None and case.name == "pose_hrnet_w32":
                add_official(entries[-1], official_repo, case, batch, budget, peak, threads)
            log(entry_line(entries[-1]))
    return {"models": entries, "quick_inputs_reduced": quick, "threads": threads, "thread_probe": probe,
            "flops": "forward FLOPs (densepred.cost.count_gflops) x img/s; peak: the path's own precision "
                     "(fp32 or bf16) up to the same threads"}


def infer_entry(case: ModelCase, batch: int, budget: float, optimize: Optional[Callable], why: Optional[str],
                threads: int, peak: dict[str, Any]) -> dict[str, Any]:
    """Eager fp32 and (when available) optimised numbers of one model."""
    model = build(case).eval()
    fwd = forward_gflops(case, model)
    entry: dict[str, Any] = {"model": case.name, "input_hw": list(case.input_hw), "threads": threads,
                             "forward_gflop_per_img": rounded(fwd),
                             "peak_gflops_per_s": peak_gflops(peak, "fp32", threads),
                             "eager_fp32": measure_path(model, case, batch, budget, fwd, peak, "fp32", threads),
                             "optimised": None, "optimised_error": why}
    if optimize is not None:
        try:
            entry["optimised"] = optimised_entry(optimize, model, case, batch, budget, fwd, peak, threads)
            entry["optimised_error"] = None
        except Exception as e:  # the optimised path is someone else's: record, keep going
            entry["optimised_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
    return entry


def add_official(entry: dict[str, Any], repo: Any, case: ModelCase, batch: int, budget: float,
                 peak: dict[str, Any], threads: int) -> None:
    """The official code's W32 (eager, fp32, NCHW) timed like ours, and our optimised path's
    batch-1 speed-up over it (the figure the README's target is about)."""
    from .official import build_official_w32

    try:
        model = build_official_w32(repo, is_train=False).eval()
        entry["official_eager_fp32"] = measure_path(model, case, batch, budget, entry["forward_gflop_per_img"],
                                                    peak, "fp32", threads)
    except Exception as e:  # the official code is not ours: record, keep going
        entry["official_eager_fp32"] = None
        entry["official_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
        return
    opt = entry.get("optimised")
    if opt:
        entry["speedup_vs_official_b1"] = rounded(entry["official_eager_fp32"]["latency_ms_batch1"]
                                                  / max(opt["latency_ms_batch1"], 1e-9))


def entry_line(entry: dict[str, Any]) -> str:
    eager, opt = entry["eager_fp32"], entry["optimised"]
    h, w = entry["input_hw"]
    return (f"  infer {entry['model']} {h}x{w}: eager {eager['latency_ms_batch1']:.4g} ms (b1), "
            f"{eager['img_per_s']:.3g} img/s (b{eager['batch']}); optimised: "
            + (f"{opt['latency_ms_batch1']:.4g} ms, {opt['img_per_s']:.3g} img/s [{opt.get('plan', '?')}]"
               if opt else f"none ({entry['optimised_error'][:80]})"))
