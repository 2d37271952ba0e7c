"""Multi-task loss balancing: how the member tasks' losses are combined into one loss.

Loss weightings, registered in ``BALANCERS`` and chosen by ``task.balancing.type``:

* ``fixed``       -- constant weights from the config.
* ``uncertainty`` -- learned homoscedastic-uncertainty weights (Kendall, Gal, Cipolla, CVPR 2018).
* ``dwa``         -- Dynamic Weight Average (Liu, Johns, Davison, CVPR 2019).
* ``gradnorm``    -- gradient normalisation (Chen, Badrinarayanan, Lee, Rabinovich, ICML 2018).
* ``rlw``         -- Random Loss Weighting (Lin, Ye, Zhang, Tsang, TMLR 2022).
* ``famo``        -- Fast Adaptive Multitask Optimization (Liu, Feng, Stone, Liu, NeurIPS 2023).

The methods that combine per-task gradients instead of losses (``aggregator``, ``db_mtl``) are in
``aggregation.py``. Every balancer keeps its state in parameters, buffers or its extra state, so
``state_dict()`` / ``load_state_dict()`` save and resume it exactly with the model checkpoint.
"""
from __future__ import annotations

import inspect
import math
from numbers import Real
from typing import Any, Mapping, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ...errors import ConfigError, PlatformError
from ...registry import BALANCERS, build, lookup

WHERE = "task.balancing"


def _number(value: Any, key: str, *, gt: Optional[float] = None, ge: Optional[float] = None) -> float:
    """Check that a config option is a finite real number in range; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(float(value)):
        raise ConfigError(f"{WHERE}.{key}: expected a finite number, got {value!r}")
    if gt is not None and not float(value) > gt:
        raise ConfigError(f"{WHERE}.{key}: must be > {gt:g}, got {value!r}")
    if ge is not None and not float(value) >= ge:
        raise ConfigError(f"{WHERE}.{key}: must be >= {ge:g}, got {value!r}")
    return float(value)


class LossBalancer(nn.Module):
    """Combines the member tasks' losses into the total loss to back-propagate.

    Subclasses provide :meth:`_weight_tensor` (one weight per member, in ``names`` order) and may
    override :meth:`forward` and :meth:`end_epoch`.
    """

    needs_all_losses: bool = False  # True when a step must carry every member's loss (same batch)
    needs_shared: bool = False      # True when forward needs the last shared layer's weight

    def __init__(self, names: list[str]):
        super().__init__()
        if (not isinstance(names, (list, tuple)) or not names
                or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names)):
            raise ConfigError(f"{WHERE}: member task names must be a non-empty list of distinct strings, "
                              f"got {names!r}")
        self.names: list[str] = list(names)

    def _weight_tensor(self) -> Tensor:
        raise NotImplementedError

    def _present(self, losses: Mapping[str, Tensor]) -> list[int]:
        """Indices (into ``names``) of the members present in ``losses``; rejects unknown names."""
        unknown = sorted(set(losses) - set(self.names))
        if unknown:
            raise PlatformError(f"{WHERE}: loss given for unknown member(s) {', '.join(unknown)}; "
                                f"members: {', '.join(self.names)}")
        if not losses:
            raise PlatformError(f"{WHERE}: no member loss given to combine")
        return [i for i, n in enumerate(self.names) if n in losses]

    def _weighted_sum(self, losses: Mapping[str, Tensor], w: Tensor) -> Tensor:
        """Σ w_i L_i over the members present (weights cast to each loss's device and dtype)."""
        terms = [w[i].to(device=losses[self.names[i]].device, dtype=losses[self.names[i]].dtype)
                 * losses[self.names[i]] for i in self._present(losses)]
        return torch.stack(terms).sum()

    def forward(self, losses: Mapping[str, Tensor], shared: Optional[Tensor] = None) -> Tensor:
        """Total loss of the members present in ``losses`` (a subset is fine)."""
        return self._weighted_sum(losses, self._weight_tensor())

    @torch.no_grad()
    def weights(self) -> dict[str, float]:
        """Current effective weight of each member, for logging."""
        w = self._weight_tensor().detach().double().cpu()
        return {n: float(w[i]) for i, n in enumerate(self.names)}

    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        """Called once per epoch with each member's epoch-mean raw loss (all workers). No-op here."""


def per_member(names: list[str], given: Optional[Mapping[str, float]], key: str, what: str,
               default: float, ge: Optional[float] = None) -> list[float]:
    """``task.balancing.<key>``: one number per member name (``default`` for those not given)."""
    given = {} if given is None else given
    if not isinstance(given, Mapping):
        raise ConfigError(f"{WHERE}.{key}: expected a mapping {{task name: {what}}}, got {given!r}")
    unknown = sorted(str(k) for k in set(given) - set(names))
    if unknown:
        raise ConfigError(f"{WHERE}.{key}: unknown task name(s) {', '.join(unknown)}; "
                          f"members are: {', '.join(names)}")
    return [_number(given.get(n, default), f"{key}.{n}", ge=ge) for n in names]


@BALANCERS.register_module(name="fixed")
class FixedBalancer(LossBalancer):
    """Constant weights: total = Σ w_i L_i; members missing from ``weights`` get 1.0."""

    def __init__(self, names: list[str], weights: Optional[Mapping[str, float]] = None):
        super().__init__(names)
        values = per_member(self.names, weights, "weights", "weight", 1.0, ge=0.0)
        # Not persistent: the weights come from the config, so a resumed run follows the config
        # (and a checkpoint does not carry a stale copy of them).
        self.register_buffer("w", torch.tensor(values, dtype=torch.float32), persistent=False)

    def _weight_tensor(self) -> Tensor:
        return self.w


@BALANCERS.register_module(name="uncertainty")
class UncertaintyBalancer(LossBalancer):
    """Learned log-variances s_i: total = Σ exp(-s_i) L_i + s_i (Kendall et al. 2018).

    The s_i are parameters trained by the main optimizer (the engine adds ``parameters()``).
    """

    def __init__(self, names: list[str], init: float = 0.0):
        super().__init__(names)
        init = _number(init, "init")
        self.log_vars = nn.Parameter(torch.full((len(self.names),), init, dtype=torch.float32))

    def _weight_tensor(self) -> Tensor:
        return torch.exp(-self.log_vars)

    def forward(self, losses: Mapping[str, Tensor], shared: Optional[Tensor] = None) -> Tensor:
        total = self._weighted_sum(losses, self._weight_tensor())
        # The +s_i regulariser keeps the weights from collapsing to zero; only present members count.
        idx = self._present(losses)
        reg = self.log_vars[idx].sum()
        return total + reg.to(device=total.device, dtype=total.dtype)


@BALANCERS.register_module(name="dwa")
class DWABalancer(LossBalancer):
    """Dynamic Weight Average (Liu et al. 2019): weights from the rate at which each loss falls.

    w_k(t) = K * softmax_k(r_k / T), r_k = L_k(t-1) / L_k(t-2); w_k = 1 until two epochs are known.
    """

    def __init__(self, names: list[str], temperature: float = 2.0):
        super().__init__(names)
        self.temperature = _number(temperature, "temperature", gt=0.0)
        k = len(self.names)
        # history[0] = epoch-mean losses of epoch t-2, history[1] = of epoch t-1.
        self.register_buffer("history", torch.zeros(2, k, dtype=torch.float64))
        self.register_buffer("epochs_seen", torch.zeros((), dtype=torch.long))

    def _weight_tensor(self) -> Tensor:
        k = len(self.names)
        if int(self.epochs_seen) < 2:
            return torch.ones(k, dtype=torch.float32, device=self.history.device)
        # Clamp the denominator: a member whose loss reached exactly 0 must not produce inf/NaN.
        ratio = self.history[1] / self.history[0].clamp_min(1e-12)
        return (k * torch.softmax(ratio / self.temperature, dim=0)).float()

    @torch.no_grad()
    def end_epoch(self, mean_losses: Mapping[str, float]) -> None:
        missing = [n for n in self.names if n not in mean_losses]
        if missing:
            raise PlatformError(f"{WHERE}: dwa needs every member's epoch-mean loss; missing: "
                                f"{', '.join(missing)}")
        values = [float(mean_losses[n]) for n in self.names]
        bad = [n for n, v in zip(self.names, values) if not math.isfinite(v) or v < 0]
        if bad:
            raise PlatformError(f"{WHERE}: dwa got a non-finite or negative epoch-mean loss for "
                                f"{', '.join(bad)}: {values}")
        self.history[0].copy_(self.history[1])
        self.history[1].copy_(torch.tensor(values, dtype=torch.float64))
        self.epochs_seen.add_(1)


@BALANCERS.register_module(name="gradnorm")
class GradNormBalancer(LossBalancer):
    """GradNorm (Chen et al. 2018): weights that equalise the tasks' gradient norms on ``shared``.

    Each training step moves the weights w (a buffer, not trained by the main optimizer) down the
    gradient of L_grad = Σ |G_i - mean(G) r_i^alpha|, G_i = ||∇_shared (w_i L_i)||, then
    renormalises them to sum to the number of tasks.
    """

    needs_all_losses = True
    needs_shared = True
    MIN_WEIGHT = 1e-4  # keeps a weight from reaching 0, where its task would stop learning for good

    def __init__(self, names: list[str], alpha: float = 1.5, lr: float = 0.025):
        super().__init__(names)
        self.alpha = _number(alpha, "alpha", ge=0.0)
        self.lr = _number(lr, "lr", gt=0.0)
        k = len(self.names)
        self.register_buffer("w", torch.ones(k, dtype=torch.float32))
        self.register_buffer("initial_losses", torch.ones(k, dtype=torch.float32))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def _weight_tensor(self) -> Tensor:
        return self.w

    def forward(self, losses: Mapping[str, Tensor], shared: Optional[Tensor] = None) -> Tensor:
        if not (self.training and torch.is_grad_enabled()):
            return self._weighted_sum(losses, self.w)
        if shared is None:
            raise ConfigError(f"{WHERE}: gradnorm needs the weight of the last shared layer "
                              "(shared=None was given); use a backbone that names its last shared layer")
        missing = [n for n in self.names if n not in losses]
        if missing:
            raise ConfigError(f"{WHERE}: gradnorm needs every member's loss on the same batch "
                              f"(missing: {', '.join(missing)}); use mode same_input")
        w_now = self.w.detach().clone()
        total = self._weighted_sum(losses, w_now)  # uses the weights of this step; update is for the next
        self._update_weights(torch.stack([losses[n] for n in self.names]), shared)
        return total

    def _update_weights(self, stacked: Tensor, shared: Tensor) -> None:
        """One GradNorm step on ``self.w`` from the stacked member losses of this batch."""
        device = stacked.device
        loss_now = stacked.detach().float()
        if not bool(self.initialized):
            self.initial_losses.copy_(loss_now.to(self.initial_losses.device))
            self.initialized.fill_(True)
        w = self.w.detach().to(device).clone().requires_grad_(True)  # a leaf only for this update
        # G_i = ||∇(w_i L_i)|| = w_i ||∇L_i|| (w_i > 0): the norm of ∇L_i is a constant w.r.t. w, so
        # the gradient of L_grad w.r.t. w is exact without a double-backward graph through the model
        # (cheaper, and works with layers that lack a second derivative).
        norms = []
        for i, name in enumerate(self.names):
            (g,) = torch.autograd.grad(stacked[i], shared, retain_graph=True, allow_unused=True)
            if g is None:
                raise ConfigError(f"{WHERE}: the loss of {name!r} does not depend on the shared layer "
                                  "given to gradnorm; pass the last layer shared by all members")
            norms.append(g.detach().float().norm())
        grad_norms = w * torch.stack(norms).to(device)
        ratio = loss_now / self.initial_losses.to(device).clamp_min(1e-12)
        rel = ratio / ratio.mean().clamp_min(1e-12)
        target = (grad_norms.mean() * rel.pow(self.alpha)).detach()
        (w_grad,) = torch.autograd.grad((grad_norms - target).abs().sum(), w)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Same update on every worker keeps the weights identical across workers.
            dist.all_reduce(w_grad)
            w_grad = w_grad / dist.get_world_size()
        with torch.no_grad():
            new = (w.detach() - self.lr * w_grad).clamp_min(self.MIN_WEIGHT)
            new = new * (len(self.names) / new.sum())
            self.w.copy_(new.to(self.w.device))


def step_seed(seed: int, step: int) -> int:
    """A seed for ``step`` of a run seeded ``seed``: equal on every worker, unrelated between steps."""
    entropy = [int(seed) % 2**64, int(step) % 2**64]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def mean_over_workers(values: Tensor) -> Tensor:
    """``values`` averaged over the training workers (unchanged with one worker or outside DDP)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        values = values.clone()
        dist.all_reduce(values)
        values /= dist.get_world_size()
    return values


@BALANCERS.register_module(name="rlw")
class RLWBalancer(LossBalancer):
    """Random Loss Weighting (Lin, Ye, Zhang, Tsang, "Reasonable Effectiveness of Random Weighting:
    A Litmus Test for Multi-Task Learning", TMLR 2022, arXiv:2111.10603, Algorithm 2).

    Every training batch draws w = softmax(z), z ~ N(0, I_K) and the total is Σ w_i L_i; the
    weights sum to 1 as in the paper (not to K). z comes from a generator seeded from (run seed,
    batches drawn so far), so all workers draw the same weights without talking to each other,
    and a resumed run continues the same sequence (the count is saved with the run).
    """

    def __init__(self, names: list[str], seed: int = 0):
        super().__init__(names)
        self.seed = int(seed)
        k = len(self.names)
        self.register_buffer("draws", torch.zeros((), dtype=torch.long))
        self.register_buffer("w", torch.full((k,), 1.0 / k, dtype=torch.float32))

    def _weight_tensor(self) -> Tensor:
        return self.w

    def forward(self, losses: Mapping[str, Tensor], shared: Optional[Tensor] = None) -> Tensor:
        if self.training and torch.is_grad_enabled():
            self.w.copy_(self.draw(int(self.draws)).to(self.w))
            self.draws.add_(1)
        return self._weighted_sum(losses, self.w)

    def draw(self, step: int) -> Tensor:
        """The weights of draw number ``step`` (float64, on the CPU)."""
        gen = torch.Generator().manual_seed(step_seed(self.seed, step))
        return torch.softmax(torch.randn(len(self.names), generator=gen, dtype=torch.float64), dim=0)


@BALANCERS.register_module(name="famo")
class FAMOBalancer(LossBalancer):
    """Fast Adaptive Multitask Optimization (Liu, Feng, Stone, Liu, NeurIPS 2023, arXiv:2306.03792).

    Task weights z = softmax(ξ) come from logits ξ. The total Σ_i w_i L_i with w_i = c z_i / d_i,
    d_i = L_i - b_i + ε, c = (Σ_i z_i / d_i)^-1 has the gradient of the paper's c Σ_i z_i log d_i.
    Then ξ takes one Adam step (lr, weight_decay: the paper's Algorithm 2, LibMTL and TorchJD use
    weight decay 1e-3, the official code 1e-5) on J_softmax(ξ)^T δ, δ_i = log d_i(t) - log d_i(t+1):
    the members whose loss fell least gain weight. TorchJD's ``scalarization.FAMO`` states the same
    update; it is not used because it keeps its Adam state outside ``state_dict`` (no resume) and
    needs the losses recomputed on the same batch after the optimizer step.

    Made for this engine: d(t+1) comes from the next training batch, not from a second forward pass
    over the last batch after the step (the official code does that; the engine has no place for
    it). δ then also holds the difference between two batches, which cancels between consecutive
    steps (the δ's telescope), so ξ still follows how fast each loss falls, with more noise. The
    losses are averaged over the workers (one all-reduce of K numbers) before they enter w and δ:
    every worker keeps the same ξ, and the update is the one of the global batch.
    """

    needs_all_losses = True
    EPS = 1e-8

    def __init__(self, names: list[str], lr: float = 0.025, weight_decay: float = 1e-3,
                 min_losses: Optional[Mapping[str, float]] = None):
        super().__init__(names)
        self.lr = _number(lr, "lr", gt=0.0)
        self.weight_decay = _number(weight_decay, "weight_decay", ge=0.0)
        k = len(self.names)
        # From the config, so not saved: a resumed run follows the config (like fixed weights).
        self.register_buffer("min_losses", torch.tensor(self._bounds(min_losses), dtype=torch.float64),
                             persistent=False)
        # A Parameter only so that torch's Adam can step it; requires_grad=False keeps it out of the
        # main optimizer (the engine trains the extras' parameters that require grad).
        self.logits = nn.Parameter(torch.zeros(k, dtype=torch.float32), requires_grad=False)
        self.register_buffer("prev", torch.zeros(k, dtype=torch.float64))  # last batch: mean losses
        self.register_buffer("has_prev", torch.zeros((), dtype=torch.bool))
        self.register_buffer("w", torch.full((k,), 1.0 / k, dtype=torch.float32))  # last weights, for logs
        self._adam = torch.optim.Adam([self.logits], lr=self.lr, weight_decay=self.weight_decay)

    def _bounds(self, min_losses: Optional[Mapping[str, float]]) -> list[float]:
        return per_member(self.names, min_losses, "min_losses", "lower bound", 0.0)

    def _weight_tensor(self) -> Tensor:
        return self.w

    def task_weights(self) -> Tensor:
        """z = softmax(ξ), FAMO's own task weights."""
        return torch.softmax(self.logits.detach().double(), dim=0)

    def forward(self, losses: Mapping[str, Tensor], shared: Optional[Tensor] = None) -> Tensor:
        missing = [n for n in self.names if n not in losses]
        if missing:
            raise ConfigError(f"{WHERE}: famo needs every member's loss on the same batch "
                              f"(missing: {', '.join(missing)}); use mode same_input")
        mean = mean_over_workers(torch.stack([losses[n].detach() for n in self.names]).double())
        mean = mean.to(self.prev.device)
        if self.training and torch.is_grad_enabled() and bool(torch.isfinite(mean).all()):
            self._check_above_bounds(mean)
            if bool(self.has_prev):
                self._update_logits(self.prev, mean)
            self.prev.copy_(mean)
            self.has_prev.fill_(True)
        z = self.task_weights().to(mean.device)
        d = mean - self.min_losses.to(mean.device) + self.EPS
        self.w.copy_((z / d / (z / d).sum()).to(self.w))
        return self._weighted_sum(losses, self.w)

    def _check_above_bounds(self, mean: Tensor) -> None:
        low = [(n, float(v), float(b)) for n, v, b in zip(self.names, mean, self.min_losses) if v <= b]
        if low:
            n, v, b = low[0]
            raise PlatformError(f"{WHERE}: famo takes the log of each loss minus its lower bound, but the "
                                f"loss of {n} ({v:.6g}) is not above {b:g}; set task.balancing.min_losses."
                                f"{n} below the lowest value this loss can take")

    @torch.no_grad()
    def _update_logits(self, before: Tensor, after: Tensor) -> None:
        """One Adam step of ξ along J_softmax(ξ)^T δ."""
        b = self.min_losses.to(before.device)
        delta = torch.log(before - b + self.EPS) - torch.log(after - b + self.EPS)
        z = self.task_weights().to(delta.device)
        self.logits.grad = (z * (delta - (z * delta).sum())).to(self.logits)  # softmax VJP
        self._adam.step()
        self.logits.grad = None

    def get_extra_state(self) -> dict:
        return {"adam": self._adam.state_dict()}

    def set_extra_state(self, state: Any) -> None:
        self._adam.load_state_dict(state["adam"])
        for group in self._adam.param_groups:  # the config's values, as for every other option
            group["lr"], group["weight_decay"] = self.lr, self.weight_decay


def balancer_options(cls: type) -> list[str]:
    """Option keys a balancer class accepts (its constructor's keywords other than ``names`` and
    ``seed``, which come from the run)."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name not in ("self", "names", "seed")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def build_balancer(cfg: Optional[Mapping[str, Any]], names: list[str], seed: int = 0) -> LossBalancer:
    """Build the balancer of ``task.balancing`` for members ``names``; None → fixed, all weights 1.
    ``seed`` (the run's) reaches the balancers that draw random numbers."""
    if cfg is None:
        return FixedBalancer(list(names))
    if not isinstance(cfg, Mapping) or "type" not in cfg:
        raise ConfigError(f"{WHERE}: expected a mapping with a 'type' key "
                          f"(one of {', '.join(sorted(BALANCERS.module_dict))}), got {cfg!r}")
    cls = lookup(BALANCERS, cfg["type"], f"{WHERE}.type")
    allowed = balancer_options(cls)
    unknown = sorted(str(k) for k in cfg if k != "type" and k not in allowed)
    if unknown:
        raise ConfigError(f"{WHERE}: unknown option(s) {', '.join(unknown)} for type {cfg['type']!r}; "
                          f"allowed: {', '.join(['type', *allowed])}")
    extra = {"seed": int(seed)} if "seed" in inspect.signature(cls.__init__).parameters else {}
    return build(BALANCERS, cfg, WHERE, names=list(names), **extra)
