"""What a model costs: parameters, forward GFLOPs at the task's input size, batch-1 latency.

Every number is measured on the model itself, never looked up in a table, so any width, fusion
setting or head a sweep builds is costed the same way::

    from densepred.cost import model_cost, task_input_size
    cost = model_cost(model, task_input_size(task), torch.device("cpu"))
    # {'params': 1234567, 'gflops': 0.41, 'latency_ms': 12.3}

FLOP convention: ``torch.utils.flop_counter.FlopCounterMode`` counts one multiply-add as **2**
FLOPs and counts convolutions and matrix products (the operators in its registry); element-wise
work (BatchNorm, ReLU, the additions of fusion layers, interpolation) is not counted.
``gflops`` is that total / 1e9. Papers that quote "GFLOPs" as multiply-adds (the HRNet papers
do: 7.1 for W32 at 256x192, where this counts 15.3) give about half of this number.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def task_input_size(task: Any) -> tuple[int, int]:
    """``(H, W)`` of one network input of ``task`` (its ``cost_input_size()``): the pose crop
    (``data.input_size``), the segmentation training crop (``data.augment.crop_size``)."""
    size = task.cost_input_size()
    h, w = (int(v) for v in size)
    return h, w


def count_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def _model_on(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` itself if it already lives on ``device``, else a copy moved there (the caller's
    model is never moved as a side effect)."""
    devices = {t.device for t in list(model.parameters()) + list(model.buffers())}
    if not devices or devices == {device}:
        return model
    return copy.deepcopy(model).to(device)


def _input(model: nn.Module, input_size_hw: Sequence[int], device: torch.device, in_channels: int) -> torch.Tensor:
    h, w = (int(v) for v in input_size_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"input size must be positive (H, W), got {tuple(input_size_hw)}")
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    return torch.zeros(1, in_channels, h, w, device=device, dtype=dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_gflops(model: nn.Module, input_size_hw: Sequence[int], device: torch.device | str = "cpu",
                 in_channels: int = 3) -> float:
    """Forward GFLOPs of one image of ``input_size_hw`` (H, W); a multiply-add counts 2 FLOPs."""
    device = torch.device(device)
    model = _model_on(model, device)
    x = _input(model, input_size_hw, device, in_channels)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def measure_latency_ms(model: nn.Module, input_size_hw: Sequence[int], device: torch.device | str = "cpu",
                       runs: int = 10, warmup: int = 2, max_seconds: float = 5.0,
                       in_channels: int = 3) -> float:
    """Median wall time in ms of a batch-1 forward (eval mode, no autograd) after ``warmup`` runs.

    A time budget keeps a large model on a CPU from stalling a trial: warm-up stops once it has
    taken ``max_seconds / 2`` and timed runs once everything has taken ``max_seconds`` (at least
    one of each always runs). The forward runs with the caller's torch thread settings (a Ray
    worker has ``OMP_NUM_THREADS=1``); on shared CPUs a busy neighbour shows up in the number.
    """
    device = torch.device(device)
    model = _model_on(model, device)
    x = _input(model, input_size_hw, device, in_channels)
    was_training = model.training
    model.eval()
    times: list[float] = []
    try:
        with torch.no_grad():
            start = time.perf_counter()
            for _ in range(max(0, int(warmup))):
                model(x)
                _sync(device)
                if time.perf_counter() - start > max_seconds / 2:
                    break
            for _ in range(max(1, int(runs))):
                t0 = time.perf_counter()
                model(x)
                _sync(device)
                times.append(time.perf_counter() - t0)
                if time.perf_counter() - start > max_seconds:
                    break
    finally:
        model.train(was_training)
    return statistics.median(times) * 1e3


def model_cost(model: nn.Module, input_size_hw: Sequence[int], device: torch.device | str = "cpu",
               latency_runs: int = 10, warmup: int = 2, max_seconds: float = 5.0,
               in_channels: int = 3) -> dict[str, Any]:
    """Cost of ``model`` for one ``(H, W)`` input on ``device``.

    Returns ``params`` (int), ``gflops`` (forward FLOPs of one image / 1e9, counted with
    ``FlopCounterMode``: a multiply-add is 2 FLOPs, element-wise ops are not counted) and
    ``latency_ms`` (median of ``latency_runs`` timed batch-1 forwards in eval mode under
    ``torch.no_grad`` after ``warmup`` untimed ones, within a budget of about ``max_seconds``; see
    ``measure_latency_ms``). The model's train/eval mode is restored, and
    a model that lives on another device is costed as a copy (the caller's model is not moved).
    """
    device = torch.device(device)
    on_device = _model_on(model, device)
    gflops = count_gflops(on_device, input_size_hw, device, in_channels)
    latency = measure_latency_ms(on_device, input_size_hw, device, runs=latency_runs, warmup=warmup,
                                 max_seconds=max_seconds, in_channels=in_channels)
    return {"params": count_params(model), "gflops": float(gflops), "latency_ms": float(latency)}
