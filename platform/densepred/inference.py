"""Optimised inference: ``optimize(model, example_input)`` returns a module with the same outputs.

Always: an eval-mode copy with BatchNorm folded into the convolutions (``bnfold``). Then a short,
bounded measurement on the example input picks the fastest of the candidates that are possible on
this machine and agree with eager fp32:

- ``fold``          folded model, fp32, contiguous (NCHW) tensors
- ``fold+cl``       the same with channels_last tensors
- ``fold+cl+bf16``  the folded model's weights and activations in bf16: only on CPUs with native
                    bf16 (AVX512-BF16/AMX); on AVX2 it is ~30x slower, so it is not even measured
                    there. (Autocast would cast every weight again on every call.)
- ``ort``           ONNX Runtime (when ``onnxruntime`` is installed), exported with a free batch size
- ``compile``       ``torch.compile`` of the folded model: only with ``compile=True``, since compiling
                    takes minutes on these CPUs (88 s for a tiny HRNet), far over the measurement budget

Timing is robust to a busy neighbour on shared vCPUs: after one untimed warm-up call each, the
candidates run in interleaved rounds (the order rotated every round, at least ``MIN_ROUNDS`` even
when the warm-ups used the budget) and each keeps its fastest timed call, so a burst of load slows
a round, not one candidate, and a first call's one-time costs never count.

Tolerances (max abs difference to eager fp32, relative to the output's max abs value, on the
example input): fp32 paths 1e-4, bf16 5e-2 (bf16 keeps 8 bits of mantissa). Given a task's
``calibration`` (``precision_check``), a reduced-precision path is judged instead by the task's
decoded outputs on validation samples (keypoints within a quarter heatmap pixel, the same class per
pixel); the verdict is cached with the plan, per checkpoint (the key holds a hash of the weights).
``precision="fp32"`` (``--precision fp32``) never considers reduced precision. A simpler candidate is
kept unless a more involved one is at least 5% faster. The choice is cached as JSON per machine,
threads, model signature and input shape in ``cache_dir("inference")`` so the next call skips the
measurement; a cached plan's line says when it was measured. The module handles any batch size
(the plan is chosen for the first shape and kept). The measurement takes about ``BUDGET_S``
seconds; ``$DENSEPRED_INFERENCE_BUDGET_S`` changes that.

On a CUDA ``example_input`` the candidates are the GPU's own (``CUDA_ORDER``): ``fold``, ``fold+cl``,
``fold+cl+fp16`` (fp16 autocast) and ``fold+cl+fp16+graph``, the same replayed as one CUDA graph for
the example's shape (batch-1 HRNet inference is bound by kernel launches, which a graph removes);
other shapes run the same path without the graph.
"""
from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .atomicfile import write_text_atomic
from .bnfold import fold_batchnorm
from .cachedir import cache_dir
from .errors import ConfigError, PlatformError
from .precision_check import Agreement, Calibration, run_all
from .speedtest import Runner, Timing, measure_batch, time_candidates

# 2: timed rounds exclude the warm-up call and always run MIN_ROUNDS; plans measured the old way
# (a single noisy warm-up call could stand for a candidate) are measured again.
# 3: bf16 runs bf16 weights (not autocast); reduced precision judged by the task's calibration.
# 4: the oneDNN Graph candidate (fold+cl+bf16+onednn).
PLAN_VERSION = 4
TOLERANCE = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 2e-2}
MARGIN = 0.05           # a more involved candidate must be this much faster than a simpler one
BUDGET_S = 10.0         # the measurement's time bound (seconds), unless $DENSEPRED_INFERENCE_BUDGET_S is set
BUDGET_ENV = "DENSEPRED_INFERENCE_BUDGET_S"
MIN_ROUNDS = 2          # timed rounds every candidate gets, budget or not (measure_batch sizes for 2)
MAX_ROUNDS = 5
# Simplest first: the choice walks this order and moves on only for a clear gain.
ORDER = ("eager", "fold", "fold+cl", "fold+cl+bf16", "fold+cl+bf16+jit", "fold+cl+bf16+onednn", "ort", "compile")
CUDA_ORDER = ("eager", "fold", "fold+cl", "fold+cl+fp16", "fold+cl+fp16+graph")
PRECISION = {"fold+cl+bf16": "bf16", "fold+cl+bf16+jit": "bf16", "fold+cl+bf16+onednn": "bf16", "fold+cl+fp16": "fp16",
             "fold+cl+fp16+graph": "fp16"}

__all__ = ["optimize", "optimize_for_task", "build_path", "OptimizedModel", "TOLERANCE", "PLAN_VERSION"]


class OptimizedModel(nn.Module):
    """The chosen inference path behind a module interface. ``plan`` says what was chosen and why;
    ``describe()`` in one line. Eval only: ``train()`` / ``eval()`` change nothing inside, ``.to()``
    accepts the CPU and fp32 only; any batch size works."""

    def __init__(self, folded: nn.Module, runner: Runner, plan: dict[str, Any],
                 fallback: Optional[Runner] = None, input_hw: Optional[tuple[int, int]] = None):
        super().__init__()
        self.folded = folded          # the BN-folded torch module (the weights the paths run)
        self.plan = plan
        self._runner = runner
        self._fallback = fallback     # ONNX Runtime was exported for one (H, W); other sizes use this
        self._input_hw = input_hw
        super().train(False)

    def forward(self, x: torch.Tensor) -> Any:
        if self._fallback is not None and tuple(x.shape[-2:]) != self._input_hw:
            return self._fallback(x)
        return self._runner(x)

    def train(self, mode: bool = True) -> "OptimizedModel":
        self.training = mode          # recorded only: the folded model has no training mode
        return self

    def to(self, *args: Any, **kwargs: Any) -> "OptimizedModel":
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        home = torch.device(self.plan.get("device", "cpu")).type
        if (device is not None and torch.device(device).type != home) or dtype not in (None, torch.float32):
            raise PlatformError(f"the optimised inference model runs on {home} with float32 inputs; "
                                "use --eager (or the model itself) for other devices or dtypes")
        return self

    def describe(self) -> str:
        return describe_plan(self.plan)


def optimize(model: nn.Module, example_input: torch.Tensor, *, cache: bool = True, compile: bool = False,
             budget_s: Optional[float] = None, precision: str = "auto",
             calibration: Optional[Calibration] = None) -> OptimizedModel:
    """An inference module for inputs like ``example_input`` (N, 3, H, W) with ``model``'s outputs.
    ``model`` itself is not changed. With ``cache`` a plan measured before on this machine for the
    same architecture and input shape is reused instead of measuring again; ``compile`` adds
    ``torch.compile`` to the candidates; ``budget_s`` bounds the measurement (default:
    ``measure_budget()``). ``precision="fp32"`` leaves out reduced precision; ``calibration`` (the
    task's, see ``precision_check``) judges reduced precision by the task's decoded outputs."""
    if precision not in ("auto", "fp32"):
        raise ConfigError(f"precision must be auto or fp32, got {precision!r}")
    budget = measure_budget() if budget_s is None else budget_s
    example = example_input.detach().float()
    device = example.device
    folded, fold = fold_batchnorm(model)
    parts = _Parts(model.to(device), folded.to(device), example, compile, precision, calibration)
    key = _plan_key(model, example, compile, precision, calibration)
    path = _plan_file(key) if cache else None
    plan = _read_plan(path, key)
    runner = _rebuild(parts, plan) if plan is not None else None
    if plan is None or runner is None:
        plan, runners = _measure(parts, budget)
        runner = runners[plan["path"]]
        plan.update(key=key, device=str(device), bn_folded=fold.folded, bn_remaining=fold.remaining, fold=fold.how,
                    fold_note=fold.describe(), input_shape=list(example.shape))
        plan["measured_at"] = dt.datetime.now().astimezone().isoformat(timespec="minutes")
        if path is not None:
            _write_plan(path, plan)
        plan["source"] = "measured"
    else:
        plan["source"] = "cache"
    plan["cache_file"] = str(path) if path is not None else None
    return _wrap(parts, runner, plan)


def build_path(model: nn.Module, example_input: torch.Tensor, name: str) -> tuple[Optional[OptimizedModel], str]:
    """One candidate path by name (``fold``, ``fold+cl``, ``fold+cl+bf16``, ``ort``, ...) without
    measuring or choosing: for comparing every path's accuracy and speed (``platform bench``).
    Returns the module, or None and why the path is not possible here."""
    example = example_input.detach().float()
    folded, fold = fold_batchnorm(model)
    parts = _Parts(model.to(example.device), folded.to(example.device), example, False)
    run, why = _build(name, parts)
    if run is None:
        return None, why
    plan = {"path": name, "precision": PRECISION.get(name, "fp32"), "runtime": _RUNTIME.get(name, "torch"),
            "fold_note": fold.describe(), "source": "built", "device": str(example.device)}
    return _wrap(parts, run, plan), ""


def measure_budget() -> float:
    """Seconds the measurement may take: ``$DENSEPRED_INFERENCE_BUDGET_S`` or ``BUDGET_S``."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if not text:
        return BUDGET_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise ConfigError(f"{BUDGET_ENV}={text!r} is not a number of seconds in (0, 3600); "
                          "unset it or give e.g. 10")
    return value


# --------------------------------------------------------------------------- candidates

def _torch_runner(module: nn.Module, channels_last: bool = False, bf16: bool = False,
                  fp16: bool = False) -> Runner:
    """Run ``module`` without autograd; outputs come back fp32 and contiguous like eager ones."""
    def run(x: torch.Tensor) -> Any:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), _autocast(x.device, bf16, fp16):
            out = module(x)
        return _as_eager(out)
    return run


def _bf16_runner(module_cl: nn.Module, example: Optional[torch.Tensor] = None,
                 onednn_graph: bool = False) -> Runner:
    """The channels_last module with bf16 weights, fed bf16 inputs; outputs come back fp32. With
    ``example`` the module is traced and frozen for it (TorchScript: oneDNN fuses each convolution
    with its ReLU and additions, which matters most at batch 1). ``onednn_graph`` runs the frozen
    graph under TorchScript's oneDNN Graph fuser (``fuser3``), which compiles whole partitions of
    it: about 2.3x the plain frozen graph for HRNet-W32 at batch 1 on an AMX CPU."""
    low = copy.deepcopy(module_cl).to(torch.bfloat16)
    if example is not None:
        x = example[:1].to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
        import warnings

        # TorchScript is deprecated in favour of torch.compile, which takes minutes on these CPUs;
        # it still ships, and a failure only removes this candidate.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            low = torch.jit.freeze(torch.jit.trace(low.eval(), x, strict=False, check_trace=False))

    def run(x: torch.Tensor) -> Any:
        # the fuser switch is global: on only for this graph's calls (its profiling runs fuse it)
        fuse = _onednn_graph_fuser() if onednn_graph else nullcontext()
        with torch.no_grad(), fuse:
            out = low(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        return _as_eager(out)
    if onednn_graph and example is not None:
        for _ in range(3):  # the profiling executor specialises and fuses over the first calls
            run(example[:1])
    return run


@contextmanager
def _onednn_graph_fuser() -> Iterator[None]:
    """TorchScript's oneDNN Graph fuser on, as ``torch.jit.fuser("fuser3")`` switches it, without
    that helper's nvFuser calls: nvFuser is gone from torch and each call printed two warnings
    per batch."""
    C = torch._C
    old = (C._jit_set_profiling_executor(True), C._get_graph_executor_optimize(True), C._jit_can_fuse_on_cpu(),
           C._jit_can_fuse_on_gpu(), C._jit_texpr_fuser_enabled(), C._jit_llga_enabled())
    C._jit_override_can_fuse_on_cpu(True)
    C._jit_override_can_fuse_on_gpu(False)
    C._jit_set_texpr_fuser_enabled(True)
    C._jit_set_llga_enabled(True)
    try:
        yield
    finally:
        C._jit_set_profiling_executor(old[0])
        C._get_graph_executor_optimize(old[1])
        C._jit_override_can_fuse_on_cpu(old[2])
        C._jit_override_can_fuse_on_gpu(old[3])
        C._jit_set_texpr_fuser_enabled(old[4])
        C._jit_set_llga_enabled(old[5])


def _autocast(device: torch.device, bf16: bool, fp16: bool, cache: bool = True) -> Any:
    if bf16 or fp16:
        return torch.autocast(device.type, dtype=torch.bfloat16 if bf16 else torch.float16, cache_enabled=cache)
    return nullcontext()


def _as_eager(out: Any) -> Any:
    return pytree.tree_map(lambda t: t.float().contiguous() if isinstance(t, torch.Tensor) else t, out)


class _GraphRunner:
    """``module`` (channels_last, fp16 autocast) captured as one CUDA graph for ``example``'s shape;
    other shapes run uncaptured. Outputs are copies: the graph's own buffers are reused per replay."""

    def __init__(self, module: nn.Module, example: torch.Tensor):
        self.shape = tuple(example.shape)
        self._plain = _torch_runner(module, channels_last=True, fp16=True)
        self._input = example.clone().contiguous(memory_format=torch.channels_last)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad(), _autocast(example.device, False, True, cache=False):
            for _ in range(3):  # cuDNN picks its algorithms before the capture
                module(self._input)
        torch.cuda.current_stream().wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph), torch.no_grad(), _autocast(example.device, False, True, cache=False):
            self._output = module(self._input)

    def __call__(self, x: torch.Tensor) -> Any:
        if tuple(x.shape) != self.shape or x.device != self._input.device:
            return self._plain(x)
        self._input.copy_(x)
        self._graph.replay()
        return _as_eager(self._output)  # .float() copies, so the next replay cannot change it


class _Parts:
    """What the candidates are built from; the channels_last copy is made once and shared."""

    def __init__(self, model: nn.Module, folded: nn.Module, example: torch.Tensor, compile: bool,
                 precision: str = "auto", calibration: Optional[Calibration] = None):
        self.model, self.folded, self.example, self.compile = model, folded, example, compile
        self.precision, self.calibration = precision, calibration
        self.cuda = example.device.type == "cuda"
        self._cl: Optional[nn.Module] = None

    @property
    def order(self) -> tuple[str, ...]:
        return CUDA_ORDER if self.cuda else ORDER

    @property
    def folded_cl(self) -> nn.Module:
        if self._cl is None:
            self._cl = copy.deepcopy(self.folded).to(memory_format=torch.channels_last)
        return self._cl


def _build(name: str, parts: _Parts) -> tuple[Optional[Runner], str]:
    """The runner of candidate ``name``, or None and why it is not possible here."""
    from .engine import loop  # looked up at call time: tests monkeypatch cpu_has_fast_bf16

    if name == "eager":
        return _torch_runner(copy.deepcopy(parts.model).eval()), ""
    if name == "fold":
        return _torch_runner(parts.folded), ""
    if name == "fold+cl":
        return _torch_runner(parts.folded_cl, channels_last=True), ""
    if name in PRECISION and parts.precision == "fp32":
        return None, "precision fp32 asked for (--precision fp32)"
    if parts.cuda:
        return _build_cuda(name, parts)
    if name == "fold+cl+bf16":
        if not loop.cpu_has_fast_bf16():
            return None, "no native bf16 on this CPU (bf16 would be far slower than fp32)"
        return _bf16_runner(parts.folded_cl), ""
    if name in ("fold+cl+bf16+jit", "fold+cl+bf16+onednn"):
        if not loop.cpu_has_fast_bf16():
            return None, "no native bf16 on this CPU (bf16 would be far slower than fp32)"
        try:
            return _bf16_runner(parts.folded_cl, parts.example, onednn_graph=name.endswith("onednn")), ""
        except Exception as e:  # noqa: BLE001 - a model that does not trace only loses this candidate
            return None, f"TorchScript (tracing, freezing or oneDNN Graph) failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    if name == "ort":
        return _ort_runner(parts.folded, parts.example)
    if not parts.compile:
        return None, "off (compiling takes minutes on CPU; optimize(..., compile=True) measures it)"
    if not _has_cxx():
        return None, "no C++ compiler found (torch.compile's CPU backend needs one)"
    # Compilation is lazy: a compiler failure shows on the first call and removes the candidate there.
    return _torch_runner(torch.compile(copy.deepcopy(parts.folded))), ""


def _build_cuda(name: str, parts: _Parts) -> tuple[Optional[Runner], str]:
    if name == "fold+cl+fp16":
        return _torch_runner(parts.folded_cl, channels_last=True, fp16=True), ""
    if name == "fold+cl+fp16+graph":
        try:
            return _GraphRunner(parts.folded_cl, parts.example), ""
        except Exception as e:  # noqa: BLE001 - a capture failure only removes the candidate
            return None, f"CUDA graph capture failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return None, f"{name} is not a CUDA candidate"


def _ort_runner(folded: nn.Module, x: torch.Tensor) -> tuple[Optional[Runner], str]:
    """ONNX Runtime on the folded model exported with a free batch size, or why not."""
    import io

    from .export import OrtModel, export_onnx, onnxruntime_available

    if not onnxruntime_available():
        return None, "onnx/onnxruntime not installed (pip install '.[export]')"
    try:
        buf = io.BytesIO()
        _, spec = export_onnx(folded, x[:1], buf, dynamic_batch=True)
        return OrtModel(buf.getvalue(), spec), ""
    except Exception as e:  # noqa: BLE001 - an export failure only removes the candidate
        return None, f"export failed: {type(e).__name__}: {' '.join(str(e).split())[:200]}"


def _has_cxx() -> bool:
    names = [os.environ.get("CXX", ""), "c++", "g++", "clang++"]
    return any(n and shutil.which(n) for n in names)


# --------------------------------------------------------------------------- measuring and choosing

def _measure(parts: _Parts, budget_s: float) -> tuple[dict[str, Any], dict[str, Runner]]:
    """Build every candidate, time them on the example (a prefix of its batch when the full batch
    does not fit the budget), drop those that disagree with eager, choose; (plan, runners)."""
    runners: dict[str, Runner] = {}
    skipped: dict[str, str] = {}
    for name in parts.order:
        run, why = _build(name, parts)
        if run is None:
            skipped[name] = why
        else:
            runners[name] = run
    batch = measure_batch(runners["eager"], parts.example, len(runners), budget_s)
    timing = measure_candidates(runners, parts.example[:batch], budget_s)
    failed, rel = dict(timing.failed), {}
    for name, out in timing.outputs.items():
        rel[name] = _rel_diff(timing.outputs["eager"], out)
        tol = tolerance(name, parts.cuda)
        if rel[name] > tol and not (name in PRECISION and parts.calibration is not None):
            failed[name] = f"outputs differ from eager fp32 by {rel[name]:.1e} of their scale (tolerance {tol:g})"
    agreement = _calibrate(parts, runners, [n for n in timing.outputs if n in PRECISION and n not in failed])
    for name, agreed in agreement.items():
        if not agreed.ok:
            failed[name] = f"its decoded outputs disagree with fp32: {agreed.describe()}"
    best = choose({n: ms for n, ms in timing.ms.items() if n not in failed}, parts.order)
    plan = {"version": PLAN_VERSION, "path": best, "precision": PRECISION.get(best, "fp32"),
            "runtime": _RUNTIME.get(best, "torch"), "measured_batch": batch, "rounds": timing.rounds,
            "ms": {n: round(v, 3) for n, v in timing.ms.items()},
            "rel_diff": {n: float(f"{v:.3g}") for n, v in rel.items()}, "failed": failed, "skipped": skipped,
            "tolerance": dict(TOLERANCE), "measure_s": round(timing.seconds, 2),
            "agreement": {n: a.as_dict() for n, a in agreement.items()}}
    if parts.calibration is not None and agreement:
        plan["calibration"] = parts.calibration.describe()
    return plan, runners


def _calibrate(parts: _Parts, runners: dict[str, Runner], names: list[str]) -> dict[str, Agreement]:
    """The task's verdict on each reduced-precision candidate in ``names`` (none without a calibration)."""
    from .precision_check import check

    calibration = parts.calibration
    if calibration is None or not names:
        return {}
    reference = run_all(runners["eager"], calibration.batches)
    return {name: check(calibration, reference, runners[name]) for name in names}


_RUNTIME = {"ort": "onnxruntime", "compile": "torch.compile"}


@dataclass
class RoundsTiming(Timing):
    """``Timing`` whose ``ms`` is each candidate's fastest timed round (warm-up excluded);
    ``rounds`` says how many interleaved rounds ran."""

    rounds: int = 0


def measure_candidates(runners: dict[str, Runner], x: torch.Tensor, budget_s: float,
                       min_rounds: int = MIN_ROUNDS, max_rounds: int = MAX_ROUNDS) -> RoundsTiming:
    """Warm each runner up once on ``x`` (``time_candidates`` with no rounds: outputs for the
    accuracy check, failures recorded), then time interleaved rounds: at least ``min_rounds``,
    more while ``budget_s`` (counted from the start) lasts, at most ``max_rounds``. Each
    candidate's figure is the minimum of its timed rounds: noise only ever adds time."""
    start = time.perf_counter()
    warm = time_candidates(runners, x, 0.0, max_rounds=0)
    timing = RoundsTiming(batch=warm.batch, outputs=warm.outputs, failed=dict(warm.failed))
    live = [name for name in runners if name in warm.outputs]
    samples: dict[str, list[float]] = {name: [] for name in live}
    with torch.no_grad():
        while timing.rounds < max(1, max_rounds) and live:
            if timing.rounds >= min_rounds and time.perf_counter() - start > budget_s:
                break
            # Rotate who goes first: a candidate is never always the one right after another's load.
            k = timing.rounds % len(live)
            for name in live[k:] + live[:k]:
                samples[name].append(_call_ms(runners[name], x))
            timing.rounds += 1
    timing.ms = {name: min(times) for name, times in samples.items()}
    timing.seconds = time.perf_counter() - start
    return timing


def _call_ms(run: Runner, x: torch.Tensor) -> float:
    """Milliseconds of one call of ``run`` on ``x`` (GPU work waited for)."""
    t = time.perf_counter()
    run(x)
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    return (time.perf_counter() - t) * 1e3


def tolerance(name: str, cuda: bool) -> float:
    """Allowed output difference of candidate ``name`` to eager. On a GPU whose cuDNN convolutions
    run in TF32 (PyTorch's default), eager itself keeps only 10 mantissa bits, as fp16 does: any
    reordering of its arithmetic (folding included) moves outputs by that much."""
    precision = PRECISION.get(name, "fp32")
    if cuda and precision == "fp32" and torch.backends.cudnn.allow_tf32:
        precision = "fp16"
    return TOLERANCE[precision]


def choose(ms: dict[str, float], order: tuple[str, ...] = ORDER) -> str:
    """The candidate to run, from the usable ones' times: walking from the simplest, a candidate
    replaces the current choice only when it is ``MARGIN`` faster (noise must not buy complexity)."""
    best = "eager"
    for name in order[1:]:
        # Folding is exact and removes work: it only has to be as fast; the rest must clearly win.
        if name in ms and ms[name] < ms[best] * (1.0 - (0.0 if name == "fold" else MARGIN)):
            best = name
    return best


def _rel_diff(ref: Any, out: Any) -> float:
    """Max abs difference of two outputs relative to the reference's max abs value (inf when their
    structures differ)."""
    if pytree.tree_structure(ref) != pytree.tree_structure(out):
        return float("inf")
    pairs = list(zip(pytree.tree_leaves(ref), pytree.tree_leaves(out)))
    if any(a.shape != b.shape for a, b in pairs):
        return float("inf")
    diff = max(float((a.float() - b.float()).abs().max()) for a, b in pairs)
    scale = max(float(a.float().abs().max()) for a, _ in pairs)
    return diff / scale if scale > 0 else diff


def _rebuild(parts: _Parts, plan: dict[str, Any]) -> Optional[Runner]:
    """The cached plan's runner, checked against eager on one input; None to measure again."""
    name = plan.get("path")
    if name not in parts.order:
        return None
    run, _ = _build(name, parts)
    if run is None:
        return None
    x, was_training = parts.example[:1], parts.model.training
    try:
        with torch.no_grad():
            ref, out = parts.model.eval()(x), run(x)
    except Exception:  # noqa: BLE001 - e.g. a compiler that went away: measure again
        return None
    finally:
        parts.model.train(was_training)
    if (plan.get("agreement") or {}).get(name, {}).get("ok"):
        # judged on the task's outputs for these very weights (the key holds their hash): the raw
        # tolerance does not apply, a broken path (shapes, NaN) still measures again
        diff = _rel_diff(ref, out)
        return run if diff == diff and diff != float("inf") else None
    return run if _rel_diff(ref, out) <= tolerance(name, parts.cuda) else None


def _wrap(parts: _Parts, runner: Runner, plan: dict[str, Any]) -> OptimizedModel:
    if plan["path"] == "ort":
        return OptimizedModel(parts.folded, runner, plan, _torch_runner(parts.folded),
                              tuple(parts.example.shape[-2:]))
    return OptimizedModel(parts.folded, runner, plan)


# --------------------------------------------------------------------------- the plan cache

def _plan_key(model: nn.Module, x: torch.Tensor, compile: bool, precision: str = "auto",
              calibration: Optional[Calibration] = None) -> dict[str, Any]:
    """Everything the choice depends on: machine, threads, library versions, architecture, shape,
    and with a calibration the weights and the calibration itself (its verdict is theirs)."""
    from importlib import metadata

    from .engine import loop
    from .sysinfo import cpu_description

    try:
        ort = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        ort = None
    cpu, flags = cpu_description()
    gpu = torch.cuda.get_device_name(x.device) if x.device.type == "cuda" else None
    return {"version": PLAN_VERSION, "gpu": gpu, "cpu": cpu, "flags": flags, "fast_bf16": loop.cpu_has_fast_bf16(),
            "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "onnxruntime": ort, "compile": bool(compile), "model": model_signature(model),
            "input": list(x.shape), "precision": precision,
            "weights": weights_hash(model) if calibration is not None else None,
            "calibration": calibration.key if calibration is not None else None}


def model_signature(model: nn.Module) -> str:
    """A hash of the architecture (module types and parameter shapes), not of the weights."""
    h = hashlib.sha256()
    for name, m in model.named_modules():
        h.update(f"{name}:{type(m).__qualname__};".encode())
    for name, t in model.state_dict().items():
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype};".encode())
    return h.hexdigest()[:32]


def weights_hash(model: nn.Module) -> str:
    """A hash of the weights themselves (a checkpoint's identity)."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes() if t.dtype != torch.bfloat16
                 else t.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:32]


def _plan_file(key: dict[str, Any]) -> Optional[Path]:
    folder = cache_dir("inference")
    if folder is None:
        return None
    return folder / (hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32] + ".json")


def _read_plan(path: Optional[Path], key: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The cached plan for ``key``, or None (no file, unreadable, or made for another key)."""
    if path is None or not path.is_file():
        return None
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return plan if isinstance(plan, dict) and plan.get("key") == key else None


def _write_plan(path: Path, plan: dict[str, Any]) -> None:
    try:
        write_text_atomic(path, json.dumps(plan, indent=1, sort_keys=True))
    except OSError:
        pass  # a read-only cache only costs a measurement next time


def describe_plan(plan: dict[str, Any]) -> str:
    """One line: chosen path, folding, the measured gain, where the plan came from."""
    ms, path = plan.get("ms", {}), plan["path"]
    speed = ""
    if path in ms and "eager" in ms:
        batch, asked = plan["measured_batch"], plan.get("input_shape", [plan["measured_batch"]])[0]
        part = f" (timed on {batch} of {asked} inputs to fit the time budget)" if batch != asked else ""
        when = ""
        if plan.get("source") == "cache":  # a stale figure must not read as a fresh measurement
            when = f", cached plan measured {_measured_date(plan)}"
        speed = (f"; {ms[path]:.1f} ms vs eager fp32 {ms['eager']:.1f} ms per batch of {batch}{part} "
                 f"({ms['eager'] / max(ms[path], 1e-9):.2f}x{when})")
    skipped = ", ".join(sorted(plan.get("skipped", {})))
    failed = ", ".join(sorted(plan.get("failed", {})))
    if plan.get("source") == "cache":
        origin = (f"plan from {plan['cache_file']}" if speed
                  else f"cached plan measured {_measured_date(plan)}, from {plan['cache_file']}")
    else:
        cached = f", cached in {plan['cache_file']}" if plan.get("cache_file") else ""
        origin = f"measured in {plan.get('measure_s', 0):.1f} s{cached}"
    return (f"inference: {path} ({plan['runtime']}, {plan['precision']}), {plan.get('fold_note', '')}{speed}"
            f"{_agreement_note(plan)}{'; skipped ' + skipped if skipped else ''}"
            f"{'; failed ' + failed if failed else ''}; {origin}")


def _agreement_note(plan: dict[str, Any]) -> str:
    """What the task's calibration said about each reduced-precision candidate."""
    notes = []
    for name, a in sorted((plan.get("agreement") or {}).items()):
        verdict = "agrees with fp32" if a["ok"] else "refused"
        note = (f"{PRECISION.get(name, name)} {verdict} on {plan.get('calibration', 'the calibration')}: "
                f"{a['fraction']:.2%} {a['what']} (needs {a['required']:.1%})")
        if note not in notes:  # bf16 and bf16+jit compute alike: one line says it
            notes.append(note)
    return "".join(f"; {n}" for n in notes)


def _measured_date(plan: dict[str, Any]) -> str:
    """When the plan was measured, ``YYYY-MM-DD HH:MM`` (local time), or ``at an unknown time``."""
    text = plan.get("measured_at")
    try:
        return dt.datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return "at an unknown time"


def optimize_for_task(task: Any, model: nn.Module, batch: int = 1,
                      precision: Optional[str] = None) -> tuple[nn.Module, str]:
    """``optimize`` for a task's network input (``task.cost_input_size()``, a random example of
    ``batch`` inputs) with the task's calibration from its validation split where reduced precision
    is possible here; ``(module, one line saying what was chosen)``. ``precision`` (``--precision``)
    overrides ``inference.precision``. A task without a fixed input size keeps the eager model."""
    try:
        h, w = task.cost_input_size()
    except NotImplementedError:
        return model, f"inference: eager ({type(task).__name__} has no fixed input size to measure at)"
    example = torch.randn(max(1, int(batch)), 3, int(h), int(w), generator=torch.Generator().manual_seed(0))
    settings = task.precision_settings()
    precision = precision or settings.precision
    calibration, note = None, ""
    if precision == "auto" and reduced_precision_possible():
        try:
            calibration = task.calibration(settings)
        except PlatformError as e:  # e.g. predict on the user's photos, without the val split here
            precision = "fp32"
            note = f"; precision fp32: no validation data to check reduced precision against ({e})"
    optimized = optimize(model, example, precision=precision, calibration=calibration)
    return optimized, optimized.describe() + note


def reduced_precision_possible(device: Optional[torch.device] = None) -> bool:
    """Whether this machine has a reduced-precision path worth checking (native bf16, or a GPU)."""
    from .engine import loop

    if device is not None and device.type == "cuda":
        return True
    return loop.cpu_has_fast_bf16()
