"""Reduced precision judged by the task's decoded outputs (``precision_check``): the agreement
measures, and ``optimize`` keeping or refusing bf16 by a calibration set. The network here is a
fixed blob detector (Gaussian filters, BatchNorm, pooling to heatmap resolution): its heatmap
peaks sit on the dots of its input, as a trained pose model's sit on joints. The slow demo
acceptance test runs the same check on the trained demo checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from densepred.inference import optimize
from densepred.precision_check import Calibration, class_agreement, keypoint_agreement
from densepred.tasks.pose.codec import HeatmapCodec
from densepred.tasks.pose.calibration import evenly_spaced

JOINTS = 3
CODEC = HeatmapCodec([64, 64], [16, 16], sigma=2.0, decoding="dark")


class BlobPose(nn.Module):
    """One heatmap per input channel: a Gaussian blur (7x7), BatchNorm, 4x4 average pooling."""

    def __init__(self):
        super().__init__()
        self.blur = nn.Conv2d(JOINTS, JOINTS, 7, padding=3, groups=JOINTS, bias=False)
        ax = torch.arange(7) - 3.0
        g = torch.exp(-(ax[:, None] ** 2 + ax[None] ** 2) / (2 * 1.5 ** 2))
        self.blur.weight.data[:] = (g / g.max())[None, None]
        self.bn = nn.BatchNorm2d(JOINTS).eval()
        self.bn.running_var.fill_(4.0)  # a scale BatchNorm folding has to carry into the conv
        self.pool = nn.AvgPool2d(4)

    def forward(self, x):
        return {"pose": self.pool(self.bn(self.blur(x)))}


def dot_images(n: int, seed: int) -> torch.Tensor:
    """Images with one bright dot per channel at a random sub-pixel place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    out = np.zeros((n, JOINTS, 64, 64), np.float32)
    for i in range(n):
        for j in range(JOINTS):
            cx, cy = rng.uniform(8, 56, size=2)
            out[i, j] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2.0)
    return torch.from_numpy(out)


def calibration(required: float = 0.99) -> Calibration:
    batches = [dot_images(16, 1), dot_images(16, 2)]

    def compare(reference, outputs):
        return keypoint_agreement([r["pose"] for r in reference], [o["pose"] for o in outputs],
                                  lambda h: CODEC.decode_heatmap_coords(h.numpy()), 0.25, required, 0.05)

    return Calibration(batches, compare, {"task": "blobs", "required": required})


@pytest.fixture
def native_bf16(monkeypatch, tmp_path):
    """bf16 counts as a candidate on any CPU (on AVX2 it is emulated: slow but exact to bf16), and
    plans go to a fresh cache."""
    from densepred.engine import loop

    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: True)
    monkeypatch.setenv("DENSEPRED_CACHE", str(tmp_path / "cache"))


def test_bf16_is_kept_when_the_keypoints_agree_and_refused_for_a_damaged_model(native_bf16):
    model = BlobPose()
    example = dot_images(1, 3)
    fast = optimize(model, example, calibration=calibration(), budget_s=1.0)
    verdict = fast.plan["agreement"]["fold+cl+bf16"]
    assert verdict["ok"] and verdict["fraction"] >= 0.99, verdict
    assert "fold+cl+bf16" not in fast.plan["failed"]
    assert "bf16 agrees with fp32 on 32 validation sample(s) of blobs" in fast.describe()

    # A large constant on every heatmap: fp32 keeps the peaks, bf16 (8 mantissa bits) flattens them.
    damaged = BlobPose()
    damaged.bn.bias.data.fill_(300.0)
    slow = optimize(damaged, example, calibration=calibration(), budget_s=1.0)
    verdict = slow.plan["agreement"]["fold+cl+bf16"]
    assert not verdict["ok"] and verdict["fraction"] < 0.5, verdict
    assert "disagree with fp32" in slow.plan["failed"]["fold+cl+bf16"]
    assert slow.plan["precision"] == "fp32"
    assert "bf16 refused" in slow.describe()


def test_the_verdict_is_cached_per_checkpoint_and_fp32_skips_the_check(native_bf16):
    model = BlobPose()
    example = dot_images(1, 3)
    first = optimize(model, example, calibration=calibration(), budget_s=1.0)
    again = optimize(model, example, calibration=calibration(), budget_s=1.0)
    assert first.plan["source"] == "measured" and again.plan["source"] == "cache"
    assert again.plan["agreement"] == first.plan["agreement"]
    other = BlobPose()
    other.bn.weight.data.mul_(1.5)  # other weights: checked again
    assert optimize(other, example, calibration=calibration(), budget_s=1.0).plan["source"] == "measured"
    plain = optimize(model, example, calibration=calibration(), budget_s=1.0, precision="fp32")
    assert plain.plan["agreement"] == {} and plain.plan["precision"] == "fp32"
    assert "precision fp32" in plain.plan["skipped"]["fold+cl+bf16"]


def test_keypoint_agreement_counts_the_joints_fp32_sees():
    ref = torch.zeros(1, 2, 16, 16)
    ref[0, 0, 5, 5] = 1.0      # seen, and moved by 1 px below
    ref[0, 1, 9, 9] = 0.01     # below the visibility threshold: not counted
    out = ref.clone()
    out[0, 0, 5, 5], out[0, 0, 5, 6] = 0.0, 1.0
    decode = lambda h: CODEC.decode_heatmap_coords(h.numpy())  # noqa: E731
    moved = keypoint_agreement([ref], [out], decode, 0.25, 0.99, 0.2)
    assert moved.fraction == 0.0 and not moved.ok and "of 1 visible joints" in moved.what
    same = keypoint_agreement([ref], [ref.clone()], decode, 0.25, 0.99, 0.2)
    assert same.fraction == 1.0 and same.ok


def test_class_agreement_is_the_share_of_pixels_with_the_same_argmax():
    ref = torch.zeros(1, 3, 10, 10)
    ref[:, 1] = 1.0
    out = ref.clone()
    out[0, 2, 0, :5] = 2.0  # 5 of 100 pixels change class
    a = class_agreement([ref], [out], 0.995)
    assert a.fraction == pytest.approx(0.95) and not a.ok
    assert class_agreement([ref], [ref], 0.995).ok


def test_evenly_spaced_spreads_the_calibration_over_the_split():
    assert evenly_spaced(5, 32) == [0, 1, 2, 3, 4]
    picks = evenly_spaced(1000, 4)
    assert picks[0] == 0 and picks[-1] == 999 and len(picks) == 4


def test_bench_paths_scores_every_inference_path_of_a_run_folder(tiny_pose_demo, tmp_path):
    """`platform bench`'s paths section: each path's AP on the validation split and its latency;
    the fp32 paths give eager's AP."""
    from densepred import load_config
    from densepred.bench.paths import run_paths
    from densepred.checkpoint import save_checkpoint
    from densepred.engine.run_config import write_run_config
    from densepred.tasks.base import build_task
    from test_tune import TASK, TINY

    run = tmp_path / "run"
    cfg = load_config(TASK, {**TINY, "data_root": str(tiny_pose_demo), "evaluation.flip_test": False})
    model = build_task(cfg).build_model()
    save_checkpoint(run / "best.pth", model)
    write_run_config(run, dict(cfg))
    section = run_paths(quick=True, log=lambda _line: None, checkpoints=[run])
    (entry,) = section["models"]
    rows = {r["path"]: r for r in entry["rows"]}
    assert set(rows) == {"eager", "fold", "fold+cl", "fold+cl+bf16", "fold+cl+bf16+jit", "fold+cl+bf16+onednn", "ort"}
    assert rows["eager"]["metric"] == "AP" and rows["eager"]["latency_ms_batch1"] > 0
    for name in ("fold", "fold+cl"):
        assert rows[name]["delta_vs_eager"] == pytest.approx(0.0, abs=1e-3), rows[name]
    assert entry["chosen"].startswith("inference: ")
    missing = run_paths(quick=True, log=lambda _line: None, checkpoints=[tmp_path / "nothing"])
    assert "no trained checkpoint" in missing["skipped"]


def test_without_validation_data_inference_stays_fp32_and_says_why(native_bf16, tmp_path):
    """`platform predict` on one's own photos, where the task's val split is not on this machine:
    no evidence for bf16, so fp32 paths only, and the plan line says why."""
    from densepred import load_config
    from densepred.inference import optimize_for_task
    from densepred.tasks.base import build_task
    from test_tune import TASK, TINY

    task = build_task(load_config(TASK, {**TINY, "data_root": str(tmp_path / "no_such_set")}))
    fast, line = optimize_for_task(task, task.build_model())
    assert fast.plan["precision"] == "fp32", fast.plan
    assert "precision fp32: no validation data to check reduced precision against" in line, line
