"""Your own data through Ray Train: the robot-arm demo set (6 joints, its own skeleton) with its
recipe, and a hand-made 21-joint file with no flip pairs and two categories sharing the skeleton.
Tiny runs (a few optimizer steps), evaluated at the end with OKS AP."""
from __future__ import annotations

import json

from conftest import REPO
from densepred import load_config
from test_keypoint_info import HAND_SETS, write_hand_set

TINY = {"data.batch_size": 4, "data.val_batch_size": 8, "data.loader_workers": 0, "train.epochs": 1,
        "train.max_iters": 3, "evaluation.flip_test": False, "model.backbone.width": 8}


def _run(task_file, sets):
    from densepred.engine.launch import train

    return train(load_config(task_file, sets))


def test_custom_pose_demo_recipe_trains_and_evaluates(ray_local, tmp_path):
    from densepred.tasks.pose.custom_demo import make_custom_pose_demo

    root = tmp_path / "custom_pose"
    make_custom_pose_demo(root, num_train=12, num_val=4, seed=2)
    summary = _run(REPO / "tasks" / "custom_pose_demo.yaml", {**TINY, "data_root": str(root),
                                                               "work_dir": str(tmp_path / "work")})
    assert "AP" in summary["metrics"]
    record = json.loads((tmp_path / "work" / "custom_pose_demo" / "logs" / "metrics.jsonl").read_text().splitlines()[-1])
    assert "AP" in record
    import torch
    best = torch.load(summary["best_checkpoint"], weights_only=True)
    assert best["meta"]["keypoints"] == ["base", "shoulder", "elbow", "wrist", "left_claw", "right_claw"]
    assert best["state_dict"]["heads.pose.final_layer.weight"].shape[0] == 6


def test_a_hand_file_with_two_categories_trains_on_ray(ray_local, tmp_path):
    root = write_hand_set(tmp_path / "hands", images=4)
    summary = _run(REPO / "tasks" / "pose_demo.yaml", {**HAND_SETS, **TINY, "data_root": str(root),
                                                       "work_dir": str(tmp_path / "work"), "run_name": "hands"})
    assert "AP" in summary["metrics"]
    log = (tmp_path / "work" / "hands" / "logs" / "train.log").read_text()
    assert "8 training samples" in log  # 4 images x 2 hands: both categories are trained on
