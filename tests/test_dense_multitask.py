"""Dense members in one multi-task run: segmentation, depth, normals and boundaries of the same image
trained from ONE data loader (one decode, one joint augmentation), Δm with lower-is-better metrics,
`platform eval` tables, `platform predict` panels, the PASCAL-Context MT composition, the published
recipes and the sweep, and joint training through Ray Train."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import REPO
from dense_fixtures import make_nyud_like, make_pascal_like, ray_train, train_in_process
from densepred import load_config, save_checkpoint
from densepred.cli import main
from densepred.errors import ConfigError
from densepred.tasks.base import build_task
from densepred.tasks.dense.dataset import DenseDataset

MT = str(REPO / "tasks" / "mtl_scenes_demo.yaml")
MEMBERS = ("seg", "depth", "normals", "boundary")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_nyud_like(tmp_path_factory.mktemp("dense_mt") / "nyud", n_train=6, n_val=2)


def _sets(root, *extra):
    out = []
    for m in MEMBERS:
        p = f"task.members.{m}"
        out += [f"{p}.data_root={root}", f"{p}.data.loader_workers=0", f"{p}.data.batch_size=2",
                f"{p}.data.augment.crop_size=[48, 32]"]
    return out + [f"task.members.seg.data.class_info={root}/classes.yaml", *extra]


def _task(root, *extra):
    return build_task(load_config(MT, _sets(root, *extra)))


# ----------------------------------------------------------------------------- one loader for all heads

def test_one_dataset_reads_and_augments_every_target_once(root, monkeypatch):
    task = _task(root)
    task.preflight()
    ds = task.build_dataset("train")
    assert isinstance(ds, DenseDataset) and list(ds.targets) == ["segmentation", "depth", "normals", "edge"]
    import densepred.tasks.dense.dataset as dataset_module

    decoded = []
    real = dataset_module.read_rgb
    monkeypatch.setattr(dataset_module, "read_rgb", lambda p: decoded.append(p) or real(p))
    sample = ds[0]
    assert len(decoded) == 1                                                   # one image decode
    assert sample["segmentation"].shape == (32, 48) and sample["depth"].shape == (1, 32, 48)
    assert sample["normals"].shape == (3, 32, 48) and sample["edge"].shape == (32, 48)
    batch = next(iter(task.build_train_batches(0)))
    assert {"image", "segmentation", "depth", "normals", "edge"} <= set(batch) and batch["image"].shape[0] == 2


def test_targets_stay_aligned_through_the_joint_augmentation(root):
    ds = _task(root).build_dataset("train")
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            _, a = ds.load(i)
            seg, edge, depth = a["segmentation"], a["edge"], a["depth"]
            # every class change inside the crop has a boundary pixel next to it (same geometry)
            change = np.zeros_like(seg, bool)
            change[:, 1:] |= (seg[:, 1:] != seg[:, :-1]) & (seg[:, 1:] < 255) & (seg[:, :-1] < 255)
            near = np.zeros_like(change)
            on = edge == 1
            near[:, :] = on
            near[:, 1:] |= on[:, :-1]
            near[:, :-1] |= on[:, 1:]
            assert near[change].all()
            assert (depth[seg == 2] == 2.5).all()                               # the box is at 2.5 m


def test_members_that_crop_differently_cannot_share_a_loader(root):
    with pytest.raises(ConfigError, match=r"task\.mode=same_input needs members that read the same training "
                                          r"samples, but seg and depth differ"):
        _task(root, "task.members.depth.data.augment.crop_size=[64, 48]").preflight()


def test_a_member_reads_a_target_of_its_kind_and_only_one_member_a_target(root):
    with pytest.raises(ConfigError, match=r"normals_scenes_demo\.yaml \(as task\.members\.normals\.data\.target\): "
                                          r"data\.target 'depth' is a depth target, but this task reads normals"):
        _task(root, "task.members.normals.data.target=depth")
    p = "task.members.depth2"
    twice = _task(root, f"{p}={{config: {REPO / 'tasks' / 'depth_scenes_demo.yaml'}}}", f"{p}.data_root={root}",
                  f"{p}.data.augment.crop_size=[48, 32]", f"{p}.task.head=depth2", "model.heads.depth2={type: DenseHead}")
    with pytest.raises(ConfigError, match=r"two members read the same dense target 'depth'"):
        twice.build_dataset("train")


# ----------------------------------------------------------------------------- training, Δm, eval

def test_joint_training_without_ray_feeds_all_four_heads(root):
    task = _task(root)
    model, logs = train_in_process(task, epochs=2)
    assert len(logs) == 6
    for rec in logs:
        assert all(math.isfinite(rec[f"loss/{m}"]) for m in MEMBERS) and math.isfinite(rec["loss"])
    stats = task.evaluate(model, None, torch.device("cpu"))
    for key in ("seg/mIoU", "depth/rmse", "normals/mean_angle", "boundary/odsF"):
        assert math.isfinite(stats[key]), key


def test_delta_m_flips_the_sign_of_lower_is_better_metrics(root):
    task = _task(root)
    got = task.delta_m({"seg/mIoU": 0.5, "depth/rmse": 0.9, "normals/mean_angle": 22.0, "boundary/odsF": 0.7},
                       {"seg/mIoU": 0.4, "depth/rmse": 1.0, "normals/mean_angle": 20.0, "boundary/odsF": 0.7})
    # seg +25 %, depth RMSE 10 % lower (+10), normals error 10 % higher (-10), boundary 0
    assert got == pytest.approx((25 + 10 - 10 + 0) / 4)
    assert task._greater("depth/delta1") and not task._greater("normals/median_angle")
    best = _task(root, "task.best=depth/rmse")
    assert best.primary_metric == "depth/rmse" and best.greater_is_better is False


def test_eval_prints_every_member_and_the_delta_table(root, tmp_path, capsys):
    task = _task(root)
    ckpt = save_checkpoint(tmp_path / "mt.pth", task.build_model())
    code = main(["eval", MT, "--checkpoint", str(ckpt), "--out", str(tmp_path / "ev"), "--eager",
                 "--baseline", "seg/mIoU=0.5", "depth/rmse=1.0", "--set", *_sets(root)])
    assert code == 0
    out = capsys.readouterr().out
    for header in ("== seg (SegmentationTask)", "== depth (DepthTask)", "== normals (NormalsTask)",
                   "== boundary (BoundaryTask)", "depth/rmse (lower better)", "Δm = "):
        assert header in out, header
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    expected = 100 * ((metrics["seg/mIoU"] - 0.5) / 0.5 - (metrics["depth/rmse"] - 1.0) / 1.0) / 2
    assert metrics["delta_m"] == pytest.approx(expected)


def test_predict_draws_dense_members_as_panels(root, tmp_path):
    task = _task(root)
    ckpt = save_checkpoint(tmp_path / "mt.pth", task.build_model())
    assert main(["predict", MT, "--checkpoint", str(ckpt), "--input", str(root / "images"), "--out",
                 str(tmp_path / "p"), "--eager", "--set", *_sets(root)]) == 0
    import cv2

    pictures = sorted((tmp_path / "p" / "vis").glob("*.jpg"))
    assert len(pictures) == 8
    picture = cv2.imread(str(pictures[0]))
    assert picture.shape[0] == 48 and picture.shape[1] > 64 * 4                 # image + legend + three panels
    assert len(list((tmp_path / "p" / "seg" / "labels").glob("*.png"))) == 8
    assert len(list((tmp_path / "p" / "depth" / "depth").glob("*.npy"))) == 8
    assert len(list((tmp_path / "p" / "normals" / "normals").glob("*.png"))) == 8
    assert len(list((tmp_path / "p" / "boundary" / "boundary").glob("*.png"))) == 8


def test_browse_writes_each_members_view(root, tmp_path):
    assert main(["data", "browse", MT, "--split", "val", "--out", str(tmp_path / "b"), "--limit", "1",
                 "--set", *_sets(root)]) == 0
    for m in MEMBERS:
        assert len(list((tmp_path / "b" / m).glob("*.jpg"))) == 1, m


# ----------------------------------------------------------------------------- PASCAL-Context MT and the recipes

def test_pascal_members_share_one_loader(tmp_path):
    root = make_pascal_like(tmp_path / "pascal")
    sets = []
    for m in ("seg", "parts", "sal", "normals", "boundary"):
        p = f"task.members.{m}"
        sets += [f"{p}.data_root={root}", f"{p}.data.loader_workers=0", f"{p}.data.batch_size=2",
                 f"{p}.data.augment.crop_size=[32, 24]", f"{p}.data.augment.base_size=40"]
    sets += ["model.backbone.arch=null", "model.backbone.width=8"]
    task = build_task(load_config(REPO / "tasks" / "mtl_pascal_hrnet18.yaml", sets))
    task.preflight()
    ds = task.build_dataset("train")
    assert list(ds.targets) == ["semseg", "human_parts", "saliency", "normals", "edge"]
    model, logs = train_in_process(task, epochs=1)
    assert all(math.isfinite(logs[0][f"loss/{m}"]) for m in ("seg", "parts", "sal", "normals", "boundary"))
    assert task.members["parts"].class_info.num_classes == 7 and task.members["sal"].head == "sal"


@pytest.mark.parametrize("recipe, heads", [
    ("mtl_nyud_hrnet18.yaml", ("seg", "depth", "normals", "boundary")),
    ("mtl_pascal_hrnet18.yaml", ("seg", "parts", "sal", "normals", "boundary")),
])
def test_published_recipes_build(recipe, heads):
    cfg = load_config(REPO / "tasks" / recipe)
    task = build_task(cfg)
    assert task.head_names == heads and cfg["optimizer"]["type"] == "Adam" and cfg["optimizer"]["lr"] == 1e-4
    assert cfg["train"]["epochs"] == 100 and cfg["scheduler"]["type"] == "PolyLR"
    assert all(m.data.batch_size == 8 for m in task.members.values())
    assert cfg["model"]["backbone"]["arch"] == "w18_small_v2" and cfg["model"]["backbone"]["aggregation"] == "v2"
    shapes = {k: tuple(v.shape) for k, v in task.build_model().eval()(torch.zeros(1, 3, 64, 64)).items()}
    assert shapes["normals"] == (1, 3, 16, 16) and shapes["boundary"] == (1, 1, 16, 16)


def test_the_sweep_searches_balancing_and_aggregators():
    from densepred.tuning.space import check_against_task, load_space

    spec = load_space(REPO / "tuning" / "mtl_nyud_hrnet18.yaml")
    assert spec.metrics == ["seg/mIoU", "depth/rmse"] and spec.modes == ["max", "min"]
    check_against_task(spec, files=False)


# ----------------------------------------------------------------------------- through Ray Train

def test_joint_dense_training_on_ray(ray_local, root, tmp_path):
    """Seg + depth + normals + boundaries from one loader through Ray Train: every member's loss and
    metric is logged, Δm against given baselines is reported and picks the best checkpoint."""
    cfg = load_config(MT, _sets(root, f"work_dir={tmp_path}", "run_name=dense_mt", "train.iters=null",
                                "train.epochs=2", "evaluation.interval=1", "ray.cpus_per_worker=1",
                                "task.baselines={seg/mIoU: 0.5, depth/rmse: 1.0}", "task.best=delta_m"))
    summary = ray_train(cfg)
    m = summary["metrics"]
    assert m["epoch"] == 2 and "stopped" not in m and math.isfinite(m["delta_m"])
    rec = [json.loads(line) for line in open(tmp_path / "dense_mt" / "logs" / "metrics.jsonl")][-1]
    for key in ("loss/seg", "loss/depth", "loss/normals", "loss/boundary", "seg/mIoU", "depth/rmse",
                "normals/mean_angle", "boundary/odsF"):
        assert isinstance(rec[key], float), key
