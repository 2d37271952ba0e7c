"""Synchronised batch norm on CPU workers: two gloo processes with half a batch each must compute what
one process computes with the whole batch (outputs, weight gradients, running statistics)."""
from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from densepred.engine.syncbn import CPUSyncBatchNorm, convert_sync_batchnorm


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
                               torch.nn.Conv2d(6, 4, 1), torch.nn.BatchNorm2d(4, momentum=None),
                               torch.nn.Conv2d(4, 2, 1))


def _loss(y: torch.Tensor) -> torch.Tensor:
    # Not a function of batch-norm output alone (a sum of squares of it would be constant).
    w = torch.randn(y.shape[1:], generator=torch.Generator().manual_seed(2))
    return (y.square() * w).sum()


def _batch() -> torch.Tensor:
    return torch.randn(6, 3, 9, 9, generator=torch.Generator().manual_seed(1)) * 3 + 1


def _worker(rank: int, world: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    net = convert_sync_batchnorm(_net(), torch.device("cpu"))
    part = _batch().chunk(world)[rank]
    for _ in range(2):  # twice: running statistics accumulate
        y = net(part)
        _loss(y).backward()
    grad = net[0].weight.grad.clone()
    dist.all_reduce(grad)
    out[rank] = {"y": y.detach(), "grad": grad, "state": {k: v.clone() for k, v in net.state_dict().items()}}
    dist.destroy_process_group()


def test_cpu_sync_bn_equals_batch_norm_over_the_whole_batch():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.get_context("spawn").Manager()
    out = manager.dict()
    mp.start_processes(_worker, args=(2, port, out), nprocs=2, start_method="spawn")

    ref = _net()
    for _ in range(2):
        y = ref(_batch())
        _loss(y).backward()
    torch.testing.assert_close(torch.cat([out[0]["y"], out[1]["y"]]), y.detach(), rtol=1e-4, atol=1e-5)
    g = ref[0].weight.grad
    assert (out[0]["grad"] - g).abs().max() <= 1e-5 * g.abs().max()  # fp32 sums in another order
    for k, v in ref.state_dict().items():  # same names (checkpoints interchangeable) and values
        torch.testing.assert_close(out[0]["state"][k], v, rtol=1e-4, atol=1e-5)


def test_conversion_keeps_weights_and_names():
    net = _net()
    converted = convert_sync_batchnorm(_net(), torch.device("cpu"))
    assert isinstance(converted[1], CPUSyncBatchNorm) and isinstance(converted[4], CPUSyncBatchNorm)
    assert list(converted.state_dict()) == list(net.state_dict())
    converted.eval(), net.eval()
    torch.testing.assert_close(converted(_batch()), net(_batch()))  # one process: plain batch norm
