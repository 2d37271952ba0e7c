"""Optimizers from config: the fused kernels by default, the same updates as torch's defaults."""
from __future__ import annotations

import torch

from densepred.engine.optim import _fusable, build_optimizer


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in ((8, 4, 3, 3), (8,), (19, 8, 1, 1))]


def _steps(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter], n: int = 5) -> None:
    for i in range(n):
        for p in params:
            p.grad = torch.sin(p.detach() * (i + 1))
        optimizer.step()


def test_adam_adamw_and_sgd_use_the_fused_kernel_with_the_same_updates():
    for cfg in ({"type": "AdamW", "lr": 4e-3, "weight_decay": 1e-4}, {"type": "Adam", "lr": 1e-3},
                {"type": "SGD", "lr": 0.01, "momentum": 0.9}):
        fused_params, loop_params = _params(0), _params(0)
        fused = build_optimizer(fused_params, cfg)
        loop = build_optimizer(loop_params, {**cfg, "foreach": False})
        assert fused.defaults["fused"] is True, cfg
        assert not loop.defaults.get("fused"), "an explicit foreach keeps the config's choice"
        _steps(fused, fused_params)
        _steps(loop, loop_params)
        assert not torch.allclose(fused_params[0], _params(0)[0]), "the steps moved the weights"
        for a, b in zip(fused_params, loop_params):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), cfg


def test_explicit_fused_false_and_other_optimizers_are_left_alone():
    assert not build_optimizer(_params(1), {"type": "AdamW", "lr": 1e-3, "fused": False}).defaults["fused"]
    rms = build_optimizer(_params(1), {"type": "RMSprop", "lr": 1e-3})
    assert "fused" not in rms.defaults or not rms.defaults["fused"]
    groups = [{"params": _params(2)[:2], "lr": 1e-3}, {"params": _params(2)[2:], "lr": 1e-4}]
    assert build_optimizer(groups, {"type": "Adam", "lr": 1e-3}).defaults["fused"] is True
    # Parameters the fused kernels do not take (here integer ones): the choice is left to torch.
    assert not _fusable([torch.zeros(2, dtype=torch.int64)])
