"""Model cost (densepred.cost): parameters, GFLOPs counted from the model, batch-1 latency."""
from __future__ import annotations

import math
import time

import pytest
import torch
from torch import nn

from conftest import REPO
from densepred import load_config
from densepred.cost import count_gflops, model_cost, task_input_size
from densepred.tasks.base import build_task

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def pose_task():
    return build_task(load_config(str(REPO / "tasks" / "pose_demo.yaml")))


@pytest.fixture(scope="module")
def pose_model(pose_task):
    torch.manual_seed(0)
    return pose_task.build_model()


def test_task_input_sizes_are_h_w_from_the_w_h_configs(pose_task):
    assert task_input_size(pose_task) == (128, 96)          # data.input_size: [96, 128]
    seg = build_task(load_config(str(REPO / "tasks" / "seg_demo.yaml")))
    w, h = seg.augment.crop_size
    assert task_input_size(seg) == (h, w)


def test_params_is_the_number_of_parameter_values(pose_model):
    cost = model_cost(pose_model, (128, 96), CPU, latency_runs=2, warmup=1)
    assert isinstance(cost["params"], int)
    assert cost["params"] == sum(p.numel() for p in pose_model.parameters())


@pytest.mark.parametrize("bias", [True, False])
def test_conv_gflops_match_the_analytic_count(bias):
    cin, cout, k, h, w = 3, 8, 3, 20, 16
    conv = nn.Conv2d(cin, cout, k, padding=1, bias=bias)
    cost = model_cost(conv, (h, w), CPU, latency_runs=3)
    # FlopCounterMode: a multiply-add is 2 FLOPs; the bias add is not counted
    assert cost["gflops"] == pytest.approx(2 * cin * cout * k * k * h * w / 1e9, rel=1e-12)
    assert cost["params"] == cin * cout * k * k + (cout if bias else 0)


def test_pose_model_gflops_scale_with_the_input_area(pose_model):
    small = count_gflops(pose_model, (128, 96), CPU)
    large = count_gflops(pose_model, (256, 192), CPU)
    print(f"\npose demo model: {small:.4f} GFLOPs at 128x96, {large:.4f} at 256x192 (x{large / small:.3f})")
    assert small > 0
    assert large / small == pytest.approx(4.0, rel=0.02)


def test_latency_is_positive_and_finite(pose_model, pose_task):
    pose_model.train()
    t0 = time.perf_counter()
    cost = model_cost(pose_model, task_input_size(pose_task), CPU, latency_runs=5)
    seconds = time.perf_counter() - t0
    print(f"\npose demo model cost: {cost} (measured in {seconds:.2f} s)")
    assert math.isfinite(cost["latency_ms"]) and cost["latency_ms"] > 0
    assert set(cost) == {"params", "gflops", "latency_ms"}
    assert pose_model.training, "the model's train/eval mode must be restored"


def test_the_input_follows_the_model_dtype_and_the_model_stays_put():
    conv = nn.Conv2d(3, 4, 1).to(torch.float64)
    before = conv.weight
    cost = model_cost(conv, (8, 8), CPU, latency_runs=1, warmup=0)
    assert conv.weight is before and cost["gflops"] == pytest.approx(2 * 3 * 4 * 64 / 1e9)
