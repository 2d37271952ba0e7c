"""Long runs meet dead workers, interrupted drivers, diverging losses and bad files: real Ray Train
runs of a tiny pose model that are hit by each of them and must carry on (or stop clearly) without
losing finished work."""
from __future__ import annotations

import json
import os
import re
import shutil
import shlex
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import REPO
from densepred import PlatformError, load_config
from densepred.engine.launch import train
from densepred.engine.run_state import read_latest

TASK = REPO / "tasks" / "pose_demo.yaml"
TINY = ["bbox_file=null", "data.input_size=[48, 64]", "data.heatmap_size=[24, 32]", "data.batch_size=2",
        "data.val_batch_size=16", "data.loader_workers=0", "evaluation.interval=1", "evaluation.flip_test=false",
        "train.log_interval=1", "ray.cpus_per_worker=1", "train.channels_last=false",
        "model.backbone.width=8"]


def _overrides(root, work_dir, *extra):
    return [f"data_root={root}", f"work_dir={work_dir}", *TINY, *extra]


def _cfg(root, work_dir, *extra):
    return load_config(TASK, _overrides(root, work_dir, *extra))


def _epochs(run_dir):
    return [json.loads(line)["epoch"] for line in open(run_dir / "logs" / "metrics.jsonl")]


def _wait_for(predicate, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _log(run_dir):
    p = run_dir / "logs" / "train.log"
    return p.read_text() if p.exists() else ""


def _placement_groups_alive():
    import ray.util

    return [pg for pg in ray.util.placement_group_table().values() if pg.get("state") != "REMOVED"]


def test_sigkilled_worker_is_replaced_and_the_run_resumes(ray_local, tiny_pose_demo, tmp_path):
    cfg = _cfg(tiny_pose_demo, tmp_path, "train.epochs=3", "run_name=kill", "ray.max_failures=2")
    run_dir = tmp_path / "kill"
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(summary=train(cfg, workers=2)))
    runner.start()
    try:
        _wait_for(lambda: (read_latest(run_dir) or {}).get("epoch") == 1, 240, "the epoch-1 checkpoint")
        _wait_for(lambda: "epoch 2/3 [" in _log(run_dir), 60, "epoch 2 to start")
        workers = _train_workers_alive()
        assert len(workers) == 2
        os.kill(workers[-1]["pid"], signal.SIGKILL)
    finally:
        runner.join(timeout=300)
    assert not runner.is_alive() and "summary" in result, "training did not finish after the worker was killed"
    m = result["summary"]["metrics"]
    assert m["epoch"] == 3
    resumed = [line for line in _log(run_dir).splitlines() if "[resume] continuing after epoch" in line]
    assert len(resumed) == 1
    assert int(resumed[0].split("continuing after epoch ")[1].split()[0]) >= 1
    assert "a worker failed: Ray started a new worker group (attempt 2 of at most 3)" in _log(run_dir)
    assert _epochs(run_dir) == [1, 2, 3]  # at most the epoch in progress was redone, none twice in the log
    fp = m["weight_fingerprints"]
    assert fp[0] == pytest.approx(fp[1], rel=1e-12, abs=0)
    # retention: the newest 2 epoch checkpoints plus best.pth
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch_0002", "epoch_0003"]
    assert (run_dir / "best.pth").is_file()
    assert _placement_groups_alive() == []


def _cli_train(root, work_dir, *extra):
    """`platform train` in a child process, joining the test session's Ray instance as a user joins a
    cluster (--address)."""
    import ray

    return _cli(["train", str(TASK), "--workers", "1", "--address", ray.get_runtime_context().gcs_address,
                 "--set", *_overrides(root, work_dir, *extra)])


def _cli(args: list[str]) -> subprocess.Popen:
    """`platform ARGS` in a child process (output in .stdout)."""
    cmd = [sys.executable, "-m", "densepred.cli", *args]
    env = dict(os.environ, PYTHONPATH=str(REPO / "platform"), RAY_AUTH_MODE="disabled")
    # A suite started in the background (`cmd &`) inherits an ignored SIGINT, and so would the child:
    # give it the default disposition, as in a terminal, so that Python turns Ctrl-C into KeyboardInterrupt.
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _train_workers_alive():
    from ray.util.state import list_actors

    return list_actors(filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])


@pytest.mark.slow  # 70-80 s on 2 cores: in scripts/test.sh --slow
def test_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_run(ray_local, tiny_pose_demo, tmp_path):
    epochs = ["train.epochs=10", "seed=7"]  # room for the Ctrl-C to land before the end
    # Ctrl-C of `platform train` after epoch 1 ...
    proc = _cli_train(tiny_pose_demo, tmp_path, *epochs, "run_name=cut")
    run_dir = tmp_path / "cut"
    try:
        _wait_for(lambda: (read_latest(run_dir) or {}).get("epoch", 0) >= 1 or proc.poll() is not None, 300,
                  "the epoch-1 checkpoint")
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    # The hint names the run's own config.yaml (every --set value is in it) and the --address flag.
    hint = re.search(r"continue with: (platform train .*)$", out, flags=re.M)
    assert hint, out
    assert hint.group(1).startswith(f"platform train {run_dir / 'config.yaml'} --resume --workers 1 --address "), \
        hint.group(1)
    assert read_latest(run_dir)["epoch"] < 10  # really cut short
    # Its workers and placement group are gone from the cluster.
    _wait_for(lambda: _placement_groups_alive() == [], 60, "the interrupted run's placement group to be removed")
    _wait_for(lambda: _train_workers_alive() == [], 60, "the interrupted run's workers to exit")

    # ... then the printed command, run as printed, finishes it ...
    proc = _cli(shlex.split(hint.group(1))[1:])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert "[resume] continuing after epoch" in out

    # ... with the same final weights as a run that was never interrupted.
    summary = train(_cfg(tiny_pose_demo, tmp_path, *epochs, "run_name=whole"), workers=1)
    whole = torch.load(summary["last_checkpoint"], weights_only=True)
    cut = torch.load(run_dir / read_latest(run_dir)["path"] / "model.pth", weights_only=True)
    assert whole["meta"]["global_step"] == cut["meta"]["global_step"]
    for k, v in whole["state_dict"].items():
        assert torch.equal(v, cut["state_dict"][k]), k
    assert _placement_groups_alive() == []


# MultiStepLR with a huge gamma: epoch 1 trains normally, epoch 2 diverges.
DIVERGE = ["train.epochs=3", "scheduler.type=MultiStepLR", "scheduler.milestones=[1]", "scheduler.gamma=1.0e+30"]


def test_nonfinite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(ray_local, tiny_pose_demo, tmp_path):
    with pytest.raises(PlatformError, match=r"training stopped: loss is (nan|inf).* at epoch 2, iteration \d+ "
                                            r"\(step \d+\); the last good checkpoint is kept"):
        train(_cfg(tiny_pose_demo, tmp_path, *DIVERGE, "run_name=nan"), workers=1)
    latest = read_latest(tmp_path / "nan")
    assert latest["epoch"] == 1
    from densepred.checkpoint import read_checkpoint
    state = read_checkpoint(tmp_path / "nan" / latest["path"] / "model.pth")
    assert all(torch.isfinite(v).all() for v in state["state_dict"].values() if v.is_floating_point())
    assert _placement_groups_alive() == []


def test_nonfinite_loss_can_skip_and_count_until_too_many(ray_local, tiny_pose_demo, tmp_path):
    with pytest.raises(PlatformError, match=r"training stopped: \d+ of \d+ batches had a non-finite loss in epoch 2, "
                                            r"more than train.max_fault_fraction=0.5"):
        train(_cfg(tiny_pose_demo, tmp_path, *DIVERGE, "run_name=skip", "train.nonfinite_loss=skip",
                   "train.max_fault_fraction=0.5"), workers=1)
    log = _log(tmp_path / "skip")
    assert "non-finite loss at epoch 2, iteration" in log and "batch skipped (1 this epoch)" in log
    assert read_latest(tmp_path / "skip")["epoch"] == 1


def test_bad_training_images_are_counted_and_too_many_stop_the_run(ray_local, tiny_pose_demo, tmp_path):
    root = tmp_path / "coco"
    shutil.copytree(tiny_pose_demo, root)
    ann = json.loads((root / "annotations" / "person_keypoints_train2017.json").read_text())
    bad = root / "images" / "train2017" / ann["images"][0]["file_name"]
    bad.write_bytes(b"not a jpeg")
    # Tolerated: skipped, counted, listed at epoch end and in the run summary.
    summary = train(_cfg(root, tmp_path, "train.epochs=1", "run_name=ok", "train.max_fault_fraction=0.9"), workers=1)
    assert summary["metrics"]["faults_total"] >= 1
    faults = (tmp_path / "ok" / "logs" / "faults.txt").read_text()
    assert bad.name in faults
    assert "sample(s) skipped over the run" in _log(tmp_path / "ok")
    # Over the threshold: a clear error naming the fraction and where the list is.
    with pytest.raises(PlatformError, match=r"samples \(\d+\.\d%\) were skipped in epoch 1, more than "
                                            r"train.max_fault_fraction=0.0; see .*faults.txt"):
        train(_cfg(root, tmp_path, "train.epochs=1", "run_name=strict", "train.max_fault_fraction=0.0"), workers=1)
    assert _placement_groups_alive() == []


def test_more_workers_than_cpus_is_a_clear_error(ray_local, tiny_pose_demo, tmp_path):
    with pytest.raises(PlatformError, match=r"^3 workers need at least 3 CPUs; the Ray cluster has 2\. "
                                            r"Use fewer --workers or add nodes"):
        train(_cfg(tiny_pose_demo, tmp_path, "run_name=big"), workers=3)
    assert not (tmp_path / "big").exists()  # a start that failed leaves no run folder to "resume"


def test_a_cluster_whose_cpus_are_held_by_another_job_is_a_clear_error(ray_local, tiny_pose_demo, tmp_path):
    """Another job holds every CPU: the run waits ray.connect_timeout_s, then says so (Ray alone
    would retry starting the worker group forever)."""
    from ray.util.placement_group import placement_group, remove_placement_group

    busy = placement_group([{"CPU": 2}])
    ray_local.get(busy.ready(), timeout=30)
    try:
        start = time.time()
        with pytest.raises(PlatformError, match=r"^the Ray cluster has 0 of 2 CPUs free but 1 worker\(s\) x 1 "
                                                r"CPU\(s\) needs 1; other jobs hold the rest"):
            train(_cfg(tiny_pose_demo, tmp_path, "run_name=busy", "ray.connect_timeout_s=2"), workers=1)
        assert time.time() - start < 30
    finally:
        remove_placement_group(busy)
    assert not (tmp_path / "busy").exists()


def test_workers_that_cannot_be_placed_end_the_run_after_the_placement_timeout(ray_local, tiny_pose_demo, tmp_path,
                                                                                monkeypatch):
    """Another job takes the CPUs between the driver's check and the start of the worker group: the
    run ends after ray.placement_timeout_s with one line, instead of waiting for ever."""
    import densepred.engine.launch as launch
    from ray.util.placement_group import placement_group, remove_placement_group

    held = []
    checked = launch.wait_for_cpus

    def check_then_take_the_cpus(*args, **kwargs):
        checked(*args, **kwargs)
        held.append(placement_group([{"CPU": 2}]))
        ray_local.get(held[0].ready(), timeout=30)

    monkeypatch.setattr(launch, "wait_for_cpus", check_then_take_the_cpus)
    try:
        start = time.time()
        with pytest.raises(PlatformError, match=r"^the 1 worker\(s\) could not be placed within "
                                                r"ray\.placement_timeout_s=3 s: the cluster is busy or too small"):
            train(_cfg(tiny_pose_demo, tmp_path, "run_name=unplaced", "ray.placement_timeout_s=3"), workers=1)
        assert time.time() - start < 60
    finally:
        for pg in held:
            remove_placement_group(pg)


def test_an_error_inside_a_worker_that_would_repeat_is_not_retried(ray_local, tiny_pose_demo, tmp_path, monkeypatch):
    """An annotation file that breaks after the driver's data check (here: the check is skipped)
    fails in the worker: the run stops with that one line (console and train.log) after one worker
    group, not after Ray's retries."""
    import densepred.engine.launch as launch

    monkeypatch.setattr(launch, "check_task_data", lambda *a, **k: None)
    root = tmp_path / "coco"
    shutil.copytree(tiny_pose_demo, root)
    ann = root / "annotations" / "person_keypoints_train2017.json"
    ann.write_text(ann.read_text()[:-40])
    with pytest.raises(PlatformError, match=rf"^training stopped: {re.escape(str(ann))}: invalid JSON at line"):
        train(_cfg(root, tmp_path, "run_name=broken", "ray.max_failures=3"), workers=1)
    run_dir = tmp_path / "broken"
    attempts = json.loads((run_dir / "logs" / "attempts.json").read_text())
    assert [v for k, v in attempts.items() if k != "world"] == [1]  # one worker group: not retried
    assert "[train] failed: training stopped: " in _log(run_dir) and "invalid JSON" in _log(run_dir)
    assert _placement_groups_alive() == []


def test_storage_must_be_a_shared_path(tiny_pose_demo, tmp_path):
    with pytest.raises(PlatformError, match=r"ray.storage='s3://bucket/runs': cloud URIs are not supported"):
        train(_cfg(tiny_pose_demo, tmp_path, "run_name=s3"), storage="s3://bucket/runs")
