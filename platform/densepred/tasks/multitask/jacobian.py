"""Per-task gradients of one optimizer step, kept equal on every worker, aggregated with TorchJD.

Each batch of a step adds, for every member, the gradient of its objective to its own heads'
``.grad`` and one row of the Jacobian of all objectives w.r.t. the shared parameters to their
``.jac`` (``torchjd.autojac.backward``). The batch that ends the step averages both over the
workers with one all-reduce, then ``torchjd.autojac.jac_to_grad`` aggregates the Jacobian into the
shared parameters' ``.grad``. Gradients here come from ``torch.autograd.grad``, which DDP does not
reduce, so the all-reduce is ours: every worker then holds the same Jacobian, computes the same
update, and the replicas stay equal.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torchjd.aggregation import Aggregator
from torchjd.autojac import backward as jacobian_backward
from torchjd.autojac import jac_to_grad

from ...errors import PlatformError


@dataclass
class ModelParts:
    """The trained parameters of a multi-task model, split for aggregation."""

    shared: list[nn.Parameter]        # backbone and neck: every member's loss reaches them
    heads: list[list[nn.Parameter]]   # per member (in member order): the parameters of its heads
    chunk: Optional[int] = None       # TorchJD's parallel_chunk_size: None = all rows in one vmap


def split_parameters(model: nn.Module, member_heads: Sequence[Sequence[str]]) -> ModelParts:
    """Shared parameters (everything trained outside ``model.heads``) and each member's heads'."""
    in_heads = {id(p) for p in model.heads.parameters()}
    shared = [p for p in model.parameters() if p.requires_grad and id(p) not in in_heads]
    heads = [[p for h in names for p in model.heads[h].parameters() if p.requires_grad]
             for names in member_heads]
    # The Jacobian rows go back one after the other (chunk 1) instead of in one vmap:
    # - on the CPU, where the vmap was 2.3x slower (HRNet-W16 demo model, batch 32: 1063 vs 461 ms
    #   for 2 rows; a plain backward 218 ms);
    # - with a synchronised batch norm, whose backward is a collective that vmap cannot batch
    #   (torch's SyncBatchNorm, the engine's CPUSyncBatchNorm: tasks do not import the engine,
    #   hence the name); one row at a time keeps the collectives in the same order on every worker.
    sync_bn = any("SyncBatchNorm" in type(m).__name__ for m in model.modules())
    on_cpu = all(p.device.type == "cpu" for p in shared)
    return ModelParts(shared=shared, heads=heads, chunk=1 if sync_bn or on_cpu else None)


def add_task_gradients(objectives: Sequence[Tensor], parts: ModelParts, factor: float) -> None:
    """One batch: member i's heads accumulate ``factor * ∇ objective_i`` in ``.grad``; the shared
    parameters accumulate the rows ``factor * ∇ objective_i`` in ``.jac``. Frees the graph."""
    _drop_stale_jacobians(parts)
    scaled = [o * factor for o in objectives]
    for objective, params in zip(scaled, parts.heads):
        if params:
            grads = torch.autograd.grad(objective, params, retain_graph=True, allow_unused=True)
            for p, g in zip(params, grads):
                _accumulate(p, torch.zeros_like(p) if g is None else g)
    jacobian_backward(scaled, inputs=parts.shared, parallel_chunk_size=parts.chunk)


def aggregate_step(parts: ModelParts, aggregator: Aggregator, world: int, scale: Optional[float],
                   seed: int) -> Optional[Tensor]:
    """End of a step: average the Jacobian and the heads' gradients over the workers, aggregate the
    Jacobian into the shared ``.grad``; returns the aggregator's weights when it has some.

    ``scale`` is the AMP scaler's scale (None without a scaler): the aggregator sees the unscaled
    Jacobian and the result is scaled back, as the engine unscales every ``.grad`` before the step.
    A non-finite Jacobian goes into ``.grad`` as it is, for the scaler to skip the step; without a
    scaler it stops the run."""
    jacobians = [p.jac for p in parts.shared]
    average_over_workers(jacobians + [p.grad for ps in parts.heads for p in ps if p.grad is not None], world)
    if not all(bool(torch.isfinite(j).all()) for j in jacobians):  # same answer on every worker
        if scale is None:
            raise PlatformError("a member's gradient of the shared parameters is not finite; lower the "
                                "learning rate or check the data")
        for p in parts.shared:
            _accumulate(p, p.jac.sum(dim=0))
            del p.jac
        return None
    if scale is not None and scale != 1.0:
        for j in jacobians:
            j.div_(scale)
    with seeded(seed, jacobians[0].device):  # PCGrad and GradDrop draw random numbers
        weights = jac_to_grad(parts.shared, aggregator)
    if scale is not None and scale != 1.0:
        for p in parts.shared:
            p.grad.mul_(scale)
    return weights


def average_over_workers(tensors: Sequence[Tensor], world: int) -> None:
    """Replace each tensor by its mean over the workers, in one all-reduce."""
    if world <= 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view(t.shape))
        offset += t.numel()


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Random numbers drawn inside come from ``seed`` on the CPU and ``device``; the global
    generators are restored afterwards."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed(seed)
        yield


def _accumulate(p: Tensor, g: Tensor) -> None:
    if p.grad is None:
        p.grad = g.detach().clone() if g.requires_grad else g
    else:
        p.grad.add_(g)


def _drop_stale_jacobians(parts: ModelParts) -> None:
    """Forget Jacobians of a step that never ended (its last batch was skipped): the engine has
    cleared the heads' ``.grad`` since, which a step in progress always has."""
    in_progress = any(p.grad is not None for ps in parts.heads for p in ps)
    if not in_progress:
        for p in parts.shared:
            if hasattr(p, "jac"):
                del p.jac
