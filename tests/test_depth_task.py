"""DepthTask: metrics on hand-made arrays with known answers, the losses, training without and with
Ray Train on a tiny NYUD-layout set, evaluation, prediction files and pictures, and scoring them."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO
from dense_fixtures import make_nyud_like, ray_train, train_in_process
from densepred import load_config, save_checkpoint
from densepred.cli import main
from densepred.tasks.base import build_task
from densepred.tasks.depth.loss import DepthLoss
from densepred.tasks.depth.metric import DepthMetric
from densepred.tasks.depth.visualize import depth_picture

TASK = str(REPO / "tasks" / "depth_scenes_demo.yaml")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_nyud_like(tmp_path_factory.mktemp("depth") / "nyud", n_train=6, n_val=2)


def _sets(root, *extra):
    return [f"data_root={root}", "data.loader_workers=0", "data.batch_size=2", "data.augment.crop_size=[48, 32]",
            *extra]


def _task(root, *extra):
    return build_task(load_config(TASK, _sets(root, *extra)))


# ----------------------------------------------------------------------------- metric

def test_metric_on_hand_made_maps():
    gt = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)      # 0: no measurement, not scored
    pred = np.array([[1.0, 1.0], [5.0, 3.0]], np.float32)
    m = DepthMetric()
    m.update(pred, gt)
    s = m.summary()
    assert s["rmse"] == pytest.approx(math.sqrt((0 + 1 + 1) / 3))
    assert s["abs_rel"] == pytest.approx((0 + 0.5 + 0.25) / 3)
    assert s["delta1"] == pytest.approx(1 / 3)                 # ratios 1, 2, 1.25: only 1 is < 1.25
    assert s["log_rmse"] == pytest.approx(math.sqrt((math.log(2) ** 2 + math.log(1.25) ** 2) / 3))


def test_metric_is_pixel_wise_over_the_split():
    a, b = DepthMetric(), DepthMetric()
    a.update(np.array([[2.0]]), np.array([[1.0]]))
    a.update(np.array([[1.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 1.0]]))
    b.update(np.array([[2.0, 1.0, 1.0, 1.0]]), np.array([[1.0, 1.0, 1.0, 1.0]]))
    assert a.summary() == pytest.approx(b.summary())
    assert a.summary()["rmse"] == pytest.approx(0.5)           # not the mean of per-image RMSEs (0.5 + 0) / 2
    assert math.isnan(DepthMetric().summary()["rmse"])


def test_losses_skip_pixels_without_depth():
    target = torch.tensor([[[[2.0, 0.0], [4.0, 0.0]]]])
    pred = torch.full((1, 1, 2, 2), 3.0)
    assert float(DepthLoss("l1")(pred, target)) == pytest.approx(1.0)            # |3-2|, |3-4|
    assert float(DepthLoss("log_l1")(pred, target)) == pytest.approx((math.log(1.5) + math.log(4 / 3)) / 2)
    none = DepthLoss()(pred.requires_grad_(), torch.zeros_like(target))
    assert float(none.detach()) == 0.0 and none.requires_grad                                 # no depth: zero, graph kept


def test_picture_has_a_scale_bar_and_black_where_no_depth():
    depth = np.full((40, 60), 2.0, np.float32)
    depth[:5, :5] = 0.0
    rgb = depth_picture(depth)
    assert rgb.shape[0] == 40 and rgb.shape[1] > 60
    assert (rgb[:5, :5] == 0).all() and rgb[20, 30].any()


# ----------------------------------------------------------------------------- the task

def test_trains_evaluates_predicts_and_scores_its_files(root, tmp_path, capsys):
    task = _task(root)
    model, logs = train_in_process(task, epochs=2)
    assert len(logs) == 6 and all(math.isfinite(r["loss"]) for r in logs)
    stats = task.evaluate(model, tmp_path / "ev", torch.device("cpu"))
    assert set(stats) == {"rmse", "abs_rel", "delta1", "log_rmse"} and stats["rmse"] > 0
    assert (tmp_path / "ev" / "metrics.json").is_file() and len(list((tmp_path / "ev" / "vis").glob("*.jpg"))) == 2
    ckpt = save_checkpoint(tmp_path / "d.pth", model)
    args = ["--set", *_sets(root)]
    assert main(["predict", TASK, "--checkpoint", str(ckpt), "--input", str(root / "images"), "--out",
                 str(tmp_path / "p"), "--eager", *args]) == 0
    files = sorted((tmp_path / "p" / "depth").glob("*.npy"))
    assert len(files) == 8 and np.load(files[0]).shape == (48, 64) and len(list((tmp_path / "p" / "vis").iterdir())) == 8
    # the written predictions score as the model itself does
    scored = task.evaluate_file(tmp_path / "p" / "depth")
    assert scored["rmse"] == pytest.approx(stats["rmse"], rel=1e-5) and scored["num_images"] == 2
    capsys.readouterr()
    assert main(["eval", TASK, "--checkpoint", str(ckpt), "--out", str(tmp_path / "e"), "--eager", *args]) == 0
    out = capsys.readouterr().out
    assert "rmse" in out and "(lower better)" in out and "delta1" in out
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["rmse"] == pytest.approx(stats["rmse"], rel=1e-5)


def test_browse_writes_what_the_network_is_fed(root, tmp_path):
    assert main(["data", "browse", TASK, "--split", "train", "--out", str(tmp_path / "b"), "--limit", "2",
                 "--set", *_sets(root)]) == 0
    z = np.load(sorted((tmp_path / "b").glob("*.npz"))[0])
    assert z["image"].shape == (32, 48, 3) and z["depth"].shape == (32, 48)
    assert len(list((tmp_path / "b").glob("*.jpg"))) == 2


def test_eval_of_a_folder_without_a_prediction(root, tmp_path, capsys):
    (tmp_path / "preds").mkdir()
    assert main(["eval", TASK, "--predictions", str(tmp_path / "preds"), "--set", *_sets(root)]) == 2
    assert "no prediction 0006.npy for the validation image 0006" in capsys.readouterr().err


def test_depth_training_on_ray(ray_local, root, tmp_path):
    """Alone through Ray Train: 2 epochs, evaluated, RMSE reported lower-is-better for checkpoint-best."""
    cfg = load_config(TASK, [*_sets(root), f"work_dir={tmp_path}", "run_name=depth", "train.iters=null",
                             "train.epochs=2", "evaluation.interval=1", "ray.cpus_per_worker=1"])
    summary = ray_train(cfg)
    m = summary["metrics"]
    assert m["epoch"] == 2 and "stopped" not in m and m["rmse"] > 0
    assert (tmp_path / "depth" / "best.pth").is_file()
