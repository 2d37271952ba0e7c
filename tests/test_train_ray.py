"""Real Ray Train runs of the pose demo task on CPU workers: DDP synchronisation, checkpoints,
logs, and resuming a run by its name."""
from __future__ import annotations

import json

import pytest
import torch

from conftest import REPO
from densepred import load_checkpoint, load_config
from densepred.engine.launch import train
from densepred.model import build_model

TASK = REPO / "tasks" / "pose_demo.yaml"


def _cfg(root, work_dir, *extra):
    return load_config(TASK, [
        f"data_root={root}", f"work_dir={work_dir}", "bbox_file=null",
        "data.input_size=[48, 64]", "data.heatmap_size=[24, 32]", "data.batch_size=4",
        "data.val_batch_size=16", "data.loader_workers=0", "evaluation.interval=1",
        "evaluation.flip_test=false", "train.log_interval=1", "ray.cpus_per_worker=1", *extra])


def _epochs(run_dir):
    return [json.loads(line)["epoch"] for line in open(run_dir / "logs" / "metrics.jsonl")]


def test_two_cpu_workers_stay_in_sync_and_resume(ray_local, tiny_pose_demo, tmp_path, monkeypatch):
    # Relative paths, as users type them: they are resolved on the driver, not in the workers.
    monkeypatch.chdir(tiny_pose_demo.parent)
    # Multi-worker options together: synchronised BN on CPU, 2 batches per step, linear lr scaling.
    scaling = ["train.sync_bn=true", "train.accumulate=2", "train.lr_scaling=linear", "train.base_batch_size=8"]
    cfg = _cfg("coco", "runs", "train.epochs=1", "run_name=ddp", *scaling)
    summary = train(cfg, workers=2, storage="shared")
    m = summary["metrics"]
    fingerprints = m["weight_fingerprints"]
    assert len(fingerprints) == 2
    assert fingerprints[0] == pytest.approx(fingerprints[1], rel=1e-12, abs=0)  # DDP kept replicas equal
    assert 0.0 <= m["AP"] <= 1.0 and m["epoch"] == 1
    run_dir = tiny_pose_demo.parent / "shared" / "ddp"  # --storage holds the run folder
    assert summary["run_dir"] == str(run_dir) and not (tiny_pose_demo.parent / "runs" / "ddp").exists()
    assert _epochs(run_dir) == [1]
    assert (run_dir / "logs" / "tensorboard").is_dir()
    log = (run_dir / "logs" / "train.log").read_text()
    # total batch 4/worker x 2 workers x 2 steps = 16 = 2x the base batch: lr 1e-3 -> 2e-3
    assert "total batch 16 = 4/worker x 2 worker(s) x 2 accumulation step(s), sync BN" in log
    assert "lr 0.001 -> 0.002 (linear scaling from base batch 8 to 16)" in log
    assert "epoch 1/1 done in" in log and "ms/step" in log  # the epoch summary with the data wait
    assert m["data_wait_ms_per_step"] >= 0 and 0 <= m["data_wait_fraction"] <= 1
    best = summary["best_checkpoint"]
    model = build_model(cfg)
    assert load_checkpoint(model, best).format == "densepred"  # sync BN keeps the BatchNorm2d names
    raw = torch.load(summary["last_checkpoint"], weights_only=True)
    assert {"optimizer", "scheduler", "meta"} <= set(raw) and raw["meta"]["epoch"] == 0
    batches = len(_train_samples(tiny_pose_demo)) // (4 * 2)  # per worker, drop_last
    assert raw["meta"]["global_step"] == -(-batches // 2)  # one optimizer step per 2 batches
    assert raw["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-3)

    # The same run name continues from the epoch-1 checkpoint instead of starting over.
    cfg2 = _cfg("coco", "runs", "train.epochs=2", "run_name=ddp", *scaling)
    summary2 = train(cfg2, workers=2, resume=True, storage="shared")
    assert summary2["metrics"]["epoch"] == 2
    assert _epochs(run_dir) == [1, 2]


@pytest.mark.slow  # 25 s on 2 cores: in scripts/test.sh --slow
def test_a_run_whose_old_checkpoints_were_pruned_resumes(ray_local, tiny_pose_demo, tmp_path):
    """Ray refuses a run folder whose record names a deleted checkpoint; retention must not cause that."""
    keep_one = ["run_name=pruned", "train.keep_checkpoints=1", "data.batch_size=8", "ray.workers=1"]
    train(_cfg(tiny_pose_demo, tmp_path, "train.epochs=2", *keep_one))
    run_dir = tmp_path / "pruned"
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch_0002"]
    summary = train(_cfg(tiny_pose_demo, tmp_path, "train.epochs=3", *keep_one))
    assert summary["metrics"]["epoch"] == 3 and _epochs(run_dir) == [1, 2, 3]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch_0003"]


def _train_samples(root):
    from densepred.tasks.base import build_task

    return build_task(_cfg(root, "runs")).build_dataset("train")


def test_resume_of_unknown_run_is_a_clear_error(tmp_path, tiny_pose_demo):
    from densepred import PlatformError

    with pytest.raises(PlatformError, match=r"--resume: no run named 'nothing'"):
        train(_cfg(tiny_pose_demo, tmp_path, "run_name=nothing"), resume=True)
