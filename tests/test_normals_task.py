"""NormalsTask: angular metrics on hand-made vectors with known answers, the losses, the flip test's
mirroring, training without and with Ray Train on a tiny NYUD-layout set, RGB pictures and PNG
predictions that score back."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import REPO
from dense_fixtures import make_nyud_like, ray_train, train_in_process
from densepred import load_config, save_checkpoint
from densepred.cli import main
from densepred.tasks.base import build_task
from densepred.tasks.normals.loss import NormalsLoss
from densepred.tasks.normals.metric import NormalsMetric
from densepred.tasks.normals.visualize import normals_rgb, read_normals_png, write_normals_png

TASK = str(REPO / "tasks" / "normals_scenes_demo.yaml")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_nyud_like(tmp_path_factory.mktemp("normals") / "nyud", n_train=6, n_val=2, npy=True)


def _sets(root, *extra):
    return [f"data_root={root}", "data.loader_workers=0", "data.batch_size=2", "data.augment.crop_size=[48, 32]",
            *extra]


def _task(root, *extra):
    return build_task(load_config(TASK, _sets(root, *extra)))


def _at(deg: float) -> list[float]:
    """A unit vector ``deg`` degrees away from +z, in the x-z plane."""
    r = math.radians(deg)
    return [math.sin(r), 0.0, math.cos(r)]


# ----------------------------------------------------------------------------- metric

def test_metric_on_hand_made_vectors():
    gt = np.array([[[0, 0, 1]] * 5 + [[0, 0, 0]]], np.float32)                  # the last pixel has no normal
    pred = np.array([[_at(0), _at(10), _at(20), _at(40), _at(90), _at(45)]], np.float32) * 2.0   # lengths ignored
    m = NormalsMetric()
    m.update(pred, gt)
    s = m.summary()
    assert s["mean_angle"] == pytest.approx((0 + 10 + 20 + 40 + 90) / 5, abs=1e-4)
    assert s["median_angle"] == pytest.approx(20.0, abs=0.006)
    assert s["rmse_angle"] == pytest.approx(math.sqrt((0 + 100 + 400 + 1600 + 8100) / 5), abs=1e-3)
    assert (s["within_11_25"], s["within_22_5"], s["within_30"]) == pytest.approx((40.0, 60.0, 60.0))


def test_zero_prediction_counts_as_ninety_degrees_and_opposite_as_180():
    m = NormalsMetric()
    m.update(np.array([[[0, 0, 0], [0, 0, -1]]], np.float32), np.array([[[0, 0, 1], [0, 0, 1]]], np.float32))
    assert m.summary()["mean_angle"] == pytest.approx((90 + 180) / 2)


def test_losses_on_unit_vectors():
    target = torch.tensor([0.0, 0.0, 1.0]).reshape(1, 3, 1, 1).repeat(1, 1, 2, 2)
    target[:, :, 0, 0] = 0.0                                                       # no normal: not scored
    same = target.clone() * 5.0 + torch.tensor([0, 0, 5.0]).reshape(1, 3, 1, 1)   # normalised first
    assert float(NormalsLoss("l1")(same, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(NormalsLoss("cosine")(-same, target)) == pytest.approx(2.0, abs=1e-5)
    side = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1).repeat(1, 1, 2, 2)
    assert float(NormalsLoss("l1")(side, target)) == pytest.approx(2 / 3, abs=1e-6)   # |1| + |0| + |-1| over 3


def test_flip_test_mirrors_back_and_negates_x(root):
    task = _task(root)
    out = torch.zeros(1, 3, 2, 3)
    out[0, 0, :, 0], out[0, 2, :, 0] = 0.6, 0.8                                    # left column faces right
    back = task.unflip(out)
    assert torch.allclose(back[0, :, :, 2], torch.tensor([[-0.6, -0.6], [0.0, 0.0], [0.8, 0.8]]))
    assert torch.all(back[0, :, :, :2] == 0)


def test_rgb_encoding_round_trip(tmp_path):
    n = np.array([[_at(0), _at(30), [0, 0, 0]]], np.float32)
    assert normals_rgb(n)[0, 2].tolist() == [0, 0, 0] and normals_rgb(n)[0, 0].tolist() == [128, 128, 255]
    write_normals_png(tmp_path / "n.png", n)
    back = read_normals_png(tmp_path / "n.png")
    m = NormalsMetric()
    m.update(back, n)
    assert m.summary()["mean_angle"] < 0.5 and (back[0, 2] == 0).all()


# ----------------------------------------------------------------------------- the task

def test_trains_evaluates_predicts_and_scores_its_files(root, tmp_path):
    task = _task(root)
    model, logs = train_in_process(task, epochs=2)
    assert all(math.isfinite(r["loss"]) for r in logs)
    stats = task.evaluate(model, tmp_path / "ev", torch.device("cpu"))
    assert set(stats) == {"mean_angle", "median_angle", "rmse_angle", "within_11_25", "within_22_5", "within_30"}
    assert 0 <= stats["mean_angle"] <= 180
    ckpt = save_checkpoint(tmp_path / "n.pth", model)
    assert main(["predict", TASK, "--checkpoint", str(ckpt), "--input", str(root / "images"), "--out",
                 str(tmp_path / "p"), "--eager", "--set", *_sets(root)]) == 0
    assert len(list((tmp_path / "p" / "normals").glob("*.png"))) == 8
    scored = task.evaluate_file(tmp_path / "p" / "normals")             # 8-bit PNGs: within half a degree
    assert scored["mean_angle"] == pytest.approx(stats["mean_angle"], abs=0.5)


def test_flip_test_inference_runs(root):
    task = _task(root, "inference.flip=true")
    model = task.build_model().eval()
    pred = task.predict_map(model, torch.randn(1, 3, 48, 64))
    assert pred.shape == (48, 64, 3) and np.allclose(np.linalg.norm(pred, axis=2), 1.0, atol=1e-4)


def test_normals_training_on_ray(ray_local, root, tmp_path):
    cfg = load_config(TASK, [*_sets(root), f"work_dir={tmp_path}", "run_name=normals", "train.iters=null",
                             "train.epochs=2", "evaluation.interval=1", "ray.cpus_per_worker=1"])
    m = ray_train(cfg)["metrics"]
    assert m["epoch"] == 2 and "stopped" not in m and 0 <= m["mean_angle"] <= 180
