"""Where a run resumes from: the platform record, the checkpoint Ray registered and the checkpoint
folder, with damaged files passed over; and retention of the newest K checkpoints."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from densepred import ConfigError
from densepred.checkpoint import save_checkpoint
from densepred.engine.run_config import check_rerun, write_run_config
from densepred.engine.run_state import (CKPT_FILE, epoch_dir_name, find_resume_point, note_unregistered,
                                        prune_checkpoints, read_latest, record_latest)


def _save(run_dir, epochs_done):
    d = run_dir / "checkpoints" / epoch_dir_name(epochs_done)
    net = torch.nn.Linear(2, 2)
    save_checkpoint(d / CKPT_FILE, net, meta={"epoch": epochs_done - 1, "global_step": 10 * epochs_done})
    return d


def test_the_platform_record_wins_over_an_older_ray_checkpoint(tmp_path):
    ray_registered = _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    record_latest(tmp_path, newest, 2, 20)  # written before the crash; Ray never registered it
    point = find_resume_point(tmp_path, ray_registered)
    assert point.path == newest / CKPT_FILE and point.source == "the platform record latest.json"
    assert point.state["meta"]["global_step"] == 20


def test_the_checkpoint_folder_is_used_without_any_record(tmp_path):
    _save(tmp_path, 1)
    newest = _save(tmp_path, 3)
    point = find_resume_point(tmp_path, None)
    assert point.path == newest / CKPT_FILE and point.source == "the checkpoint folder"
    assert find_resume_point(tmp_path / "elsewhere", None) is None  # a new run


def test_a_damaged_newest_checkpoint_is_reported_and_an_older_one_used(tmp_path):
    older = _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    record_latest(tmp_path, newest, 2, 20)
    data = (newest / CKPT_FILE).read_bytes()
    (newest / CKPT_FILE).write_bytes(data[: len(data) // 2])
    warnings = []
    point = find_resume_point(tmp_path, None, warn=warnings.append)
    assert point.path == older / CKPT_FILE
    assert len(warnings) == 1 and "skipping a damaged checkpoint" in warnings[0] and "epoch_0002" in warnings[0]


def test_retention_of_checkpoints_ray_never_registered(tmp_path):
    for e in range(1, 6):
        _save(tmp_path, e)
    # Ray registered epochs 1-2 (it prunes those itself); 3-5 were written around crashes.
    ray_registered = tmp_path / "checkpoints" / epoch_dir_name(2)
    assert note_unregistered(tmp_path, ray_registered) == ["epoch_0003", "epoch_0004", "epoch_0005"]
    record_latest(tmp_path, tmp_path / "checkpoints" / epoch_dir_name(5), 5, 50)
    removed = prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in removed] == ["epoch_0003"]
    # Ray's own checkpoints are left to Ray: deleting them would make it refuse the run folder.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "epoch_0001", "epoch_0002", "epoch_0004", "epoch_0005"]
    assert read_latest(tmp_path)["epoch"] == 5


# ----------------------------------------------------------------------------- re-running a run

def _run_cfg(**changes):
    cfg = {"task": {"type": "PoseTask"}, "model": {"backbone": {"type": "HRNet", "width": 8}},
           "optimizer": {"type": "Adam", "lr": 0.001}, "train": {"epochs": 3, "log_interval": 10},
           "run_name": "r"}
    for key, value in changes.items():
        section, name = key.split("__")
        cfg[section][name] = value
    return cfg


def test_a_rerun_may_change_safe_keys_and_says_which(tmp_path):
    write_run_config(tmp_path, _run_cfg())
    assert check_rerun(tmp_path, _run_cfg(), resume=False, allow_changes=False) == []
    changes = check_rerun(tmp_path, _run_cfg(train__epochs=9, train__log_interval=1), resume=False,
                          allow_changes=False)
    assert changes == [("train.epochs", 3, 9), ("train.log_interval", 10, 1)]


def test_a_rerun_with_another_config_is_refused_unless_resume_allows_changes(tmp_path):
    write_run_config(tmp_path, _run_cfg())
    changed = _run_cfg(optimizer__lr=0.01)
    for resume, allow in ((False, False), (True, False), (False, True)):
        with pytest.raises(ConfigError, match=r"started with another config \(optimizer\.lr: 0\.001 -> 0\.01\); "
                                              r"to continue it with these changes add --resume --allow-changes"):
            check_rerun(tmp_path, changed, resume=resume, allow_changes=allow)
    assert check_rerun(tmp_path, changed, resume=True, allow_changes=True) == [("optimizer.lr", 0.001, 0.01)]


def test_another_task_or_model_is_never_continued(tmp_path):
    write_run_config(tmp_path, _run_cfg())
    for other in (_run_cfg(task__type="SegmentationTask"), _run_cfg(model__backbone={"type": "HRNet", "width": 18})):
        with pytest.raises(ConfigError, match=r"is a run of another task or model .*use --set run_name=NEW"):
            check_rerun(tmp_path, other, resume=True, allow_changes=True)


def test_run_files_are_created_with_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        record_latest(tmp_path, _save(tmp_path, 1), 1, 10)
        write_run_config(tmp_path, _run_cfg())
    finally:
        os.umask(old)
    for f in (tmp_path / "latest.json", tmp_path / "config.yaml", tmp_path / "checkpoints" / "epoch_0001" / CKPT_FILE):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
