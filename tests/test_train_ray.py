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
        "data.input_size=[48, 64]", "data.heatmap_size=[12, 16]", "data.batch_size=4",
        "data.val_batch_size=16", "data.loader_workers=0", "evaluation.interval=1",
        "evaluation.flip_test=false", "train.log_interval=1", "ray.cpus_per_worker=1", *extra])


def _epochs(run_dir):
    return [json.loads(line)["epoch"] for line in open(run_dir / "logs" / "metrics.jsonl")]


def test_two_cpu_workers_stay_in_sync_and_resume(ray_local, tiny_pose_demo, tmp_path, monkeypatch):
    # Relative paths, as users type them: they are resolved on the driver, not in the workers.
    monkeypatch.chdir(tiny_pose_demo.parent)
    cfg = _cfg("coco", "runs", "train.epochs=1", "run_name=ddp")
    summary = train(cfg, workers=2)
    m = summary["metrics"]
    fingerprints = m["weight_fingerprints"]
    assert len(fingerprints) == 2
    assert fingerprints[0] == pytest.approx(fingerprints[1], rel=1e-12, abs=0)  # DDP kept replicas equal
    assert 0.0 <= m["AP"] <= 1.0 and m["epoch"] == 1
    run_dir = tiny_pose_demo.parent / "runs" / "ddp"
    assert _epochs(run_dir) == [1]
    assert (run_dir / "logs" / "tensorboard").is_dir()
    best = summary["best_checkpoint"]
    model = build_model(cfg)
    assert load_checkpoint(model, best).format == "densepred"
    raw = torch.load(summary["last_checkpoint"], weights_only=True)
    assert {"optimizer", "scheduler", "meta"} <= set(raw) and raw["meta"]["epoch"] == 0

    # The same run name continues from the epoch-1 checkpoint instead of starting over.
    cfg2 = _cfg("coco", "runs", "train.epochs=2", "run_name=ddp")
    summary2 = train(cfg2, workers=2, resume=True)
    assert summary2["metrics"]["epoch"] == 2
    assert _epochs(run_dir) == [1, 2]


def test_resume_of_unknown_run_is_a_clear_error(tmp_path, tiny_pose_demo):
    from densepred import PlatformError

    with pytest.raises(PlatformError, match=r"--resume: no run named 'nothing'"):
        train(_cfg(tiny_pose_demo, tmp_path, "run_name=nothing"), resume=True)
