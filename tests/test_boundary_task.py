"""BoundaryTask: the ODS F-measure with a pixel tolerance on hand-made maps with known answers, the
balanced loss, boundaries of label maps, training without and with Ray Train, pictures and files."""
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
from densepred.tasks.boundary.loss import BoundaryBCE
from densepred.tasks.boundary.metric import BoundaryF, counts_at_least

TASK = str(REPO / "tasks" / "boundary_scenes_demo.yaml")
SIZE = 32
TOL_2PX = 2.0 / math.hypot(SIZE, SIZE)       # a tolerance of 2 pixels on a 32x32 map


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_nyud_like(tmp_path_factory.mktemp("boundary") / "nyud", n_train=6, n_val=2)


def _sets(root, *extra):
    return [f"data_root={root}", "data.loader_workers=0", "data.batch_size=2", "data.augment.crop_size=[48, 32]",
            *extra]


def _line(x: int, rows: slice = slice(None), value: float = 1.0) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.float32)
    m[rows, x] = value
    return m


def _f(pred, gt, tol=TOL_2PX):
    metric = BoundaryF(tol)
    metric.update(pred, gt.astype(np.uint8))
    return metric.summary()


# ----------------------------------------------------------------------------- metric

def test_counts_at_least():
    assert counts_at_least(np.array([0.05, 0.5, 0.95]), np.array([0.1, 0.5, 0.9])).tolist() == [2, 2, 1]


def test_a_boundary_within_the_tolerance_is_a_match():
    gt = _line(10)
    assert _f(_line(10), gt)["odsF"] == pytest.approx(1.0)
    assert _f(_line(12), gt)["odsF"] == pytest.approx(1.0)            # 2 px away, tolerance 2 px
    assert _f(_line(15), gt)["odsF"] == pytest.approx(0.0)            # 5 px away


def test_half_the_boundary_gives_precision_one_and_the_recall_of_its_reach():
    """Rows 0..15 predicted: ground-truth rows 0..17 have a prediction within 2 px (18 of 32)."""
    s = _f(_line(10, slice(0, SIZE // 2)), _line(10))
    assert (s["ods_precision"], s["ods_recall"]) == pytest.approx((1.0, 18 / 32))
    assert s["odsF"] == pytest.approx(2 * 18 / 32 / (1 + 18 / 32))


def test_ods_picks_one_threshold_for_the_whole_set():
    """Image 1: a true boundary at p=0.8 and a false one at p=0.3; image 2: a true one at p=0.4.
    Thresholds <= 0.3 keep all three lines (P 2/3, R 1, F 0.8); 0.3 < t <= 0.4 keeps the true ones
    only (F 1.0); t > 0.4 loses image 2's (P 1, R 1/2)."""
    metric = BoundaryF(TOL_2PX)
    metric.update(_line(10, value=0.8) + _line(25, value=0.3), _line(10).astype(np.uint8))
    metric.update(_line(5, value=0.4), _line(5).astype(np.uint8))
    s = metric.summary()
    assert s["odsF"] == pytest.approx(1.0) and 0.3 < s["ods_threshold"] <= 0.4


def test_unscored_pixels_do_not_count():
    gt = _line(10).astype(np.uint8)
    gt[:, 20:] = 255
    assert _f(_line(10) + _line(25), gt)["odsF"] == pytest.approx(1.0)   # the line at x = 25 is not scored
    assert math.isnan(_f(_line(3), np.zeros((SIZE, SIZE)))["odsF"])       # no boundary in the set


def test_balanced_loss_by_hand():
    logits = torch.tensor([[[[0.0, 0.0, 0.0]]]])
    target = torch.tensor([[[1, 0, 255]]])
    bce = math.log(2.0)                                                   # at logit 0
    assert float(BoundaryBCE(pos_weight=0.95)(logits, target)) == pytest.approx((0.95 * bce + 0.05 * bce) / 2)
    hed = float(BoundaryBCE(pos_weight=None)(logits, target))            # w = share of non-boundary = 1/2
    assert hed == pytest.approx((0.5 * bce + 0.5 * bce) / 2)


# ----------------------------------------------------------------------------- the task

def test_tolerance_comes_from_the_layout_or_the_config(root):
    task = build_task(load_config(TASK, _sets(root)))
    assert task.tolerance == 0.011 and task.new_metric().radius((480, 640)) == pytest.approx(8.8)
    assert build_task(load_config(TASK, _sets(root, "evaluation.tolerance=0.0075"))).tolerance == 0.0075


def test_trains_evaluates_predicts_and_scores_its_files(root, tmp_path):
    task = build_task(load_config(TASK, _sets(root)))
    model, logs = train_in_process(task, epochs=2)
    assert all(math.isfinite(r["loss"]) for r in logs)
    stats = task.evaluate(model, tmp_path / "ev", torch.device("cpu"))
    assert set(stats) == {"odsF", "ods_precision", "ods_recall", "ods_threshold"} and 0 <= stats["odsF"] <= 1
    ckpt = save_checkpoint(tmp_path / "b.pth", model)
    assert main(["predict", TASK, "--checkpoint", str(ckpt), "--input", str(root / "images"), "--out",
                 str(tmp_path / "p"), "--eager", "--set", *_sets(root)]) == 0
    assert len(list((tmp_path / "p" / "boundary").glob("*.png"))) == 8
    scored = task.evaluate_file(tmp_path / "p" / "boundary")          # probabilities stored in 8 bits
    assert scored["odsF"] == pytest.approx(stats["odsF"], abs=0.02)


def test_boundary_training_on_ray(ray_local, root, tmp_path):
    cfg = load_config(TASK, [*_sets(root), f"work_dir={tmp_path}", "run_name=boundary", "train.iters=null",
                             "train.epochs=2", "evaluation.interval=1", "ray.cpus_per_worker=1"])
    m = ray_train(cfg)["metrics"]
    assert m["epoch"] == 2 and "stopped" not in m and 0 <= m["odsF"] <= 1
