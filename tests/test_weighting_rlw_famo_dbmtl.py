"""The cheap weightings LibMTL has: RLW (random loss weighting), FAMO and DB-MTL. Each against its
definition on hand-made losses, its state through a checkpoint round trip (a resumed run takes the
same next weights), and the same weights on every worker."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from densepred.checkpoint import read_checkpoint, save_checkpoint
from densepred.errors import ConfigError, PlatformError
from densepred.tasks.base import StepContext
from densepred.tasks.multitask.balancing import FAMOBalancer, RLWBalancer, build_balancer, step_seed

NAMES = ["pose", "mask"]


pytestmark = pytest.mark.usefixtures("one_thread")


def _losses(pose: float, mask: float, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    return {n: torch.tensor(v, dtype=torch.float32, requires_grad=requires_grad)
            for n, v in zip(NAMES, (pose, mask))}


def _through_checkpoint(module: nn.Module, tmp_path) -> dict:
    """The balancer's state as a resumed run gets it back: written into an epoch checkpoint the way
    the engine writes it, read back with the engine's safe loader (weights_only, checksum)."""
    path = save_checkpoint(tmp_path / "ckpt.pth", nn.Linear(1, 1), meta={"epoch": 0},
                           task_state=module.state_dict())
    return read_checkpoint(path)["task_state"]


def _fake_workers(monkeypatch: pytest.MonkeyPatch, other: torch.Tensor) -> None:
    """Pretend to be one of two DDP workers whose peer holds ``other`` in every all-reduce."""
    dist = torch.distributed
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: t.add_(other.to(t)))


# --------------------------------------------------------------------------- rlw

def test_rlw_draws_softmax_of_normal_samples_from_seed_and_step():
    bal = build_balancer({"type": "rlw"}, NAMES, seed=11)
    bal.train()
    for step in range(3):
        total = bal(_losses(0.4, 2.0))
        gen = torch.Generator().manual_seed(step_seed(11, step))
        expect = torch.softmax(torch.randn(2, generator=gen, dtype=torch.float64), dim=0)
        w = bal.weights()
        assert [w["pose"], w["mask"]] == pytest.approx(expect.tolist(), rel=1e-6)
        assert sum(w.values()) == pytest.approx(1.0)
        assert total.item() == pytest.approx(0.4 * w["pose"] + 2.0 * w["mask"], rel=1e-6)
    assert int(bal.draws) == 3


def test_rlw_workers_draw_the_same_and_other_seeds_differ():
    a, b, c = (RLWBalancer(NAMES, seed=s) for s in (3, 3, 4))
    for bal in (a, b, c):
        bal.train()
        bal(_losses(1.0, 1.0))
    assert a.weights() == b.weights() != c.weights()
    a(_losses(1.0, 1.0))
    assert a.weights() != b.weights()   # a new draw every batch


def test_rlw_resumes_its_sequence_and_does_not_draw_in_evaluation(tmp_path):
    bal = RLWBalancer(NAMES, seed=5)
    bal.train()
    for _ in range(4):
        bal(_losses(1.0, 1.0))
    fresh = RLWBalancer(NAMES, seed=5)
    fresh.load_state_dict(_through_checkpoint(bal, tmp_path))
    fresh.train()
    bal(_losses(1.0, 1.0))
    fresh(_losses(1.0, 1.0))
    assert fresh.weights() == bal.weights()
    bal.eval()
    before = int(bal.draws)
    bal(_losses(1.0, 1.0))
    assert int(bal.draws) == before


def test_rlw_weights_the_present_member_in_mixed_batches():
    bal = RLWBalancer(NAMES, seed=1)
    bal.train()
    total = bal({"mask": torch.tensor(2.0)})
    assert total.item() == pytest.approx(2.0 * bal.weights()["mask"], rel=1e-6)
    assert not bal.needs_all_losses


# --------------------------------------------------------------------------- famo

def test_famo_gradient_is_the_papers_scaled_log_loss_gradient():
    """d total / d L_i = c z_i / L_i, c = 1 / Σ z_j / L_j: the gradient of c Σ z_i log L_i."""
    bal = FAMOBalancer(NAMES)
    bal.train()
    losses = _losses(0.02, 0.7, requires_grad=True)
    bal(losses).backward()
    z = torch.tensor([0.5, 0.5], dtype=torch.float64)
    d = torch.tensor([0.02, 0.7], dtype=torch.float64) + FAMOBalancer.EPS
    c = 1.0 / (z / d).sum()
    for i, n in enumerate(NAMES):
        assert losses[n].grad.item() == pytest.approx(float(c * z[i] / d[i]), rel=1e-5)
    w = bal.weights()
    assert w["pose"] > w["mask"]           # the small loss is scaled up: both losses fall at equal rates


def test_famo_logits_follow_torchjd_famo():
    """Same losses before and after each step: the same logits as TorchJD's FAMO scalarizer
    (the official update: Adam on J_softmax^T δ with the paper's weight decay)."""
    scalarization = pytest.importorskip("torchjd.scalarization")
    sequence = [(1.0, 0.8), (0.9, 0.79), (0.7, 0.78), (0.65, 0.6), (0.6, 0.59)]
    ours = FAMOBalancer(NAMES, lr=0.025, weight_decay=1e-3)
    ours.train()
    reference = scalarization.FAMO(2, lr=0.025, weight_decay=1e-3)
    for before, after in zip(sequence, sequence[1:]):
        reference(torch.tensor(before))
        reference.update(torch.tensor(after))
    for losses in sequence:
        ours(_losses(*losses))
    assert torch.allclose(ours.logits, reference._w.detach(), atol=1e-6)
    z = ours.task_weights()
    assert z[0] < z[1]   # pose fell from 1.0 to 0.6, mask only from 0.8 to 0.59: mask gains weight


def test_famo_state_resumes_to_the_same_next_weights(tmp_path):
    sequence = [(1.0, 0.8), (0.9, 0.7), (0.7, 0.69), (0.5, 0.6)]
    bal = FAMOBalancer(NAMES)
    bal.train()
    for losses in sequence[:3]:
        bal(_losses(*losses))
    fresh = FAMOBalancer(NAMES)
    fresh.load_state_dict(_through_checkpoint(bal, tmp_path))
    fresh.train()
    bal(_losses(*sequence[3]))
    fresh(_losses(*sequence[3]))
    assert torch.equal(fresh.logits, bal.logits) and fresh.weights() == bal.weights()
    assert not any(p.requires_grad for p in bal.parameters())   # the main optimizer never sees ξ


def test_famo_uses_the_losses_averaged_over_workers(monkeypatch):
    sequence = [(1.0, 0.8), (0.9, 0.7), (0.7, 0.69)]
    alone = FAMOBalancer(NAMES)
    alone.train()
    for losses in sequence:
        alone(_losses(*losses))
    peer = FAMOBalancer(NAMES)
    peer.train()
    _fake_workers(monkeypatch, torch.tensor([0.0, 0.0], dtype=torch.float64))
    for pose, mask in sequence:   # this worker's losses are twice the mean; its peer's are 0
        peer(_losses(2 * pose, 2 * mask))
    assert torch.allclose(peer.logits, alone.logits, atol=1e-7)


def test_famo_checks_its_inputs():
    with pytest.raises(ConfigError, match="task.balancing.min_losses: unknown task name"):
        build_balancer({"type": "famo", "min_losses": {"depth": 0.0}}, NAMES)
    with pytest.raises(ConfigError, match="task.balancing.lr"):
        build_balancer({"type": "famo", "lr": 0}, NAMES)
    bal = build_balancer({"type": "famo", "min_losses": {"pose": 0.5}}, NAMES)
    bal.train()
    with pytest.raises(PlatformError, match="loss of pose .* is not above 0.5"):
        bal(_losses(0.3, 1.0))
    with pytest.raises(ConfigError, match="same_input"):
        bal({"pose": torch.tensor(1.0)})
    assert bal.needs_all_losses


# --------------------------------------------------------------------------- db_mtl

def test_dual_balancing_follows_its_definition():
    pytest.importorskip("torchjd")
    from densepred.tasks.multitask.dual_balancing import DualBalancing

    agg = DualBalancing(beta=0.9, beta_sigma=0.5)
    g = [torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.1, 0.0]]), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.2]])]
    ema = torch.zeros(2, 3)
    for t, m in enumerate(g, start=1):
        beta_t = 0.9 / t ** 0.5
        ema = beta_t * ema + (1 - beta_t) * m
        norms = ema.norm(dim=1)
        expect = sum(norms.max() * ema[i] / norms[i] for i in range(2))   # every row at the largest norm
        assert torch.allclose(agg(m), expect, rtol=1e-5)
        assert torch.allclose(agg.last_weights, norms.max() / norms, rtol=1e-5)


class Toy(nn.Module):
    """A shared θ and one scale per head: L_i = (s_i (g_i·θ))²."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.ParameterDict({"theta": nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))})
        self.heads = nn.ModuleDict({n: nn.ParameterDict({"s": nn.Parameter(torch.tensor(1.0 + i))})
                                    for i, n in enumerate(NAMES)})
        self.g = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0]])

    def forward(self) -> dict[str, torch.Tensor]:
        theta = self.backbone["theta"]
        return {n: (self.heads[n]["s"] * (self.g[i] @ theta)) ** 2 for i, n in enumerate(NAMES)}


def _db_step(bal, toy: Toy, step: int) -> dict[str, float]:
    bal.train()
    bal(toy())
    return bal.backward({n: [n] for n in NAMES}, StepContext(model=toy, epoch=0, global_step=step), None)


def test_db_mtl_balances_log_loss_gradients_and_heads_learn_their_log_loss():
    pytest.importorskip("torchjd")
    toy = Toy()
    bal = build_balancer({"type": "db_mtl", "beta": 0.9, "beta_sigma": 0.0}, NAMES)
    logs = _db_step(bal, toy, 0)
    losses = toy()
    theta = toy.backbone["theta"]
    rows = torch.stack([torch.autograd.grad(torch.log(v + 1e-8), theta, retain_graph=True)[0] for v in losses.values()])
    ema = 0.1 * rows                                         # ĝ = 0.9 · 0 + 0.1 g on the first step
    norms = ema.norm(dim=1)
    expect = sum(norms.max() * ema[i] / norms[i] for i in range(2))
    assert torch.allclose(theta.grad, expect, rtol=1e-5)
    for n, v in losses.items():                              # each head: ∇ log L_i = ∇L_i / L_i
        s = toy.heads[n]["s"]
        own = torch.autograd.grad(v, s, retain_graph=True)[0] / v
        assert s.grad.item() == pytest.approx(own.item(), rel=1e-5)
    assert logs["agg_weight/pose"] == pytest.approx(float(norms.max() / norms[0]), rel=1e-5)
    assert bal.weights() == {"pose": 1.0, "mask": 1.0}


def test_db_mtl_resumes_its_moving_averages(tmp_path):
    pytest.importorskip("torchjd")
    toy, twin = Toy(), Toy()
    bal = build_balancer({"type": "db_mtl"}, NAMES)
    for step in range(3):
        _db_step(bal, toy, step)
        toy.zero_grad(set_to_none=True)
    fresh = build_balancer({"type": "db_mtl"}, NAMES)
    fresh.load_state_dict(_through_checkpoint(bal, tmp_path))
    twin.load_state_dict(toy.state_dict())
    _db_step(bal, toy, 3)
    _db_step(fresh, twin, 3)
    assert torch.equal(toy.backbone["theta"].grad, twin.backbone["theta"].grad)
    assert fresh.aggregator.steps == bal.aggregator.steps == 4


def test_db_mtl_workers_keep_the_same_averages():
    """Two balancers fed the same (all-reduced) Jacobians hold the same state and give the same
    update: what every DDP worker does after jacobian.aggregate_step's all-reduce."""
    pytest.importorskip("torchjd")
    a, b = (build_balancer({"type": "db_mtl"}, NAMES) for _ in range(2))
    for step in range(2):
        ta, tb = Toy(), Toy()
        _db_step(a, ta, step)
        _db_step(b, tb, step)
        assert torch.equal(ta.backbone["theta"].grad, tb.backbone["theta"].grad)
    assert torch.equal(a.aggregator.ema, b.aggregator.ema)


def test_db_mtl_options():
    pytest.importorskip("torchjd")
    with pytest.raises(ConfigError, match="task.balancing.beta: must be < 1"):
        build_balancer({"type": "db_mtl", "beta": 1.0}, NAMES)
    with pytest.raises(ConfigError, match="task.balancing.beta_sigma"):
        build_balancer({"type": "db_mtl", "beta_sigma": -1}, NAMES)
    with pytest.raises(ConfigError, match=r"unknown option\(s\) gamma"):
        build_balancer({"type": "db_mtl", "gamma": 0.1}, NAMES)
    assert math.isclose(build_balancer({"type": "db_mtl", "beta": 0.5}, NAMES).aggregator.beta, 0.5)
