"""ONNX export of a model and its check with ONNX Runtime.

The graph has one input, ``image`` (N, 3, H, W), and one output per head (``pose``, ``seg``; a head
that returns several tensors gives ``pose.0``, ``pose.1``...). ``onnx`` and ``onnxruntime`` are an
optional extra (``pip install '.[export]'``).

Exporter: torch 2.13's default (``dynamo=True``) exporter needs ``onnxscript`` and took ~15 s for a
tiny HRNet here against ~1 s for the TorchScript exporter, which is still in the pinned torch and
writes opset 17 directly, so the TorchScript one is used.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
from torch import nn
from torch.utils import _pytree as pytree

from .errors import PlatformError

OPSET = 17
INPUT_NAME = "image"
MISSING = "platform export needs onnx and onnxruntime: pip install '.[export]'"
# ONNX Runtime's own fusions reorder float sums: it agrees with PyTorch to ~1e-6 of the output scale.
CHECK_TOLERANCE = 1e-4

__all__ = ["OPSET", "MISSING", "require_onnx", "onnxruntime_available", "output_names", "export_onnx",
           "OrtModel", "ExportCheck", "export_and_check"]


def require_onnx() -> tuple[Any, Any]:
    """The ``onnx`` and ``onnxruntime`` modules, or a one-line PlatformError saying how to get them."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise PlatformError(MISSING) from None
    return onnx, onnxruntime


def onnxruntime_available() -> bool:
    try:
        require_onnx()
    except PlatformError:
        return False
    return True


def output_names(outputs: Any) -> list[str]:
    """One name per tensor of a model's output, in the order the exporter flattens it:
    ``{"pose": t}`` -> ``["pose"]``, ``{"pose": [a, b]}`` -> ``["pose.0", "pose.1"]``."""
    leaves, _ = pytree.tree_flatten_with_path(outputs)
    names = [".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path) for path, _ in leaves]
    return [n or "output" for n in names]


def export_onnx(model: nn.Module, example: torch.Tensor, f: Union[str, os.PathLike, io.BytesIO], *,
                dynamic_batch: bool = False) -> tuple[list[str], pytree.TreeSpec]:
    """Write ``model`` (eval mode, fp32) as ONNX to ``f`` (a path or a buffer); returns the output
    names and the output structure (for ``OrtModel``). With ``dynamic_batch`` the batch dimension
    is free, else fixed to ``example``'s."""
    model = model.eval()
    with torch.no_grad():
        outputs = model(example)
    names = output_names(outputs)
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *names)} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(model, (example,), f, dynamo=False, opset_version=OPSET, input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=axes, do_constant_folding=True)
    return names, pytree.tree_structure(outputs)


class OrtModel:
    """An ONNX Runtime session called like the PyTorch model: tensor in, same output structure out."""

    def __init__(self, onnx_model: Union[str, os.PathLike, bytes], spec: pytree.TreeSpec,
                 threads: int | None = None):
        _, ort = require_onnx()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3   # warnings about unused initializers etc. are noise here
        source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
        self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        self.spec = spec

    def __call__(self, x: torch.Tensor) -> Any:
        feed = {INPUT_NAME: np.ascontiguousarray(x.detach().cpu().float().numpy())}
        leaves = [torch.from_numpy(a) for a in self.session.run(None, feed)]
        return pytree.tree_unflatten(leaves, self.spec)


def max_abs_diff(a: Any, b: Any) -> tuple[float, float]:
    """``(max abs difference, max abs of a)`` over all tensors of two equal-structured outputs."""
    la, lb = pytree.tree_leaves(a), pytree.tree_leaves(b)
    diff = max(float((x.float() - y.float()).abs().max()) for x, y in zip(la, lb))
    scale = max(float(x.float().abs().max()) for x in la)
    return diff, scale


@dataclass
class ExportCheck:
    """What ``export_and_check`` wrote and measured."""

    path: Path
    size_bytes: int
    outputs: list[str]
    max_abs_diff: float
    output_scale: float
    batches: list[int]

    def describe(self) -> str:
        rel = self.max_abs_diff / (self.output_scale or 1.0)
        return (f"wrote {self.path} ({self.size_bytes / 1e6:.1f} MB, opset {OPSET}, outputs "
                f"{', '.join(self.outputs)}); ONNX Runtime vs PyTorch on random input (batch "
                f"{', '.join(map(str, self.batches))}): max abs diff {self.max_abs_diff:.2e} "
                f"({rel:.1e} of the output scale {self.output_scale:.3g})")


def export_and_check(model: nn.Module, input_hw: tuple[int, int], out: Path, *,
                     dynamic_batch: bool = False, seed: int = 0) -> ExportCheck:
    """Export ``model`` for ``(H, W)`` inputs to ``out`` and run it with ONNX Runtime on a random
    input (batch 1, and batch 3 too with ``dynamic_batch``); PlatformError if they disagree."""
    require_onnx()
    model = model.eval()
    gen = torch.Generator().manual_seed(seed)
    example = torch.randn(1, 3, *input_hw, generator=gen)
    names, spec = export_onnx(model, example, out, dynamic_batch=dynamic_batch)
    batches = [1, 3] if dynamic_batch else [1]
    runner = OrtModel(out, spec)
    with torch.no_grad():
        diff, scale = 0.0, 0.0
        for n in batches:
            x = torch.randn(n, 3, *input_hw, generator=gen)
            d, s = max_abs_diff(model(x), runner(x))
            diff, scale = max(diff, d), max(scale, s)
    check = ExportCheck(out, out.stat().st_size, names, diff, scale, batches)
    if diff > CHECK_TOLERANCE * (scale or 1.0):
        raise PlatformError(f"{check.describe()}: more than {CHECK_TOLERANCE:g} of the output scale; "
                            "the ONNX file does not reproduce the model, do not use it (please report it)")
    return check
