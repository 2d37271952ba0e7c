"""Synchronised batch norm for multi-worker training, on GPU and on CPU.

``torch.nn.SyncBatchNorm`` only runs on accelerators; CPU workers (a laptop, a CPU Ray cluster) get
``CPUSyncBatchNorm``, which all-reduces per-channel sums through the autograd-aware
all-reduce whose backward is an all-reduce too. Both keep the ``BatchNorm2d`` parameter and buffer names, so
checkpoints stay interchangeable with unsynchronised models and with the official ones.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over workers; the gradient of every worker's input is the sum of all workers' gradients
    (each worker's loss depends on every worker's statistics)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class CPUSyncBatchNorm(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics are computed over the batches of all workers."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        # Per-worker mean and sum of squared deviations, combined with the parallel-variance formula:
        # E[x^2] - E[x]^2 would cancel badly when activations have a large mean.
        local_mean = xf.mean(dim=(0, 2, 3))
        local_m2 = (xf - local_mean.view(1, c, 1, 1)).square().sum(dim=(0, 2, 3))
        local_n = xf.new_full((1,), float(x.numel() // c))
        rank, world = dist.get_rank(), dist.get_world_size()
        slots = xf.new_zeros(world, 2 * c + 1)
        slots = slots.index_put((torch.tensor([rank]),), torch.cat([local_mean, local_m2, local_n]).unsqueeze(0))
        stats = _AllReduceSum.apply(slots)  # every worker's row, i.e. a differentiable all-gather
        means, m2s, ns = stats[:, :c], stats[:, c:2 * c], stats[:, 2 * c:]
        n = ns.sum()
        mean = (ns * means).sum(0) / n
        var = (m2s.sum(0) + (ns * (means - mean).square()).sum(0)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1).clamp_min(1), alpha=m)
        shape = (1, c, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every ``BatchNorm2d`` by its synchronised form for ``device`` (in place, weights kept)."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CPUSyncBatchNorm):
            new = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                   module.track_running_stats)
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            return new
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)

