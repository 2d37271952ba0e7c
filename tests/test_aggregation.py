"""Gradient aggregation as multi-task balancing (``task.balancing.type: aggregator``, TorchJD):
each method on a toy with known conflicting gradients, heads trained by their own loss only,
accumulation, AMP scale, workers kept equal (gloo processes and a Ray Train run), config errors."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from torch import nn

from conftest import REPO
from densepred import load_config
from densepred.errors import ConfigError, PlatformError
from densepred.tasks.base import StepContext, build_task
from densepred.tasks.multitask.aggregation import AGGREGATORS, AggregatorBalancer
from densepred.tasks.multitask.balancing import build_balancer, step_seed

torchjd_aggregation = pytest.importorskip("torchjd.aggregation")
from densepred.tasks.multitask.jacobian import seeded  # noqa: E402  (needs torchjd)

NAMES = ["a", "b"]
G1 = torch.tensor([5.0, 1.0, 0.0])     # the two members' gradients of the shared parameter:
G2 = torch.tensor([-1.0, 1.0, 0.5])    # G1·G2 = -4 < 0, and their mean conflicts with G2
SEED = 7


pytestmark = pytest.mark.usefixtures("one_thread")


class Toy(nn.Module):
    """L_a = s_a (g1·θ), L_b = s_b (g2·θ): ∇_θ L = s·g per member (shared), ∇_s L = g·θ (heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.ParameterDict({"theta": nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))})
        self.heads = nn.ModuleDict({n: nn.ParameterDict({"s": nn.Parameter(torch.ones(()))}) for n in NAMES})

    def forward(self, g1: torch.Tensor = G1, g2: torch.Tensor = G2) -> dict[str, torch.Tensor]:
        theta = self.backbone["theta"]
        return {n: self.heads[n]["s"] * (g @ theta) for n, g in zip(NAMES, (g1, g2))}


def _ctx(toy: nn.Module, step: int = 0, **kw) -> StepContext:
    return StepContext(model=toy, epoch=0, global_step=step, **kw)


def _step(balancer: AggregatorBalancer, toy: nn.Module, ctx: StepContext, scaler=None, **g) -> dict[str, float]:
    """What MultiTask does for one batch: the model's losses, the balanced loss (the balancer's
    forward), then the balancer's backward. ``toy`` may be the DDP-wrapped model."""
    balancer.train()
    balancer(toy(**g))
    return balancer.backward({n: [n] for n in NAMES}, ctx, scaler)


def _torchjd(name: str, matrix: torch.Tensor, step: int = 0) -> torch.Tensor:
    """TorchJD's aggregator ``name`` (default options) applied directly, with the step's seed."""
    with seeded(step_seed(SEED, step), matrix.device):
        return AggregatorBalancer(NAMES, aggregator=name).aggregator(matrix)


def _available(name: str) -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in AGGREGATORS[name].needs)


def _needs_deps(name: str):
    return pytest.param(name, marks=pytest.mark.skipif(not _available(name), reason=f"TorchJD extra "
                                                       f"{AGGREGATORS[name].extra} not installed"))


ALL = [_needs_deps(n) for n in AGGREGATORS]


# --------------------------------------------------------------------------- each method on the toy

@pytest.mark.parametrize("name", ALL)
def test_update_is_torchjd_aggregation_of_the_jacobian_and_heads_get_their_own_gradient(name):
    toy = Toy()
    bal = build_balancer({"type": "aggregator", "aggregator": name}, NAMES, seed=SEED)
    logs = _step(bal, toy, _ctx(toy))
    expected = _torchjd(name, torch.stack([G1, G2]))
    assert torch.allclose(toy.backbone["theta"].grad, expected, atol=1e-6), (toy.backbone["theta"].grad, expected)
    theta = toy.backbone["theta"].detach()
    for n, g in zip(NAMES, (G1, G2)):   # each head: the gradient of its own loss, nothing else
        assert toy.heads[n]["s"].grad.item() == pytest.approx(float(g @ theta), rel=1e-6)
    assert logs["agg_ms"] >= 0 and logs["jac_ms"] >= 0
    assert not hasattr(toy.backbone["theta"], "jac")   # the Jacobian is freed after the step


def test_mean_is_the_average():
    toy = Toy()
    _step(build_balancer({"type": "aggregator", "aggregator": "mean"}, NAMES), toy, _ctx(toy))
    assert torch.allclose(toy.backbone["theta"].grad, (G1 + G2) / 2)


def test_pcgrad_sums_the_projected_gradients():
    toy = Toy()
    _step(build_balancer({"type": "aggregator", "aggregator": "pcgrad"}, NAMES), toy, _ctx(toy))
    p1 = G1 - (G1 @ G2) / (G2 @ G2) * G2   # each gradient projected off the other's direction
    p2 = G2 - (G2 @ G1) / (G1 @ G1) * G1
    assert torch.allclose(toy.backbone["theta"].grad, p1 + p2, atol=1e-6)


def test_mgda_is_the_min_norm_point_of_the_convex_hull():
    toy = Toy()
    _step(build_balancer({"type": "aggregator", "aggregator": "mgda", "epsilon": 1e-6, "max_iters": 1000},
                         NAMES), toy, _ctx(toy))
    gamma = ((G2 - G1) @ G2 / ((G1 - G2) @ (G1 - G2))).clamp(0, 1)   # closed form for two vectors
    min_norm = gamma * G1 + (1 - gamma) * G2
    d = toy.backbone["theta"].grad
    assert torch.allclose(d, min_norm, atol=1e-4)
    assert all(float(d @ g) >= float(d @ d) - 1e-4 for g in (G1, G2))   # optimality: d·g_i >= |d|²


@pytest.mark.parametrize("name", [_needs_deps("upgrad"), _needs_deps("dualproj")])
def test_projection_methods_do_not_conflict_with_any_member(name):
    """UPGrad and DualProj project onto the dual cone of the gradients (up to the regularisation
    reg_eps adds to the Gramian: made tiny here)."""
    toy = Toy()
    _step(build_balancer({"type": "aggregator", "aggregator": name, "reg_eps": 1e-9}, NAMES), toy, _ctx(toy))
    d = toy.backbone["theta"].grad
    assert float(((G1 + G2) / 2) @ G2) < 0                     # the plain mean would undo member b
    assert float(d @ G1) >= -1e-6 and float(d @ G2) >= -1e-6
    assert float(d.norm()) > 0


def test_imtl_g_has_equal_projections_on_every_unit_gradient():
    toy = Toy()
    _step(build_balancer({"type": "aggregator", "aggregator": "imtl_g"}, NAMES), toy, _ctx(toy))
    d = toy.backbone["theta"].grad
    assert float(d @ G1 / G1.norm()) == pytest.approx(float(d @ G2 / G2.norm()), rel=1e-5)


def test_random_aggregators_draw_from_the_seed_and_step():
    """PCGrad and GradDrop draw random numbers: every worker must draw the same ones."""
    m = torch.stack([G1, G2, G1 + 0.5 * G2])
    names = ["a", "b", "c"]
    bal = AggregatorBalancer(names, aggregator="graddrop", seed=SEED)
    with seeded(step_seed(SEED, 3), m.device):
        first = bal.aggregator(m)
    with seeded(step_seed(SEED, 3), m.device):
        again = bal.aggregator(m)
    assert torch.equal(first, again)
    state = torch.random.get_rng_state()
    with seeded(1, m.device):
        torch.rand(5)
    assert torch.equal(state, torch.random.get_rng_state())   # the global generator is left alone


def test_weighted_aggregators_log_their_weights():
    toy = Toy()
    logs = _step(build_balancer({"type": "aggregator", "aggregator": "mgda"}, NAMES), toy, _ctx(toy))
    w = torch.tensor([logs["agg_weight/a"], logs["agg_weight/b"]])
    assert torch.allclose(w @ torch.stack([G1, G2]), toy.backbone["theta"].grad, atol=1e-6)
    bal = build_balancer({"type": "aggregator", "aggregator": "mgda"}, NAMES)
    assert bal.weights() == {"a": 1.0, "b": 1.0}          # the loss weights: each loss counts once
    assert bal({"a": torch.tensor(2.0), "b": torch.tensor(3.0)}).item() == 5.0


# --------------------------------------------------------------------------- accumulation and AMP

def test_accumulated_batches_are_aggregated_once_at_the_end_of_the_step():
    toy = Toy()
    bal = build_balancer({"type": "aggregator", "aggregator": "mgda"}, NAMES)
    logs = _step(bal, toy, _ctx(toy, accumulate=2, step_end=False))
    assert "agg_ms" not in logs and toy.backbone["theta"].grad is None
    _step(bal, toy, _ctx(toy, accumulate=2, step_end=True), g1=2 * G1, g2=-G2)
    jacobian = torch.stack([(G1 + 2 * G1) / 2, (G2 - G2) / 2])
    assert torch.allclose(toy.backbone["theta"].grad, _torchjd("mgda", jacobian), atol=1e-6)
    theta = toy.backbone["theta"].detach()
    assert toy.heads["a"]["s"].grad.item() == pytest.approx(float((G1 + 2 * G1) @ theta) / 2, rel=1e-6)


def test_a_step_whose_last_batch_was_skipped_leaves_nothing_behind():
    toy = Toy()
    bal = build_balancer({"type": "aggregator", "aggregator": "mean"}, NAMES)
    _step(bal, toy, _ctx(toy, accumulate=2, step_end=False), g1=100 * G1)
    toy.zero_grad(set_to_none=True)   # the engine drops the step (its last batch had a NaN loss)
    _step(bal, toy, _ctx(toy, accumulate=2, step_end=False))
    _step(bal, toy, _ctx(toy, accumulate=2, step_end=True))
    assert torch.allclose(toy.backbone["theta"].grad, (G1 + G2) / 2)


class FakeScaler:
    def __init__(self, scale: float):
        self.scale = scale

    def get_scale(self) -> float:
        return self.scale


def test_amp_scale_is_removed_before_aggregation_and_put_back_after():
    toy = Toy()
    bal = build_balancer({"type": "aggregator", "aggregator": "mgda"}, NAMES)
    _step(bal, toy, _ctx(toy), scaler=FakeScaler(1024.0))
    expected = _torchjd("mgda", torch.stack([G1, G2]))
    assert torch.allclose(toy.backbone["theta"].grad / 1024.0, expected, atol=1e-6)
    theta = toy.backbone["theta"].detach()
    assert toy.heads["b"]["s"].grad.item() == pytest.approx(1024.0 * float(G2 @ theta), rel=1e-6)


def test_non_finite_gradients_reach_the_scaler_or_stop_training():
    nan = torch.tensor([float("nan"), 0.0, 0.0])
    toy = Toy()
    bal = build_balancer({"type": "aggregator", "aggregator": "mean"}, NAMES)
    _step(bal, toy, _ctx(toy), scaler=FakeScaler(8.0), g1=nan)
    assert not torch.isfinite(toy.backbone["theta"].grad).all()   # the scaler skips this step
    toy = Toy()
    with pytest.raises(PlatformError, match="not finite"):
        _step(bal, toy, _ctx(toy), g1=nan)


# --------------------------------------------------------------------------- workers

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BNToy(nn.Module):
    """conv -> batch norm -> two linear heads fitting two targets."""

    def __init__(self, bn: type = nn.BatchNorm2d) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(1, 3, 1), bn(3), nn.ReLU())
        self.heads = nn.ModuleDict({n: nn.Linear(3, 1) for n in NAMES})

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(x).mean(dim=(2, 3))
        return {n: ((self.heads[n](f).squeeze(1) - y[:, i]) ** 2).mean() for i, n in enumerate(NAMES)}


def _bn_batch(rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + rank)
    return torch.randn(4, 1, 2, 2, generator=gen), torch.randn(4, 2, generator=gen)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    """A DDP worker (gloo). 1: three SGD steps with PCGrad (random task order) on gradients of its
    own. 2: one step of a model with synchronised batch norm (its backward is a collective)."""
    from densepred.engine.syncbn import CPUSyncBatchNorm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    toy = Toy()
    ddp = nn.parallel.DistributedDataParallel(toy)
    bal = build_balancer({"type": "aggregator", "aggregator": "pcgrad"}, NAMES, seed=SEED)
    opt = torch.optim.SGD(toy.parameters(), lr=0.1)
    first = None
    for step in range(3):
        g1, g2 = G1 * (1 + rank), G2 * (1 + 2 * rank) + step
        _step(bal, ddp, _ctx(toy, step, world=world), g1=g1, g2=g2)   # forward through DDP
        first = first if first is not None else toy.backbone["theta"].grad.clone()
        opt.step()
        opt.zero_grad(set_to_none=True)

    bn_toy = BNToy(CPUSyncBatchNorm)
    bn_bal = build_balancer({"type": "aggregator", "aggregator": "imtl_g"}, NAMES, seed=SEED)
    x, y = _bn_batch(rank)
    _step(bn_bal, nn.parallel.DistributedDataParallel(bn_toy), _ctx(bn_toy, world=world), x=x, y=y)
    torch.save({"first": first, "params": [p.detach() for p in toy.parameters()],
                "bn_grads": [p.grad.clone() for p in bn_toy.parameters()], "bn_chunk": bn_bal._parts[1].chunk},
               f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def gloo_workers(tmp_path_factory) -> list[dict]:
    """What two DDP processes (``_worker``) saved; spawned once for the tests below."""
    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]


def test_gloo_workers_aggregate_the_same_averaged_jacobian(gloo_workers):
    """Two DDP processes with different gradients: both apply the aggregation of the Jacobian
    averaged over the workers, so their weights stay equal."""
    r0, r1 = gloo_workers
    for a, b in zip(r0["params"], r1["params"]):
        assert torch.equal(a, b)
    averaged = torch.stack([(G1 + 2 * G1) / 2, (G2 + 3 * G2) / 2])
    assert torch.allclose(r0["first"], _torchjd("pcgrad", averaged, step=0), atol=1e-5)
    assert torch.equal(r0["first"], r1["first"])


def test_gloo_workers_with_synchronised_batch_norm(gloo_workers):
    """Sync BN: the Jacobian rows are back-propagated one at a time (its backward all-reduces), and
    the update is the one of a single process on both workers' batches together."""
    r0, r1 = gloo_workers
    assert r0["bn_chunk"] == 1
    single = BNToy()
    bal = build_balancer({"type": "aggregator", "aggregator": "imtl_g"}, NAMES, seed=SEED)
    (x0, y0), (x1, y1) = _bn_batch(0), _bn_batch(1)
    _step(bal, single, _ctx(single), x=torch.cat([x0, x1]), y=torch.cat([y0, y1]))
    scale = max(float(p.grad.abs().max()) for p in single.parameters())
    for a, b, ref in zip(r0["bn_grads"], r1["bn_grads"], single.parameters()):
        assert torch.equal(a, b)
        # (the conv bias before the batch norm has a zero gradient: float noise of either sign)
        assert torch.allclose(a, ref.grad, rtol=1e-4, atol=1e-4 * scale)


def test_jacobian_rows_in_one_vmap_equal_rows_one_at_a_time():
    """On CUDA the rows go back in one vmap (TorchJD's default); on the CPU one after the other."""
    from densepred.tasks.multitask.jacobian import add_task_gradients, split_parameters

    toy = BNToy()
    x, y = _bn_batch(0)
    parts = split_parameters(toy, [["a"], ["b"]])
    assert parts.chunk == 1 and len(parts.shared) == 4 and [len(h) for h in parts.heads] == [2, 2]
    rows = {}
    for chunk in (1, None):
        parts.chunk = chunk
        toy.zero_grad(set_to_none=True)
        add_task_gradients(list(toy(x, y).values()), parts, 1.0)
        rows[chunk] = [p.jac.clone() for p in parts.shared]
        for p in parts.shared:
            del p.jac
    for one, vmapped in zip(rows[1], rows[None]):
        assert torch.allclose(one, vmapped, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------- the demo model

TINY_DEMO = ["data.input_size=[48, 64]", "data.heatmap_size=[12, 16]", "data.batch_size=4",
             "data.val_batch_size=16", "data.loader_workers=0", "evaluation.flip_test=false", "bbox_file=null"]


def _demo_cfg(root: Path, work: Path, *extra: str):
    sets = [f"task.members.{m}.{s}" for m in ("pose", "mask") for s in (f"data_root={root}", *TINY_DEMO)]
    return load_config(REPO / "tasks" / "multitask_demo.yaml",
                       [*sets, f"work_dir={work}", "train.epochs=1", "train.log_interval=1",
                        "evaluation.interval=1", "ray.cpus_per_worker=1", *extra])


def test_multitask_backward_on_the_demo_model(tiny_pose_demo, tmp_path):
    """The pose + mask model: the backbone's .grad is UPGrad of the per-member gradients, each head's
    .grad its own loss's gradient; the plain balancers keep the plain backward."""
    task = build_task(_demo_cfg(tiny_pose_demo, tmp_path, "task.balancing={type: aggregator, aggregator: upgrad}"))
    torch.manual_seed(0)
    model = task.build_model()
    batch = task.collate([task.build_dataset("train")[i] for i in range(2)])
    ctx = _ctx(model)
    task.balancer.train()
    loss, logs = task.train_loss(model(batch["image"]), batch, ctx)
    logs.update(task.backward(loss, ctx, None))
    assert {"jac_ms", "agg_ms", "agg_weight/pose", "agg_weight/mask", "weight/pose"} <= set(logs)

    losses = task.member_losses(model(batch["image"]), batch)
    shared = [p for p in model.backbone.parameters()]
    rows = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(v, shared, retain_graph=True)])
            for v in losses.values()]
    expected = _torchjd("upgrad", torch.stack(rows))
    got = torch.cat([p.grad.reshape(-1) for p in shared])
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7 * float(expected.abs().max()))
    for name, head in (("pose", "pose"), ("mask", "mask")):
        params = list(model.heads[head].parameters())
        own = torch.autograd.grad(losses[name], params, retain_graph=True)
        for p, g in zip(params, own):
            assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-9)

    plain = build_task(_demo_cfg(tiny_pose_demo, tmp_path))   # fixed weights: loss.backward()
    model = plain.build_model()
    loss, _ = plain.train_loss(model(batch["image"]), batch, ctx)
    assert plain.backward(loss, ctx, None) == {}
    assert all(p.grad is not None for p in model.backbone.parameters())


def test_engine_step_backpropagates_through_the_task(tiny_pose_demo, tmp_path):
    """The engine's batch step hands the backward to the task: with an aggregator and two batches
    per step, the first batch only adds per-task gradients, the second aggregates, the optimizer
    step applies it; the cost figures reach the epoch's logs."""
    from types import SimpleNamespace

    from densepred.engine import loop

    task = build_task(_demo_cfg(tiny_pose_demo, tmp_path, "task.balancing={type: aggregator, aggregator: mgda}"))
    model = task.build_model()
    run = SimpleNamespace(settings=loop.TrainSettings(accumulate=2, channels_last=False), world=1,
                          device=torch.device("cpu"), model=model, core=model, task=task,
                          autocast=__import__("contextlib").nullcontext, scaler=None, log=None,
                          extras=task.trainable_extras(), optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                          by_iter=False)
    progress, stats = loop._Progress(), loop._EpochStats(t0=0.0)
    batch = task.collate([task.build_dataset("train")[i] for i in range(2)])
    before = [p.detach().clone() for p in model.backbone.parameters()]
    task.balancer.train()
    assert not loop._forward_backward(run, progress, stats, batch, 0, 0, step_now=False)
    assert all(p.grad is None for p in model.backbone.parameters())
    assert not loop._forward_backward(run, progress, stats, batch, 0, 1, step_now=True)
    loop._optimizer_step(run)
    assert any(not torch.equal(a, p) for a, p in zip(before, model.backbone.parameters()))
    assert stats.log_counts["jac_ms"] == 4 and stats.log_counts["agg_ms"] == 2   # sample-weighted
    assert {"agg_weight/pose", "loss/mask"} <= set(stats.log_sums)


def test_aggregator_upgrad_on_two_workers(ray_local, tiny_pose_demo, tmp_path):
    """Acceptance: a same-input run with UPGrad on 2 Ray Train workers ends with equal weights on
    both, and its cost per step is in metrics.jsonl."""
    from densepred.engine.launch import train

    cfg = _demo_cfg(tiny_pose_demo, tmp_path, "run_name=agg", "task.balancing={type: aggregator, aggregator: upgrad}")
    summary = train(cfg, workers=2)
    m = summary["metrics"]
    assert m["epoch"] == 1 and "stopped" not in m
    fingerprints = m["weight_fingerprints"]
    assert fingerprints[0] == pytest.approx(fingerprints[1], rel=1e-12, abs=0)
    rec = json.loads((tmp_path / "agg" / "logs" / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("agg_ms", "jac_ms", "agg_weight/pose", "agg_weight/mask", "loss/pose", "pose/AP"):
        assert isinstance(rec[key], float) and rec[key] >= 0, key


# --------------------------------------------------------------------------- config

@pytest.mark.parametrize("cfg, words", [
    ({"type": "aggregator"}, "task.balancing.aggregator: expected one of upgrad, mgda"),
    ({"type": "aggregator", "aggregator": "upgard"}, "got 'upgard'"),
    ({"type": "aggregator", "aggregator": "mgda", "c": 0.4}, "task.balancing.c: not an option of aggregator mgda"),
    ({"type": "aggregator", "aggregator": "pcgrad", "epsilon": 0.1}, "pcgrad takes no options"),
    ({"type": "aggregator", "aggregator": "mgda", "max_iters": 0}, "task.balancing.max_iters: expected a whole"),
    ({"type": "aggregator", "aggregator": "mgda", "epsilon": -1}, "task.balancing.epsilon: must be > 0"),
    ({"type": "aggregator", "aggregator": "aligned_mtl", "scale_mode": "max"}, "scale_mode: must be one of"),
    ({"type": "aggregator", "aggregator": "aligned_mtl", "pref_vector": {"a": 1}}, "pref_vector: expected a weight"),
    ({"type": "aggregator", "aggregator": "mgda", "weights": {"a": 1}}, "unknown option(s) weights"),
])
def test_bad_aggregator_configs_are_one_line_errors(cfg, words):
    with pytest.raises(ConfigError) as e:
        build_balancer(cfg, NAMES)
    assert words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["upgrad", "dualproj", "cagrad", "nash_mtl"])
def test_a_missing_optional_dependency_names_the_torchjd_extra(name, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda m, *a: None if m in ("quadprog", "cvxpy") else real(m, *a))
    with pytest.raises(ConfigError) as e:
        build_balancer({"type": "aggregator", "aggregator": name}, NAMES)
    assert f'pip install "torchjd[{AGGREGATORS[name].extra}]==0.18.0"' in str(e.value)
    assert "\n" not in str(e.value)


def test_options_reach_torchjd():
    bal = build_balancer({"type": "aggregator", "aggregator": "mgda", "epsilon": 0.01, "max_iters": 7}, NAMES)
    assert (bal.aggregator.gramian_weighting.epsilon, bal.aggregator.gramian_weighting.max_iters) == (0.01, 7)
    if _available("cagrad"):
        assert "c=0.5" in repr(build_balancer({"type": "aggregator", "aggregator": "cagrad"}, NAMES).aggregator)


def test_aggregators_are_searchable_by_platform_tune(tmp_path):
    from densepred.tuning.space import check_against_task, load_space

    space = yaml.safe_load((REPO / "tuning" / "multitask_balancing.yaml").read_text())
    space["task"] = str(REPO / "tasks" / "multitask_demo.yaml")
    space["space"]["task.balancing"] = {"choice": [
        {"type": "aggregator", "aggregator": "mgda"}, {"type": "aggregator", "aggregator": "pcgrad"},
        {"type": "rlw"}, {"type": "famo", "lr": 0.01}, {"type": "db_mtl", "beta": 0.8}]}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    check_against_task(load_space(path), files=False)
    space["space"]["task.balancing"] = {"choice": [{"type": "aggregator", "aggregator": "magic"}]}
    path.write_text(yaml.safe_dump(space))
    with pytest.raises(ConfigError, match="task.balancing.*expected one of upgrad"):
        check_against_task(load_space(path), files=False)
