"""Multi-task loss balancers (fixed, uncertainty, DWA, GradNorm) and the Δm figure."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from densepred.errors import ConfigError, PlatformError
from densepred.tasks.multitask.balancing import (
    DWABalancer, FixedBalancer, GradNormBalancer, UncertaintyBalancer, build_balancer,
)
from densepred.tasks.multitask.delta_m import delta_m, format_delta_table

NAMES = ["pose", "mask"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _t(value: float, requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.float32, requires_grad=requires_grad)


# ---------------------------------------------------------------- fixed

def test_fixed_total_is_weighted_sum_and_missing_names_default_to_one() -> None:
    bal = build_balancer({"type": "fixed", "weights": {"pose": 2.5}}, NAMES)
    total = bal({"pose": _t(0.4), "mask": _t(3.0)})
    assert total.item() == pytest.approx(2.5 * 0.4 + 1.0 * 3.0)
    assert bal.weights() == {"pose": 2.5, "mask": 1.0}


@pytest.mark.parametrize("weights, key", [
    ({"depth": 1.0}, "depth"),
    ({"pose": -1.0}, "task.balancing.weights.pose"),
    ({"mask": float("nan")}, "task.balancing.weights.mask"),
    ({"mask": "heavy"}, "task.balancing.weights.mask"),
])
def test_fixed_rejects_bad_weights(weights: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        FixedBalancer(NAMES, weights=weights)
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------- uncertainty

def test_uncertainty_total_gradients_and_weights() -> None:
    bal = UncertaintyBalancer(NAMES, init=0.5)
    total = bal({"pose": _t(2.0), "mask": _t(0.1)})
    expect = sum(math.exp(-0.5) * v + 0.5 for v in (2.0, 0.1))
    assert total.item() == pytest.approx(expect, rel=1e-6)
    total.backward()
    grad = bal.log_vars.grad
    assert grad is not None and torch.all(grad != 0)
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L
    assert grad.tolist() == pytest.approx([1 - math.exp(-0.5) * 2.0, 1 - math.exp(-0.5) * 0.1], rel=1e-5)


def test_uncertainty_learns_lower_weight_for_large_constant_loss() -> None:
    bal = UncertaintyBalancer(NAMES)
    opt = torch.optim.SGD(bal.parameters(), lr=0.05)
    for _ in range(30):
        opt.zero_grad()
        bal({"pose": _t(10.0), "mask": _t(0.2)}).backward()
        opt.step()
    s = bal.log_vars.detach()
    assert s[0] > 0.5 and s[1] < 0  # large loss: variance up; small loss: variance down
    w = bal.weights()
    assert w["pose"] < 1.0 < w["mask"]
    assert w["pose"] == pytest.approx(math.exp(-s[0].item()), rel=1e-6)
    assert w["mask"] == pytest.approx(math.exp(-s[1].item()), rel=1e-6)


def test_uncertainty_state_dict_round_trip() -> None:
    bal = UncertaintyBalancer(NAMES)
    with torch.no_grad():
        bal.log_vars.copy_(torch.tensor([0.3, -0.7]))
    fresh = UncertaintyBalancer(NAMES)
    fresh.load_state_dict(bal.state_dict())
    assert fresh.weights() == bal.weights()


# ---------------------------------------------------------------- dwa

HISTORY = [{"pose": 1.0, "mask": 2.0}, {"pose": 0.5, "mask": 1.8}, {"pose": 0.4, "mask": 1.0}]


def _dwa_by_hand(prev2: dict, prev1: dict, temperature: float) -> dict:
    e = {n: math.exp(prev1[n] / prev2[n] / temperature) for n in NAMES}
    return {n: len(NAMES) * e[n] / sum(e.values()) for n in NAMES}


def test_dwa_weights_follow_the_formula() -> None:
    bal = DWABalancer(NAMES, temperature=2.0)
    assert bal.weights() == {"pose": 1.0, "mask": 1.0}
    bal.end_epoch(HISTORY[0])
    assert bal.weights() == {"pose": 1.0, "mask": 1.0}  # one epoch known: still uniform
    bal.end_epoch(HISTORY[1])
    assert bal.weights() == pytest.approx(_dwa_by_hand(HISTORY[0], HISTORY[1], 2.0), rel=1e-6)
    bal.end_epoch(HISTORY[2])
    expect = _dwa_by_hand(HISTORY[1], HISTORY[2], 2.0)
    assert bal.weights() == pytest.approx(expect, rel=1e-6)
    assert sum(bal.weights().values()) == pytest.approx(2.0)
    total = bal({"pose": _t(0.3), "mask": _t(0.9)})
    assert total.item() == pytest.approx(expect["pose"] * 0.3 + expect["mask"] * 0.9, rel=1e-6)
    # The member whose loss fell more slowly (pose: 0.8 vs mask: 0.56) gets the larger weight.
    assert expect["pose"] > expect["mask"]


def test_dwa_state_dict_round_trip_resumes_history() -> None:
    bal = DWABalancer(NAMES, temperature=1.5)
    for epoch in HISTORY[:2]:
        bal.end_epoch(epoch)
    fresh = DWABalancer(NAMES, temperature=1.5)
    fresh.load_state_dict(bal.state_dict())
    assert fresh.weights() == bal.weights()
    bal.end_epoch(HISTORY[2])
    fresh.end_epoch(HISTORY[2])  # the resumed run continues with the same history
    assert fresh.weights() == bal.weights()


def test_dwa_end_epoch_needs_every_member() -> None:
    with pytest.raises(PlatformError, match="mask"):
        DWABalancer(NAMES).end_epoch({"pose": 1.0})


# ---------------------------------------------------------------- subsets of members

def test_subset_of_losses() -> None:
    fixed = FixedBalancer(NAMES, weights={"pose": 2.0, "mask": 3.0})
    assert fixed({"mask": _t(0.5)}).item() == pytest.approx(1.5)

    unc = UncertaintyBalancer(NAMES, init=0.2)
    total = unc({"pose": _t(1.5)})
    assert total.item() == pytest.approx(math.exp(-0.2) * 1.5 + 0.2, rel=1e-6)
    total.backward()
    assert unc.log_vars.grad[0] != 0 and unc.log_vars.grad[1] == 0  # the absent member is untouched

    dwa = DWABalancer(NAMES)
    for epoch in HISTORY:
        dwa.end_epoch(epoch)
    w = dwa.weights()
    assert dwa({"pose": _t(0.7)}).item() == pytest.approx(w["pose"] * 0.7, rel=1e-6)


def test_unknown_member_loss_is_rejected() -> None:
    with pytest.raises(PlatformError, match="depth"):
        FixedBalancer(NAMES)({"depth": _t(1.0)})


# ---------------------------------------------------------------- gradnorm

SCALE = 30.0  # the mask loss is scaled up: its gradient on the shared layer is 30x the pose one


class _Toy(nn.Module):
    """Shared linear layer feeding two identical heads fit to the same target; only the loss scale
    differs, so the per-task gradient norms on the shared layer start exactly SCALE apart."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 8)
        self.heads = nn.ModuleList([nn.Linear(8, 1), nn.Linear(8, 1)])
        self.heads[1].load_state_dict(self.heads[0].state_dict())
        self.x = torch.randn(32, 4)
        self.y = torch.randn(32, 1)

    def losses(self) -> dict[str, torch.Tensor]:
        f = torch.tanh(self.shared(self.x))
        return {name: scale * ((head(f) - self.y) ** 2).mean()
                for name, scale, head in zip(NAMES, (1.0, SCALE), self.heads)}


def _grad_norms(toy: _Toy, weights: dict[str, float]) -> list[float]:
    """||∂(w_i L_i)/∂W_shared|| for each member."""
    losses = toy.losses()
    return [weights[n] * torch.autograd.grad(losses[n], toy.shared.weight, retain_graph=True)[0].norm().item()
            for n in NAMES]


def _gradnorm_steps(toy: _Toy, bal: GradNormBalancer, steps: int, lr: float = 1e-4) -> None:
    opt = torch.optim.SGD(toy.parameters(), lr=lr)  # the model's optimizer; the weights are not in it
    for _ in range(steps):
        opt.zero_grad()
        bal(toy.losses(), toy.shared.weight).backward()
        opt.step()


def test_gradnorm_equalises_gradient_norms() -> None:
    toy = _Toy()
    start = _grad_norms(toy, {n: 1.0 for n in NAMES})
    assert start[1] / start[0] == pytest.approx(SCALE, rel=1e-4)
    # GradNorm's plain gradient step moves w_mask by lr * ||∇L_mask|| per step; choose lr so one
    # step is ~15% of w_mask's balanced value 2 / (1 + SCALE), which makes the test scale-free.
    lr = 0.15 * (2 / (1 + SCALE)) / start[1]
    bal = build_balancer({"type": "gradnorm", "alpha": 1.5, "lr": lr}, NAMES)
    _gradnorm_steps(toy, bal, 200)
    w = bal.weights()
    end = _grad_norms(toy, w)
    assert max(end) / min(end) < 1.5  # from 30x apart to nearly equal
    assert sum(w.values()) == pytest.approx(2.0, rel=1e-5)
    assert w["pose"] > 10 * w["mask"] > 0


def test_gradnorm_total_uses_detached_weights_and_resumes_exactly() -> None:
    toy = _Toy()
    bal = GradNormBalancer(NAMES, lr=0.001)
    _gradnorm_steps(toy, bal, 5)
    fresh = GradNormBalancer(NAMES, lr=0.001)
    fresh.load_state_dict(bal.state_dict())
    assert fresh.weights() == bal.weights()
    assert torch.equal(fresh.initial_losses, bal.initial_losses)

    w = torch.tensor([bal.weights()[n] for n in NAMES])
    losses = toy.losses()
    toy.zero_grad()
    bal(losses, toy.shared.weight).backward()
    # The model gradient is that of Σ w_i L_i with the weights of this step, nothing from L_grad.
    expect = sum(w[i] * torch.autograd.grad(toy.losses()[n], toy.shared.weight)[0] for i, n in enumerate(NAMES))
    # fp32 sums in another order (AVX-512/AMX kernels) differ by ~1e-5 relative; a leak of L_grad
    # into the model gradient would be of the order of the gradient itself.
    assert torch.allclose(toy.shared.weight.grad, expect, rtol=1e-4, atol=1e-6)
    fresh(toy.losses(), toy.shared.weight)  # the resumed balancer takes the same step
    assert fresh.weights() == pytest.approx(bal.weights(), rel=1e-6)


def test_gradnorm_averages_weight_gradient_over_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    toy = _Toy()
    local = GradNormBalancer(NAMES, lr=0.001)
    _gradnorm_steps(toy, local, 3)
    dist = torch.distributed
    calls = []

    def fake_all_reduce(t: torch.Tensor) -> None:  # two workers with the same gradient: sum = 2x
        calls.append(t.clone())
        t.mul_(2)

    toy2 = _Toy()
    multi = GradNormBalancer(NAMES, lr=0.001)
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "all_reduce", fake_all_reduce)
    _gradnorm_steps(toy2, multi, 3)
    assert len(calls) == 3
    assert multi.weights() == pytest.approx(local.weights(), rel=1e-6)


def test_gradnorm_needs_shared_and_every_loss() -> None:
    toy = _Toy()
    bal = GradNormBalancer(NAMES)
    assert bal.needs_all_losses and bal.needs_shared
    with pytest.raises(ConfigError, match="shared"):
        bal(toy.losses())
    with pytest.raises(ConfigError, match="same_input"):
        bal({"pose": toy.losses()["pose"]}, toy.shared.weight)
    bal.eval()  # evaluation: a plain weighted sum, no shared layer needed
    losses = toy.losses()
    assert bal(losses).item() == pytest.approx(sum(v.item() for v in losses.values()), rel=1e-6)


# ---------------------------------------------------------------- build_balancer

def test_build_balancer_defaults_and_options() -> None:
    bal = build_balancer(None, NAMES)
    assert isinstance(bal, FixedBalancer) and bal.weights() == {"pose": 1.0, "mask": 1.0}
    assert build_balancer({"type": "dwa", "temperature": 4.0}, NAMES).temperature == 4.0
    assert isinstance(build_balancer({"type": "uncertainty"}, NAMES), UncertaintyBalancer)


def test_build_balancer_rejects_bad_configs() -> None:
    with pytest.raises(ConfigError, match="dwa.*fixed.*gradnorm.*uncertainty"):
        build_balancer({"type": "magic"}, NAMES)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) temp .*allowed: type, temperature"):
        build_balancer({"type": "dwa", "temp": 2.0}, NAMES)
    with pytest.raises(ConfigError, match="'type' key"):
        build_balancer({"weights": {}}, NAMES)
    for cfg, key in [({"type": "dwa", "temperature": 0}, "temperature"),
                     ({"type": "gradnorm", "alpha": -0.5}, "alpha"),
                     ({"type": "gradnorm", "lr": 0.0}, "lr")]:
        with pytest.raises(ConfigError, match=rf"task\.balancing\.{key}"):
            build_balancer(cfg, NAMES)


# ---------------------------------------------------------------- delta_m

METRICS = {"pose/AP": 0.60, "depth/rmse": 0.45}
BASELINES = {"pose/AP": 0.62, "depth/rmse": 0.50}
HIGHER = {"pose/AP": True, "depth/rmse": False}


def test_delta_m_by_hand() -> None:
    by_hand = 100 / 2 * ((0.60 - 0.62) / 0.62 - (0.45 - 0.50) / 0.50)
    assert delta_m(METRICS, BASELINES, HIGHER) == pytest.approx(by_hand)
    assert by_hand == pytest.approx(3.387, abs=1e-3)
    table = format_delta_table(METRICS, BASELINES, HIGHER)
    lines = table.splitlines()
    assert lines[-1] == "Δm = +3.39 %"
    assert "pose/AP" in lines[2] and "-3.23" in lines[2]  # raw relative change, not direction-signed
    assert "depth/rmse" in lines[3] and "-10.00" in lines[3]
    assert len({len(line) for line in lines[:-1]}) == 1  # aligned columns


def test_delta_m_rejects_bad_input() -> None:
    with pytest.raises(PlatformError, match="depth/rmse"):
        delta_m({"pose/AP": 0.6}, BASELINES, HIGHER)
    with pytest.raises(PlatformError, match="pose/AP"):
        delta_m(METRICS, {**BASELINES, "pose/AP": 0.0}, HIGHER)
    with pytest.raises(PlatformError, match="pose/AP"):
        delta_m(METRICS, {**BASELINES, "pose/AP": float("inf")}, HIGHER)
