"""Multi-task runs: member composition, both training modes through Ray Train, mixed-batch
schedules, checkpoints between single- and multi-task models, and Δm baselines."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
import yaml

from conftest import REPO, pose_demo_stride4
from densepred import load_checkpoint, load_config
from densepred.checkpoint import save_checkpoint
from densepred.cli import main
from densepred.errors import ConfigError, PlatformError
from densepred.tasks.base import build_task
from densepred.tasks.multitask.baselines import parse_baselines
from densepred.tasks.multitask.sampling import member_schedule
from densepred.tasks.segmentation.demo_data import make_seg_demo

SAME = REPO / "tasks" / "multitask_demo.yaml"
MIXED = REPO / "tasks" / "multitask_demo_pose_seg.yaml"


def _pose_member(name, root):
    p = f"task.members.{name}"
    return [f"{p}.data_root={root}", f"{p}.bbox_file=null", f"{p}.data.input_size=[48, 64]",
            f"{p}.data.heatmap_size=[12, 16]", f"{p}.data.batch_size=4", f"{p}.data.val_batch_size=16",
            f"{p}.data.loader_workers=0", f"{p}.evaluation.flip_test=false"]


@pytest.fixture(scope="module")
def tiny_seg_demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt_seg") / "cityscapes"
    make_seg_demo(root, num_train=4, num_val=1, image_size=(128, 64), seed=2, progress=False)
    return root


def _seg_member(root):
    p = "task.members.seg"
    return [f"{p}.data_root={root}", f"{p}.data.batch_size=2", f"{p}.data.loader_workers=0",
            f"{p}.data.augment.crop_size=[64, 32]", f"{p}.inference.crop_size=[128, 64]",
            f"{p}.inference.flip=false"]


def _same_cfg(pose_root, work_dir, *extra):
    return load_config(SAME, [*_pose_member("pose", pose_root), *_pose_member("mask", pose_root),
                              f"work_dir={work_dir}", "train.epochs=1", "train.log_interval=1",
                              "evaluation.interval=1", "ray.cpus_per_worker=1", *extra])


def _mixed_cfg(pose_root, seg_root, work_dir, *extra):
    return load_config(MIXED, [*_pose_member("pose", pose_root), *_seg_member(seg_root),
                               f"work_dir={work_dir}", "train.epochs=1", "train.log_interval=1",
                               "evaluation.interval=1", "ray.cpus_per_worker=1", *extra])


def _records(run_dir):
    return [json.loads(line) for line in open(run_dir / "logs" / "metrics.jsonl")]


# --------------------------------------------------------------------------- composition

def test_members_come_from_their_task_files_with_inline_overrides(tiny_pose_demo):
    cfg = _same_cfg(tiny_pose_demo, "runs")
    pose = cfg["task"]["members"]["pose"]
    assert pose["config"].endswith("tasks/pose_demo.yaml")
    assert pose["data"]["batch_size"] == 4                       # inline override
    assert pose["data"]["sigma"] == 2.0                          # the recipe's inline value (pose_demo.yaml: 1.5)
    assert pose["data"]["augment"]["half_body_prob"] == 0.3      # from pose_coco.yaml via pose_demo.yaml
    assert pose["data_root"] == str(tiny_pose_demo)              # absolute for the workers
    task = build_task(cfg)
    assert task.names == ["pose", "mask"] and task.head_names == ("pose", "mask")
    assert task.primary_metric == "pose/AP" and task.greater_is_better
    assert {"pose/AP", "mask/mIoU"} <= set(task.metric_names)
    model = task.build_model()
    assert set(model(torch.zeros(1, 3, 64, 48))) == {"pose", "mask"}


@pytest.mark.parametrize("override, words", [
    (["task.mode=same_input"], "same_input needs members that read the same training samples"),
    (["task.balancing={type: gradnorm}"], "needs every member's loss on the same batch"),
    (["task.best=seg/AP"], "task.best 'seg/AP' is not a member metric"),
    (["task.best=delta_m"], "task.best=delta_m needs task.baselines"),
    (["task.baselines={pose/APX: 0.5}"], "task.baselines names 'pose/APX'"),
    (["data={batch_size: 4}"], "top-level 'data' is not used by a multi-task run"),
    (["task.members.seg.optimizer={type: SGD}"], "unknown key(s) ['optimizer'] in task.members.seg"),
    (["task.members.seg.config=nowhere.yaml"], "task file 'nowhere.yaml' not found"),
    (["task.sampling={type: ratio, ratios: {pose: 1, depth: 2}}"], "task.sampling.ratios must give"),
    (["task.sampling={max_batches: {seg: 0}}"], "task.sampling.max_batches must give a whole number >= 1"),
    (["model.heads={pose: {type: HeatmapHead}}"], "model.heads has no 'seg' head, which member seg"),
])
def test_bad_multitask_configs_are_one_line_errors(tiny_pose_demo, tiny_seg_demo, override, words):
    with pytest.raises(ConfigError) as e:
        cfg = _mixed_cfg(tiny_pose_demo, tiny_seg_demo, "runs", *override)
        task = build_task(cfg)
        task.build_model()
        task.preflight()
    assert words in str(e.value) and "\n" not in str(e.value)


def test_mixed_schedule_is_shared_by_all_workers_and_follows_the_policy():
    lengths = {"pose": 30, "seg": 10}
    prop = member_schedule(lengths, "proportional", None, seed=3, epoch=1)
    assert Counter(prop) == Counter(lengths)                     # each dataset once per epoch
    assert prop == member_schedule(lengths, "proportional", None, seed=3, epoch=1)  # same on every rank
    assert prop != member_schedule(lengths, "proportional", None, seed=3, epoch=2)  # reshuffled per epoch
    drawn = member_schedule({"pose": 500, "seg": 500}, "ratio", {"pose": 3, "seg": 1}, seed=0, epoch=0)
    assert 0.70 < Counter(drawn)["pose"] / len(drawn) < 0.80
    assert member_schedule(lengths, "round_robin", None, 0, 0)[:4] == ["pose", "seg", "pose", "seg"]


def test_max_batches_caps_a_member_per_epoch_with_fresh_batches():
    """``max_batches: {seg: 2}``: each epoch every pose batch and 2 segmentation batches, and the
    capped member's 2 batches come from its reshuffled loader, so epochs see different samples."""
    from densepred.batching import LoaderBatches
    from densepred.tasks.multitask.sampling import MixedBatches

    collate = torch.utils.data.default_collate
    sources = {"pose": LoaderBatches([{"value": i} for i in range(12)], 4, 0, collate, seed=1),
               "seg": LoaderBatches([{"value": i} for i in range(100, 140)], 4, 0, collate, seed=1)}
    mixed = MixedBatches(sources, "proportional", None, seed=0, max_batches={"seg": 2})
    assert len(mixed) == 3 + 2 and "seg: 40 samples in batches of 4, at most 2 batches an epoch" in mixed.describe()
    seen = []
    for epoch in (0, 1):
        mixed.set_epoch(epoch)
        batches = list(mixed)
        assert Counter(b["member"] for b in batches) == {"pose": 3, "seg": 2}
        seen.append(sorted(int(v) for b in batches if b["member"] == "seg" for v in b["value"]))
    assert seen[0] != seen[1]


# --------------------------------------------------------------------------- training through Ray Train

def test_mixed_dataset_run_on_two_workers(ray_local, tiny_pose_demo, tiny_seg_demo, tmp_path):
    """Pose batches and segmentation batches alternate through DDP (unused heads get zero
    gradients); learned loss weights stay equal on both workers; every member is evaluated."""
    from densepred.engine.launch import train

    cfg = _mixed_cfg(tiny_pose_demo, tiny_seg_demo, tmp_path, "run_name=mixed")
    summary = train(cfg, workers=2)
    m = summary["metrics"]
    assert m["epoch"] == 1 and "stopped" not in m
    fingerprints = m["weight_fingerprints"]
    assert fingerprints[0] == pytest.approx(fingerprints[1], rel=1e-12, abs=0)
    rec = _records(tmp_path / "mixed")[-1]
    for key in ("loss/pose", "loss/seg", "weight/pose", "weight/seg", "pose/AP", "seg/mIoU"):
        assert isinstance(rec[key], float), key
    assert rec["weight_next/pose"] != 1.0 and rec["weight_next/seg"] != 1.0   # uncertainty weights learned
    raw = torch.load(summary["last_checkpoint"], weights_only=True)
    log_vars = raw["task_state"]["log_vars"]                 # learned weights resume with the run
    assert torch.exp(-log_vars[0]).item() == pytest.approx(rec["weight_next/pose"], rel=1e-5)
    assert "mixed proportional sampling" in (tmp_path / "mixed" / "logs" / "train.log").read_text()
    saved = yaml.safe_load((tmp_path / "mixed" / "config.yaml").read_text())
    assert saved["task"]["members"]["seg"]["data"]["batch_size"] == 2   # members saved in full


def test_same_input_run_feeds_both_heads_and_balances_per_epoch(ray_local, tiny_pose_demo, tmp_path):
    """Pose + person mask from one batch of crops; DWA weights follow the members' epoch losses,
    are logged, and resume with the run."""
    from densepred.engine.launch import train

    cfg = _same_cfg(tiny_pose_demo, tmp_path, "run_name=same", "train.epochs=2",
                    "task.balancing={type: dwa, temperature: 2.0}")
    summary = train(cfg, workers=1)
    assert summary["metrics"]["epoch"] == 2 and "stopped" not in summary["metrics"]
    first, second = _records(tmp_path / "same")
    for rec in (first, second):
        assert {"loss/pose", "loss/mask", "weight/pose", "weight/mask", "pose/AP", "mask/mIoU"} <= set(rec)
        assert 0.0 <= rec["mask/mIoU"] <= 1.0
    assert first["weight_next/pose"] == 1.0                   # DWA needs two epochs of history
    r = {n: second[f"loss/{n}"] / first[f"loss/{n}"] for n in ("pose", "mask")}
    e = {n: torch.exp(torch.tensor(r[n] / 2.0, dtype=torch.float64)) for n in r}
    expected = 2 * e["pose"] / (e["pose"] + e["mask"])
    assert second["weight_next/pose"] == pytest.approx(float(expected), rel=1e-5)
    raw = torch.load(summary["last_checkpoint"], weights_only=True)
    assert int(raw["task_state"]["epochs_seen"]) == 2
    assert (tmp_path / "same" / "eval" / "epoch_002" / "mask").is_dir()


# --------------------------------------------------------------------------- checkpoints

def test_single_task_checkpoint_initialises_backbone_and_its_head(tiny_pose_demo, tmp_path, capsys):
    # the joint demo's pose member is the stride-4 recipe: the demo HRNet with its official stem and HeatmapHead
    pose_cfg = load_config(REPO / "tasks" / "pose_demo.yaml",
                           {"data_root": str(tiny_pose_demo), **pose_demo_stride4([24, 32])})
    single = build_task(pose_cfg).build_model()
    save_checkpoint(tmp_path / "pose.pth", single)
    task = build_task(_same_cfg(tiny_pose_demo, tmp_path))
    joint = task.build_model()
    report = load_checkpoint(joint, tmp_path / "pose.pth", strict=False)
    assert report.fresh_heads == ["mask"]
    assert "head(s) mask not in the checkpoint" in report.summary()
    assert torch.equal(joint.state_dict()["heads.pose.final_layer.weight"], single.state_dict()["heads.pose.final_layer.weight"])
    assert torch.equal(joint.state_dict()["backbone.conv1.weight"], single.state_dict()["backbone.conv1.weight"])

    # ... and the joint model's pose part goes back to a single-task checkpoint.
    save_checkpoint(tmp_path / "joint.pth", joint)
    assert main(["convert", str(SAME), str(tmp_path / "joint.pth"), str(tmp_path / "pose_only.pth"),
                 "--head", "pose"]) == 0
    again = build_task(pose_cfg).build_model()
    assert load_checkpoint(again, tmp_path / "pose_only.pth").fresh_heads == []   # strict: nothing missing
    assert main(["convert", str(SAME), str(tmp_path / "joint.pth"), str(tmp_path / "x.pth"), "--head", "depth"]) == 2
    assert "its heads: mask, pose" in capsys.readouterr().err


# --------------------------------------------------------------------------- Δm baselines

def test_baselines_from_numbers_files_and_run_folders(tiny_pose_demo, tiny_seg_demo, tmp_path):
    task = build_task(_mixed_cfg(tiny_pose_demo, tiny_seg_demo, tmp_path))
    run = tmp_path / "pose_run" / "logs"
    run.mkdir(parents=True)
    run.joinpath("metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 1, "loss": 1.0}, {"epoch": 5, "AP": 0.40, "AP50": 0.7}, {"epoch": 10, "AP": 0.55, "AP50": 0.8},
        {"epoch": 15, "AP": 0.50}]) + "\n")
    (tmp_path / "seg.json").write_text(json.dumps({"mIoU": 0.6, "aAcc": 0.9}))
    got = parse_baselines([f"pose={tmp_path / 'pose_run'}", f"seg={tmp_path / 'seg.json'}"], task)
    assert got == {"pose/AP": 0.55, "seg/mIoU": 0.6}            # the run's best evaluation
    assert parse_baselines(["seg/aAcc=0.8"], task) == {"seg/aAcc": 0.8}
    # Δm by hand: AP 0.50 vs 0.55 (-9.09 %), mIoU 0.66 vs 0.60 (+10 %) -> +0.4545 %
    dm = task.delta_m({"pose/AP": 0.50, "seg/mIoU": 0.66}, got)
    assert dm == pytest.approx(100 * ((0.50 - 0.55) / 0.55 + (0.66 - 0.60) / 0.60) / 2)
    for bad in ("pose", "depth=1", f"pose={tmp_path / 'nothing'}", "pose/AP=high"):
        with pytest.raises(PlatformError):
            parse_baselines([bad], task)


# --------------------------------------------------------------------------- eval and browse

def test_eval_prints_every_member_and_delta_m(tiny_pose_demo, tmp_path, capsys):
    task = build_task(_same_cfg(tiny_pose_demo, tmp_path))
    ckpt = save_checkpoint(tmp_path / "joint.pth", task.build_model())
    code = main(["eval", str(SAME), "--checkpoint", str(ckpt), "--out", str(tmp_path / "ev"),
                 "--baseline", "pose/AP=0.5", "mask/mIoU=0.5", "--set", *_same_cfg_overrides(tiny_pose_demo)])
    assert code == 0
    out = capsys.readouterr().out
    assert "== pose (PoseTask)" in out and "== mask (PersonMaskTask)" in out and "Δm = " in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert {"pose/AP", "mask/mIoU", "delta_m"} <= set(metrics)
    assert metrics["delta_m"] == pytest.approx(100 * ((metrics["pose/AP"] - 0.5) / 0.5 + (metrics["mask/mIoU"] - 0.5) / 0.5) / 2)
    assert (tmp_path / "ev" / "pose" / "keypoints_results.json").is_file()


def test_browse_shows_what_each_head_is_fed(tiny_pose_demo, tmp_path):
    assert main(["data", "browse", str(SAME), "--split", "train", "--out", str(tmp_path / "b"), "--limit", "2",
                 "--set", *_same_cfg_overrides(tiny_pose_demo)]) == 0
    assert len(list((tmp_path / "b" / "pose").glob("*.jpg"))) == 2
    assert len(list((tmp_path / "b" / "mask").glob("*.jpg"))) == 2


def _same_cfg_overrides(root):
    return [*_pose_member("pose", root), *_pose_member("mask", root)]
