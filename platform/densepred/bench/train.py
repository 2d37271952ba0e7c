"""Section ``train``: training-step throughput (forward + backward + Adam step) and achieved FLOP/s
as a fraction of the machine's peak measured in the same run.

Training FLOPs are taken as **3 x the forward FLOPs** counted with ``densepred.cost.count_gflops``
(the backward pass computes gradients for both activations and weights, about twice the forward).
The model is in channels-last with channels-last inputs, as the training engine runs it
(``train.channels_last``), and each precision is the engine's: fp32, and the default that
``amp_mode`` chooses (bf16 autocast on CPUs with native bf16; on other CPUs the default is fp32,
measured once). Losses are the tasks' own (``JointsMSELoss``, ``SegCrossEntropy``).

With ``--official-repo`` the official HRNet pose code's own fp32 step (``bench.official``) is timed
next to our W32 rows, and each row gets its speed-up over it.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from .models import ModelCase, build, forward_gflops
from .peak import against_peak
from ..threadprobe import choose_threads
from .timing import median, rounded, torch_threads, usable_threads

# (case, batch, timed steps) for the full run; quick mode uses smaller inputs and says so.
FULL = ((ModelCase("pose_hrnet_w32", "pose", (256, 192)), 4, 3),
        (ModelCase("seg_hrnetv2_w48", "seg", (512, 1024)), 1, 2))
QUICK = ((ModelCase("pose_hrnet_w32", "pose", (128, 96)), 2, 2),
         (ModelCase("seg_hrnetv2_w48", "seg", (128, 256)), 1, 2))
OFFICIAL_CASE = "pose_hrnet_w32"  # the model timed against the official code with --official-repo


def _loss_fn(case: ModelCase, batch: int) -> Callable[[dict], torch.Tensor]:
    """The task's criterion on a fixed synthetic target of the right shape."""
    h, w = case.input_hw
    if case.head == "pose":
        from ..tasks.pose.task import JointsMSELoss

        criterion = JointsMSELoss(use_target_weight=True)
        target, weight = torch.rand(batch, 17, h // 4, w // 4), torch.ones(batch, 17, 1)
        return lambda out: criterion(out["pose"].float(), target, weight)
    from ..tasks.segmentation.task import SegCrossEntropy

    criterion = SegCrossEntropy(class_weights="official")
    label = torch.randint(0, 19, (batch, h, w))
    return lambda out: criterion(out["seg"], label)


def _autocast(precision: str) -> Any:
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_train_steps(case: ModelCase, model: torch.nn.Module, batch: int, steps: int,
                     precision: str) -> list[float]:
    """Seconds of each of ``steps`` timed training steps of ``model`` (put in train mode and
    channels-last) after one untimed warm-up step."""
    model = model.train().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, *case.input_hw).contiguous(memory_format=torch.channels_last)
    loss_of = _loss_fn(case, batch)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with _autocast(precision):
            out = model(images)
        loss = loss_of(out)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i > 0:  # the first step creates kernels and optimizer state
            times.append(time.perf_counter() - t0)
    return times


def _official(repo: Path, case: ModelCase, batch: int, steps: int, threads: int, fwd: float,
              peak: dict[str, Any], log: Callable[[str], None]) -> dict[str, Any]:
    """The official fp32 step (``bench.official``) with its fraction of peak, or ``{"error": ...}``
    (our rows stay), plus the parity of our model with the official one."""
    from .official import official_w32_step, parity_max_abs_diff

    try:
        official = official_w32_step(repo, batch, steps, threads, case.input_hw)
        figures = against_peak(3 * fwd * official["img_per_s"], peak, "fp32", threads)
        official.update(achieved_gflops_per_s=figures["achieved_gflops_per_s"],
                        fraction_of_peak=figures["fraction_of_peak"])
        official.update(parity_max_abs_diff(repo))
    except Exception as e:  # a broken or incompatible checkout should not hide our own figures
        official = {"repo": str(repo), "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
        log(f"  train official {case.label}: failed: {official['error']}")
        return official
    log(f"  train official {case.label} b{batch} fp32 NCHW: {official['img_per_s']:.3g} img/s "
        f"(parity max |diff| {official['parity_max_abs_diff']:.2g})")
    return official


def precisions_to_run() -> list[str]:
    """fp32 and the engine's default precision (the same on CPUs without native bf16)."""
    from ..engine.loop import amp_mode

    default = amp_mode(torch.device("cpu"), True)
    return ["fp32"] if default == "fp32" else ["fp32", default]


def run_train(quick: bool, peak: dict[str, Any], log: Callable[[str], None] = print,
              official_repo: Optional[Path] = None) -> dict[str, Any]:
    """One row per (model, precision): img/s, achieved GFLOP/s and the fraction of peak. With
    ``official_repo`` (a checked checkout, ``bench.official``), the official code's fp32 W32 step is
    timed right after ours at the same input, batch, steps and threads: ``official`` in the result,
    and ``speedup_vs_official_fp32`` on our W32 rows."""
    from ..engine.loop import amp_mode

    default = amp_mode(torch.device("cpu"), True)
    threads, probe = choose_threads()
    log(f"  train threads: {threads} (probe ms by threads: {probe['probe_ms']})")
    rows: list[dict[str, Any]] = []
    official: dict[str, Any] = {}
    for case, batch, steps in (QUICK if quick else FULL):
        for precision in precisions_to_run():
            model = build(case)  # fresh weights and optimizer state per precision
            fwd = forward_gflops(case, model)
            with torch_threads(threads):
                step_s = median(time_train_steps(case, model, batch, steps, precision))
            img_s = batch / step_s
            figures = against_peak(3 * fwd * img_s, peak, precision, threads)
            rows.append({"model": case.name, "input_hw": list(case.input_hw), "batch": batch, "steps": steps,
                         "precision": precision, "default_precision": precision == default,
                         "channels_last": True, "threads": threads, "step_s": rounded(step_s),
                         "img_per_s": rounded(img_s), "forward_gflop_per_img": rounded(fwd),
                         "train_gflop_per_img": rounded(3 * fwd), **figures})
            log(f"  train {case.label} b{batch} {precision}: {img_s:.3g} img/s, "
                f"{figures['achieved_gflops_per_s']:.3g} GFLOP/s = {figures['fraction_of_peak']:.0%} "
                f"of the {precision} peak")
        if official_repo is not None and case.name == OFFICIAL_CASE:
            official = _official(official_repo, case, batch, steps, threads, fwd, peak, log)
            for r in rows:
                if r["model"] == OFFICIAL_CASE and "img_per_s" in official:
                    r["speedup_vs_official_fp32"] = rounded(r["img_per_s"] / official["img_per_s"])
    extra = {"official": official} if official_repo is not None else {}
    return {"rows": rows, **extra, "quick_inputs_reduced": quick, "optimizer": "Adam",
            "flops": "training FLOPs = 3 x forward FLOPs (densepred.cost.count_gflops, multiply-add = 2)",
            "peak": "the best matmul or 3x3 convolution rate at the same precision and up to the same threads",
            "threads": threads, "thread_probe": probe, "threads_available": usable_threads()}
