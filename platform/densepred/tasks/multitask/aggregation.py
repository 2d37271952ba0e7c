"""Balancing by gradient aggregation: the members' gradients of the shared parameters (backbone,
neck) are combined by a TorchJD aggregator (``task.balancing.type: aggregator``) or by DB-MTL
(``db_mtl``) into one update, and each head is trained by its own member's loss only.

These balancers own the backward of every step (``Task.backward``): ``jacobian.py`` computes the
per-task gradients and keeps them equal on all workers, TorchJD aggregates them. This module
chooses the aggregator from the config, checks its options and optional dependencies with
one-line errors, and reports what the step costs: ``jac_ms`` (per batch: the per-task backward,
which replaces the plain one) and ``agg_ms`` (per optimizer step: all-reduce and aggregation).
TorchJD is imported only when one of these balancers is built.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from numbers import Integral
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ...errors import ConfigError, PlatformError
from ...registry import BALANCERS
from ..base import StepContext
from .balancing import WHERE, LossBalancer, _number, step_seed

TORCHJD = "torchjd==0.18.0"
QUADPROG = ("numpy", "qpsolvers", "quadprog")


@dataclass(frozen=True)
class AggregatorSpec:
    """A TorchJD aggregator offered under a config name."""

    cls: str                        # class in torchjd.aggregation
    options: tuple[str, ...] = ()   # config options it takes (besides type and aggregator)
    needs: tuple[str, ...] = ()     # modules TorchJD needs for it (its optional dependencies)
    extra: str = ""                 # the torchjd extra that installs them


AGGREGATORS: dict[str, AggregatorSpec] = {
    "upgrad": AggregatorSpec("UPGrad", ("pref_vector", "norm_eps", "reg_eps"), QUADPROG, "quadprog-projector"),
    "mgda": AggregatorSpec("MGDA", ("epsilon", "max_iters")),
    "pcgrad": AggregatorSpec("PCGrad"),
    "cagrad": AggregatorSpec("CAGrad", ("c", "norm_eps"), ("numpy", "cvxpy", "clarabel"), "cagrad"),
    "imtl_g": AggregatorSpec("IMTLG"),
    "aligned_mtl": AggregatorSpec("AlignedMTL", ("pref_vector", "scale_mode")),
    "nash_mtl": AggregatorSpec("NashMTL", ("max_norm", "update_weights_every", "optim_niter"),
                               ("numpy", "cvxpy", "ecos"), "nash-mtl"),
    "dualproj": AggregatorSpec("DualProj", ("pref_vector", "norm_eps", "reg_eps"), QUADPROG, "quadprog-projector"),
    "graddrop": AggregatorSpec("GradDrop"),
    "mean": AggregatorSpec("Mean"),
}
SCALE_MODES = ("min", "median", "rmse")
CAGRAD_C = 0.5  # TorchJD has no default; 0.5 is the CAGrad paper's and LibMTL's


def require(modules: Sequence[str], what: str, install: str) -> None:
    """One-line ConfigError when a module ``what`` needs cannot be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(f"{WHERE}: {what} needs the Python package(s) {', '.join(missing)}, which are not "
                          f"installed; install them with: pip install \"{install}\"")


def _option(key: str, value: Any, names: list[str]) -> Any:
    """A checked option value, converted to what TorchJD takes."""
    if key == "pref_vector":
        if not isinstance(value, Mapping) or set(value) != set(names):
            raise ConfigError(f"{WHERE}.pref_vector: expected a weight for every member "
                              f"({', '.join(names)}), e.g. {{{names[0]}: 1.0, ...}}; got {value!r}")
        return torch.tensor([_number(value[n], f"pref_vector.{n}", ge=0.0) for n in names])
    if key in ("max_iters", "update_weights_every", "optim_niter"):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ConfigError(f"{WHERE}.{key}: expected a whole number >= 1, got {value!r}")
        return int(value)
    if key == "scale_mode":
        if value not in SCALE_MODES:
            raise ConfigError(f"{WHERE}.scale_mode: must be one of {', '.join(SCALE_MODES)}, got {value!r}")
        return value
    if key == "epsilon":
        return _number(value, key, gt=0.0)
    return _number(value, key, ge=0.0)  # norm_eps, reg_eps, c, max_norm


def _torchjd_kwargs(name: str, options: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """The constructor arguments of aggregator ``name`` from its checked config options."""
    spec = AGGREGATORS[name]
    for key in options:
        if key not in spec.options:
            takes = f"takes {', '.join(spec.options)}" if spec.options else "takes no options"
            raise ConfigError(f"{WHERE}.{key}: not an option of aggregator {name} ({name} {takes})")
    kwargs = {k: _option(k, v, names) for k, v in options.items()}
    if name in ("upgrad", "dualproj") and {"norm_eps", "reg_eps"} & set(kwargs):
        from torchjd.linalg import QuadprogProjector

        eps = {k: kwargs.pop(k) for k in ("norm_eps", "reg_eps") if k in kwargs}
        kwargs["projector"] = QuadprogProjector(**eps)
    if name == "cagrad":
        kwargs.setdefault("c", CAGRAD_C)
    if name == "nash_mtl":
        kwargs["n_tasks"] = len(names)
    return kwargs


def build_aggregator(name: Any, options: Mapping[str, Any], names: list[str]) -> nn.Module:
    """The TorchJD aggregator ``name`` with ``options``; one-line ConfigErrors for a wrong name or
    option and for a missing optional dependency (naming the torchjd extra that installs it)."""
    if name not in AGGREGATORS:
        raise ConfigError(f"{WHERE}.aggregator: expected one of {', '.join(AGGREGATORS)}, got {name!r}")
    spec = AGGREGATORS[name]
    require(["torchjd"], f"aggregator {name}", TORCHJD)
    require(spec.needs, f"aggregator {name}", f"torchjd[{spec.extra}]==0.18.0")
    import torchjd.aggregation as aggregation

    kwargs = _torchjd_kwargs(name, options, names)
    try:
        return getattr(aggregation, spec.cls)(**kwargs)
    except (ImportError, ValueError) as e:  # TorchJD's own checks, worded for the config
        raise ConfigError(f"{WHERE}: aggregator {name}: {' '.join(str(e).split())}") from None


class AggregatingBalancer(LossBalancer):
    """Combines the members' gradients of the shared parameters instead of their losses.

    ``forward`` returns the plain sum of the losses (what the run logs as its loss; every loss
    weight is 1) and keeps the losses for ``backward``, which the task calls in place of the
    engine's backward: each batch adds the gradients of ``objectives`` (the losses, or a transform
    of them), the batch that ends the step aggregates them with ``self.aggregator``.
    """

    needs_all_losses = True  # every member's loss on the same batch (same-input mode)
    owns_backward = True

    def __init__(self, names: list[str], seed: int = 0):
        super().__init__(names)
        self.seed = int(seed)
        self._losses: Optional[dict[str, Tensor]] = None
        self._parts: Any = None  # (id of the model, its jacobian.ModelParts), found on its first step

    def _weight_tensor(self) -> Tensor:
        return torch.ones(len(self.names))

    def objectives(self, losses: list[Tensor]) -> list[Tensor]:
        """What each member's gradients are taken of (its loss)."""
        return losses

    def forward(self, losses: Mapping[str, Tensor], shared: Optional[Tensor] = None) -> Tensor:
        missing = [n for n in self.names if n not in losses]
        if missing:
            raise ConfigError(f"{WHERE}: gradient aggregation needs every member's loss on the same batch "
                              f"(missing: {', '.join(missing)}); use mode same_input")
        if self.training and torch.is_grad_enabled():
            self._losses = dict(losses)
        return self._weighted_sum(losses, self._weight_tensor())

    def backward(self, member_heads: Mapping[str, Sequence[str]], ctx: StepContext,
                 scaler: Optional[torch.amp.GradScaler] = None) -> dict[str, float]:
        """The per-task gradients of this batch's losses (kept by ``forward``); on the batch that
        ends the step, their aggregation into the shared ``.grad``. Returns the step's figures."""
        from .jacobian import add_task_gradients, aggregate_step, split_parameters

        losses, self._losses = self._losses, None
        if losses is None:
            raise PlatformError(f"{WHERE}: backward called without a training forward of the balancer")
        if self._parts is None or self._parts[0] != id(ctx.model):
            self._parts = (id(ctx.model), split_parameters(ctx.model, [member_heads[n] for n in self.names]))
        parts = self._parts[1]
        scale = float(scaler.get_scale()) if scaler is not None else None
        device = next(iter(losses.values())).device
        t0 = _now(device)
        add_task_gradients(self.objectives([losses[n] for n in self.names]), parts,
                           (scale or 1.0) / ctx.accumulate)
        t1 = _now(device)
        logs = {"jac_ms": 1e3 * (t1 - t0)}
        if ctx.step_end:
            weights = aggregate_step(parts, self.aggregator, ctx.world, scale,
                                     step_seed(self.seed, ctx.global_step))
            logs["agg_ms"] = 1e3 * (_now(device) - t1)
            weights = weights if weights is not None else getattr(self.aggregator, "last_weights", None)
            if weights is not None:
                logs.update({f"agg_weight/{n}": float(weights[i]) for i, n in enumerate(self.names)})
        return logs


def _now(device: torch.device) -> float:
    """Wall-clock seconds, after the device finished its queued work (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


@BALANCERS.register_module(name="aggregator")
class AggregatorBalancer(AggregatingBalancer):
    """A TorchJD aggregator (``aggregator``: one of ``AGGREGATORS``) applied to the Jacobian of the
    members' losses w.r.t. the shared parameters; its options are keys next to ``aggregator``."""

    def __init__(self, names: list[str], aggregator: Optional[str] = None, seed: int = 0,
                 pref_vector: Optional[Mapping[str, float]] = None, norm_eps: Optional[float] = None,
                 reg_eps: Optional[float] = None, epsilon: Optional[float] = None,
                 max_iters: Optional[int] = None, c: Optional[float] = None,
                 scale_mode: Optional[str] = None, max_norm: Optional[float] = None,
                 update_weights_every: Optional[int] = None, optim_niter: Optional[int] = None):
        super().__init__(names, seed)
        given = dict(pref_vector=pref_vector, norm_eps=norm_eps, reg_eps=reg_eps, epsilon=epsilon,
                     max_iters=max_iters, c=c, scale_mode=scale_mode, max_norm=max_norm,
                     update_weights_every=update_weights_every, optim_niter=optim_niter)
        self.method = aggregator
        self.aggregator = build_aggregator(aggregator, {k: v for k, v in given.items() if v is not None},
                                           self.names)


@BALANCERS.register_module(name="db_mtl")
class DBMTLBalancer(AggregatingBalancer):
    """DB-MTL (Lin et al., "Dual-Balancing for Multi-Task Learning", arXiv:2308.12029): the
    gradients are those of log(L_i + ε) (loss-scale balancing; heads train on it too), and the
    shared update rescales each task's moving-average gradient to the largest norm
    (``dual_balancing.DualBalancing``). Defaults: LibMTL's (beta 0.9, beta_sigma 0)."""

    EPS = 1e-8

    def __init__(self, names: list[str], beta: float = 0.9, beta_sigma: float = 0.0, seed: int = 0):
        super().__init__(names, seed)
        beta = _number(beta, "beta", ge=0.0)
        if beta >= 1.0:
            raise ConfigError(f"{WHERE}.beta: must be < 1 (the moving average would never move), got {beta!r}")
        require(["torchjd"], "db_mtl", TORCHJD)
        from .dual_balancing import DualBalancing

        self.aggregator = DualBalancing(beta, _number(beta_sigma, "beta_sigma", ge=0.0))

    def objectives(self, losses: list[Tensor]) -> list[Tensor]:
        return [torch.log(v + self.EPS) for v in losses]
