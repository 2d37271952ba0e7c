"""Relative paths mean the same thing everywhere: resolved once, on the driver, against the folder the
command runs in (bases and member files against the file naming them), so that Ray workers and Tune
trials, which run in other working directories, read the files the user meant."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import REPO
from densepred import ConfigError, load_config
from densepred.tuning.space import load_space
from densepred.tuning.trial import trial_config


def test_config_paths_become_absolute_against_the_command_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "tasks" / "pose_demo.yaml", ["train.load_from=weights/init.pth", "ray.storage=runs"])
    assert cfg["data_root"] == str(tmp_path / "data" / "demo" / "coco")
    assert cfg["work_dir"] == str(tmp_path / "work_dirs")
    assert cfg["train"]["load_from"] == str(tmp_path / "weights" / "init.pth")
    assert cfg["ray"]["storage"] == str(tmp_path / "runs")
    # detections stay relative to data_root, as documented
    assert cfg["bbox_file"] == "person_detection_results/COCO_val2017_detections_AP_H_56_person.json"


def test_an_explicit_base_folder_wins_over_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "tasks" / "seg_demo.yaml", base_dir=REPO)
    assert cfg["data_root"] == str(REPO / "data" / "demo" / "cityscapes")
    absolute = load_config(REPO / "tasks" / "seg_demo.yaml", ["data_root=/data/cityscapes"], base_dir=REPO)
    assert absolute["data_root"] == "/data/cityscapes"


def test_multitask_members_resolve_their_data_root_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(REPO / "tasks" / "multitask_demo_pose_seg.yaml")
    members = cfg["task"]["members"]
    assert members["pose"]["data_root"] == str(tmp_path / "data" / "demo" / "coco")
    assert members["seg"]["data_root"] == str(tmp_path / "data" / "demo" / "cityscapes")
    assert members["pose"]["config"] == str(REPO / "tasks" / "pose_demo.yaml")  # relative to the file


def test_a_sweep_trial_reads_the_paths_of_the_folder_platform_tune_ran_in(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_space(REPO / "tuning" / "pose_hrnet_width_fusion.yaml")
    # Tune runs each trial in a working directory of its own: nothing may depend on it.
    trial_dir = tmp_path / "ray_session" / "working_dirs" / "run_trial_0"
    trial_dir.mkdir(parents=True)
    monkeypatch.chdir(trial_dir)
    cfg = trial_config(spec, {"model.backbone.width": 8}, tmp_path / "trials", "t0")
    assert cfg["data_root"] == str(REPO / "data" / "demo" / "coco")
    assert cfg["work_dir"] == str(tmp_path / "trials")


def test_a_null_data_root_is_a_clear_error():
    from densepred.tasks.base import build_task

    task = build_task(load_config(REPO / "tasks" / "pose_demo.yaml", ["data_root=null"]))
    with pytest.raises(ConfigError, match=r"data_root is not set for PoseTask; give the dataset root folder"):
        task.preflight()


def test_run_config_and_best_yaml_hold_absolute_paths(tiny_pose_demo, tmp_path, monkeypatch):
    from densepred.engine.launch import plan_run
    from densepred.tuning.runner import best_config

    (tmp_path / "data" / "demo").mkdir(parents=True)
    (tmp_path / "data" / "demo" / "coco").symlink_to(tiny_pose_demo)  # the default relative data_root
    monkeypatch.chdir(tmp_path)
    plan, _ = plan_run(load_config(REPO / "tasks" / "pose_demo.yaml"), None, None, None, False, None, False)
    assert plan.cfg["data_root"] == str(tmp_path / "data" / "demo" / "coco")
    assert plan.run_dir == tmp_path / "work_dirs" / "pose_demo"
    assert plan.command == "platform train work_dirs/pose_demo/config.yaml --resume"
    best = best_config(load_space(REPO / "tuning" / "pose_hrnet_width_fusion.yaml"), {"model.backbone.width": 8})
    assert best["data_root"] == str(tmp_path / "data" / "demo" / "coco")
    assert best["work_dir"] == str(tmp_path / "work_dirs")
