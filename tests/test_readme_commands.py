"""Documented behaviour is tested behaviour: the commands of README.md, run as written from the root of
a fresh copy of the repository (its tracked and new files, nothing of the working copy's data, runs
or caches), with the relative default paths the README relies on.

Every command line of the README's ``bash`` blocks is in exactly one of three tables below:
``DEFAULT`` (run by the default suite), ``SLOW`` (run with ``scripts/test.sh --slow``) or ``NOT_RUN``
(with the reason: real datasets, clusters, the user's own files). A README command in none of them
fails ``test_every_readme_command_is_accounted_for``, so a new command cannot slip in untested.

Commands run with only the shortening options the README documents in "A quick try" (appended to
the command as written): ``QUICK_TRAIN`` for trainings, ``QUICK_TUNE`` for sweeps. Each run checks
the exit status and the files the README says appear. The runs use their own local Ray instance,
next to the suite's shared one (each job's Ray is isolated: ``engine.cluster.start_local_ray``).
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO

README = REPO / "README.md"
QUICK_TRAIN = ["--set", "train.epochs=1", "train.max_iters=5"]
ONE_EPOCH = ["--set", "train.epochs=1"]
QUICK_TUNE = ["--samples", "1", "--set", "train.epochs=2", "train.max_iters=10", "evaluation.interval=1"]
QUICK_DEMO = ("platform data demo --pose-train 40 --pose-val 10 --seg-train 8 --seg-val 4 "
              "--scenes-train 20 --scenes-val 5")
TIMEOUT_S = 900


@dataclass(frozen=True)
class Run:
    """A README command run as written (+ the documented shortening) and what it must leave."""

    command: str
    creates: tuple[str, ...] = ()    # globs under the copy's root that must match afterwards
    shorten: str = "quick"           # quick: QUICK_TRAIN / QUICK_TUNE; epoch: ONE_EPOCH; none: as written


PREDICT_POSE = ("platform predict tasks/pose_demo.yaml --checkpoint work_dirs/pose_demo/best.pth "
                "--input data/demo/coco/images/val2017 "
                "--boxes data/demo/coco/person_detection_results/COCO_val2017_detections_AP_H_56_person.json "
                "--out work_dirs/pose_demo/predictions")

# The Quick start path, a sweep and the inspection tools: the default suite (small demo sets).
DEFAULT = [
    Run(QUICK_DEMO, ("data/demo/coco/annotations/person_keypoints_train2017.json",
                     "data/demo/cityscapes/gtFine/val/*/*_gtFine_labelIds.png",
                     "data/demo/scenes/gt_sets/val.txt")),
    Run("platform data check tasks/pose_demo.yaml"),
    Run("platform train tasks/pose_demo.yaml", ("work_dirs/pose_demo/best.pth", "work_dirs/pose_demo/config.yaml",
                                                 "work_dirs/pose_demo/logs/train.log",
                                                 "work_dirs/pose_demo/logs/metrics.jsonl")),
    Run("platform eval tasks/pose_demo.yaml --checkpoint work_dirs/pose_demo/best.pth "
        "--out work_dirs/pose_demo/final_eval", ("work_dirs/pose_demo/final_eval/metrics.json",
                                                 "work_dirs/pose_demo/final_eval/keypoints_results.json")),
    Run(PREDICT_POSE, ("work_dirs/pose_demo/predictions/results.json", "work_dirs/pose_demo/predictions/vis/*.jpg")),
    Run("platform data browse tasks/pose_demo.yaml --split train --out browse/ --limit 10",
        ("browse/*.jpg", "browse/*.npz")),
    Run("platform export tasks/pose_demo.yaml --checkpoint work_dirs/pose_demo/best.pth", ("work_dirs/pose_demo/best.onnx",)),
    Run("platform tune tuning/pose_hrnet_width_fusion.yaml",
        tuple(f"work_dirs/tune/pose_hrnet_width_fusion/{f}" for f in
              ("results.csv", "summary.md", "best.yaml", "best_checkpoint.txt", "metric_per_epoch.png",
               "trials/*/logs/train.log"))),
    Run("platform info"),
    Run("platform train tasks/pose_demo.yaml --mlflow --set run_name=tracked",
        ("work_dirs/mlflow.db", "work_dirs/tracked/logs/mlflow.json", "work_dirs/tracked/pictures/curves.png")),
    Run("platform runs"),
    Run("platform runs work_dirs/pose_demo work_dirs/tracked"),
]

# The long ones: every demo recipe and shipped sweep, the multi-task commands, bench and the main job.
SLOW = [
    Run("platform data demo", ("data/demo/mpii/annot/valid.json",)),
    Run("bash scripts/demo.sh", ("work_dirs/pose_demo/final_eval/metrics.json",), shorten="none"),
    Run("platform train tasks/pose_demo.yaml --set train.epochs=5 run_name=quick", ("work_dirs/quick/best.pth",)),
    Run("platform train tasks/pose_demo.yaml --set run_name=quick --resume", ("work_dirs/quick/best.pth",)),
    Run("platform predict tasks/pose_demo.yaml --checkpoint work_dirs/quick/best.pth --input street.jpg --out out/",
        ("out/results.json", "out/vis/street.jpg")),
    Run("platform models --forward --input-size 256 192"),
    Run("platform train tasks/seg_demo.yaml", ("work_dirs/seg_demo/best.pth",)),
    Run("platform train tasks/custom_pose_demo.yaml", ("work_dirs/custom_pose_demo/best.pth",)),
    Run("platform data check tasks/custom_seg_demo.yaml"),
    Run("platform train tasks/custom_seg_demo.yaml", ("work_dirs/custom_seg_demo/best.pth",)),
    Run("platform predict tasks/custom_seg_demo.yaml --checkpoint work_dirs/custom_seg_demo/best.pth "
        "--input data/demo/custom_seg/images/val --out work_dirs/custom_seg_demo/predictions",
        ("work_dirs/custom_seg_demo/predictions/labels/*.png", "work_dirs/custom_seg_demo/predictions/vis/*.jpg")),
    Run("platform eval tasks/custom_seg_demo.yaml --predictions work_dirs/custom_seg_demo/predictions/labels"),
    Run("platform train tasks/pose_mpii_demo.yaml", ("work_dirs/pose_mpii_demo/best.pth",)),
    Run("platform train tasks/pose_demo_simplebaseline.yaml", ("work_dirs/pose_demo_simplebaseline/best.pth",)),
    Run("platform train tasks/pose_demo_hourglass.yaml", ("work_dirs/pose_demo_hourglass/best.pth",)),
    # a whole epoch: the eval --baseline below needs a mask model that learned something
    Run("platform train tasks/person_mask_demo.yaml", ("work_dirs/person_mask_demo/best.pth",), shorten="epoch"),
    Run("platform train tasks/multitask_demo.yaml", ("work_dirs/multitask_demo/best.pth",)),
    Run("platform train tasks/multitask_demo_pose_seg.yaml", ("work_dirs/multitask_demo_pose_seg/best.pth",)),
    Run("platform eval tasks/multitask_demo.yaml --checkpoint work_dirs/multitask_demo/best.pth "
        "--baseline pose=work_dirs/pose_demo mask=work_dirs/person_mask_demo"),
    Run("platform predict tasks/multitask_demo.yaml --checkpoint work_dirs/multitask_demo/best.pth "
        "--input data/demo/coco/images/val2017 --out mt_pred/", ("mt_pred/vis/*.jpg", "mt_pred/pose/results.json")),
    Run("platform convert tasks/multitask_demo.yaml work_dirs/multitask_demo/best.pth pose_only.pth --head pose",
        ("pose_only.pth",)),
    # the dense multi-task demo: its data, the four single-task baselines, the joint run, Δm, predict
    Run("platform data demo --task scenes", ("data/demo/scenes/gt_sets/val.txt", "data/demo/scenes/depth/*.npy",
                                             "data/demo/scenes/classes.yaml")),
    Run("platform train tasks/seg_scenes_demo.yaml", ("work_dirs/seg_scenes_demo/best.pth",)),
    Run("platform train tasks/depth_scenes_demo.yaml", ("work_dirs/depth_scenes_demo/best.pth",)),
    Run("platform train tasks/normals_scenes_demo.yaml", ("work_dirs/normals_scenes_demo/best.pth",)),
    Run("platform train tasks/boundary_scenes_demo.yaml", ("work_dirs/boundary_scenes_demo/best.pth",)),
    Run("platform train tasks/mtl_scenes_demo.yaml", ("work_dirs/mtl_scenes_demo/best.pth",
                                                      "work_dirs/mtl_scenes_demo/logs/metrics.jsonl")),
    Run("platform eval tasks/mtl_scenes_demo.yaml --checkpoint work_dirs/mtl_scenes_demo/best.pth "
        "--baseline seg=work_dirs/seg_scenes_demo depth=work_dirs/depth_scenes_demo "
        "normals=work_dirs/normals_scenes_demo boundary=work_dirs/boundary_scenes_demo"),
    Run("platform predict tasks/mtl_scenes_demo.yaml --checkpoint work_dirs/mtl_scenes_demo/best.pth "
        "--input data/demo/scenes/images --out work_dirs/mtl_scenes_demo/predictions",
        tuple(f"work_dirs/mtl_scenes_demo/predictions/{f}" for f in
              ("vis/*.jpg", "seg/labels/*.png", "depth/depth/*.npy", "normals/normals/*.png",
               "boundary/boundary/*.png"))),
    Run("platform tune tuning/pose_accuracy_vs_cost.yaml", ("work_dirs/tune/pose_accuracy_vs_cost/results.csv",)),
    Run("platform tune tuning/seg_hrnet_width_fusion.yaml --samples 4 --concurrent 1",
        ("work_dirs/tune/seg_hrnet_width_fusion/results.csv",)),
    Run("platform tune tuning/multitask_balancing.yaml", ("work_dirs/tune/multitask_balancing/results.csv",)),
    Run("platform bench --quick", ("benchmarks/results/*.json",), shorten="none"),
]

_REAL_DATA = ("needs the real dataset (COCO, MPII, Cityscapes, PASCAL-Context, LIP, ADE20K, or the NYUD-v2 / "
              "PASCAL-Context multi-task sets), which these machines cannot download")
_CHECKPOINT = "needs an official checkpoint file, which these machines cannot download"
_CLUSTER = "needs a multi-node Ray cluster (`ray start`); tests/test_node_loss.py runs a local 3-node cluster"
NOT_RUN = {
    "bash scripts/test.sh": "the test suite itself (CI runs it through .ci/run)",
    "python benchmarks/multitask_table.py --suite scenes":
        "nine trainings, about an hour; each scenes recipe it trains is run as written in SLOW",
    "mlflow ui --backend-store-uri sqlite:///work_dirs/mlflow.db":
        "a web server that runs until stopped; tests/test_tracking.py reads the same store with MlflowClient",
    "platform train tasks/pose_coco.yaml --set data_root=/data/coco --workers 4 --gpu": _REAL_DATA,
    "platform train tasks/pose_coco.yaml --set data_root=/data/coco": _REAL_DATA,
    "platform eval tasks/pose_coco.yaml --set data_root=/data/coco --checkpoint pose_hrnet_w32_256x192.pth": _CHECKPOINT,
    "platform eval tasks/pose_coco.yaml --set data_root=/data/coco --predictions my_results.json": _REAL_DATA,
    "platform convert configs/models/seg_hrnetv2_w48.yaml hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth w48.pth":
        _CHECKPOINT,
    "platform predict tasks/pose_coco.yaml --checkpoint pose_hrnet_w32_256x192.pth --input photos/ --out out/":
        _CHECKPOINT,
    "platform predict tasks/pose_coco.yaml --checkpoint best.pth --input clip.mp4 --out out/ --boxes clip_dets.json":
        "needs the user's video and detections; tests/test_predict.py predicts on a generated video",
    "platform data demo --task mpii --out data/demo": "covered by `platform data demo` (all sets) in SLOW",
    "platform data demo --task custom-seg": "covered by `platform data demo` (all sets) in SLOW",
    "platform data demo --task custom-pose": "covered by `platform data demo` (all sets) in SLOW",
    "platform data convert-labels my_colour_labels/ my_labels/ --palette my_classes.yaml":
        "needs the user's colour label images; tests/test_seg_folders.py converts generated ones",
    "platform train tasks/seg_pascal_context.yaml --set data_root=/data/VOCdevkit/VOC2010 --workers 4 --gpu":
        _REAL_DATA,
    "platform train tasks/seg_lip.yaml --set data_root=/data/lip --workers 4 --gpu": _REAL_DATA,
    "platform train tasks/seg_ade20k.yaml --set data_root=/data/ade/ADEChallengeData2016 --workers 4 --gpu":
        _REAL_DATA,
    "platform train tasks/seg_cityscapes.yaml --set data_root=/data/cityscapes --workers 4 --gpu": _REAL_DATA,
    "platform eval tasks/seg_cityscapes.yaml --set data_root=/data/cityscapes --checkpoint "
    "hrnet_w48_cityscapes_cls19_1024x2048_trainset.pth": _CHECKPOINT,
    "platform eval tasks/seg_cityscapes.yaml --set data_root=/data/cityscapes --predictions my_submission/": _REAL_DATA,
    "platform predict tasks/seg_cityscapes.yaml --checkpoint best.pth --input frames/ --out out/": _CHECKPOINT,
    "platform predict tasks/seg_cityscapes.yaml --checkpoint best.pth --input dashcam.mp4 --out out/": _CHECKPOINT,
    "platform eval tasks/multitask_demo.yaml --checkpoint joint.pth --baseline pose=work_dirs/pose_demo "
    "mask=out/mask/metrics.json": "the same as the eval --baseline run in SLOW, with the user's own file names",
    "platform eval tasks/multitask_demo.yaml --checkpoint joint.pth --baseline pose/AP=0.62 mask/mIoU=0.80":
        "the same as the eval --baseline run in SLOW, with the user's own file names",
    "ray start --head --port=6379": _CLUSTER,
    "ray start --address=<head-ip>:6379": _CLUSTER,
    "platform train tasks/pose_coco.yaml --address auto --workers 8 --gpu --storage /shared/runs "
    "--set data_root=/shared/coco": _CLUSTER,
    "platform tune tuning/pose_hrnet_width_fusion.yaml --address auto --storage /shared/runs "
    "--set data_root=/shared/coco --concurrent 8": _CLUSTER,
    "platform tune tuning/pose_hrnet_width_fusion.yaml --resume":
        "interrupting a sweep needs a signal at the right moment: tests/test_tune.py interrupts one and "
        "runs this command's --resume",
    # NYUD-v2 and PASCAL-Context multi-task (tests/test_dense_multitask.py builds these recipes and checks the
    # sweep's space; tests/test_dense_mt_data.py reads both layouts from generated files)
    "platform data check tasks/mtl_nyud_hrnet18.yaml": _REAL_DATA,
    "platform train tasks/nyud_seg_hrnet18.yaml --set train.load_from=hrnet_w18_small_model_v2.pth --gpu": _REAL_DATA,
    "platform train tasks/mtl_nyud_hrnet18.yaml --set train.load_from=hrnet_w18_small_model_v2.pth --gpu": _REAL_DATA,
    "platform eval tasks/mtl_nyud_hrnet18.yaml --checkpoint work_dirs/mtl_nyud_hrnet18/best.pth --baseline "
    "seg=work_dirs/nyud_seg_hrnet18 depth=work_dirs/nyud_depth_hrnet18 normals=work_dirs/nyud_normals_hrnet18 "
    "boundary=work_dirs/nyud_boundary_hrnet18": _REAL_DATA,
    "platform train tasks/mtl_pascal_hrnet18.yaml --set train.load_from=hrnet_w18_small_model_v2.pth --gpu":
        _REAL_DATA,
    "platform tune tuning/mtl_nyud_hrnet18.yaml": _REAL_DATA,
}


# ----------------------------------------------------------------------------- the README's commands

def readme_commands(text: str) -> list[str]:
    """Every command of the README's ``bash`` blocks: continuation lines joined, comments and
    environment lines (``export``, ``source``) left out."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", "", block)
        for line in joined.splitlines():
            line = line.split("  #")[0].split(" # ")[0].strip()
            if line and not line.startswith(("#", "export ", "source ", "cd ")):
                commands.append(" ".join(line.split()))
    return commands


def test_every_readme_command_is_accounted_for():
    documented = readme_commands(README.read_text())
    tables = [r.command for r in DEFAULT + SLOW] + list(NOT_RUN)
    assert len(tables) == len(set(tables)), "a command is in two tables"
    missing = sorted(set(documented) - set(tables))
    assert not missing, f"README commands that no test runs or excuses: {missing}"
    stale = sorted(set(tables) - set(documented))
    assert not stale, f"commands in this test that README.md no longer shows: {stale}"


def _sweep_task(path: Path) -> str:
    """The file name of the task recipe a shipped sweep trains (its ``task:``)."""
    import yaml

    return Path(str((yaml.safe_load(path.read_text()) or {}).get("task", ""))).name


def test_every_demo_recipe_and_shipped_sweep_is_run():
    """Every demo recipe and every sweep of a demo recipe runs as documented. A sweep of a real-data
    recipe (e.g. tuning/mtl_nyud_hrnet18.yaml on NYUD-v2) cannot run here: README.md must still show
    it, excused in NOT_RUN as needing the real data."""
    run = " ".join(r.command for r in DEFAULT + SLOW)
    recipes = [f"tasks/{p.name}" for p in sorted((REPO / "tasks").glob("*demo*.yaml"))]
    shipped = sorted((REPO / "tuning").glob("*.yaml"))
    sweeps = [f"tuning/{p.name}" for p in shipped if "demo" in _sweep_task(p)]
    assert not [f for f in recipes + sweeps if f not in run], "run every demo recipe and sweep as documented"
    real = [f"tuning/{p.name}" for p in shipped if "demo" not in _sweep_task(p)]
    excused = {f for f in real for command, why in NOT_RUN.items() if f in command and why == _REAL_DATA}
    assert set(real) == excused, f"sweeps of real-data recipes missing from README.md / NOT_RUN: {set(real) - excused}"


# ----------------------------------------------------------------------------- running them

def fresh_copy(dest: Path) -> Path:
    """The repository as a clone (plus files not committed yet) would have it: no data, runs or venv."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def command_line(run: Run) -> list[str]:
    argv = shlex.split(run.command)
    if run.shorten == "epoch":
        argv += ONE_EPOCH
    elif run.shorten == "quick" and argv[:2] == ["platform", "train"]:
        argv += QUICK_TRAIN
    elif run.shorten == "quick" and argv[:2] == ["platform", "tune"]:
        argv += QUICK_TUNE
    return argv


def run_as_written(root: Path, run: Run) -> str:
    """Run one command in ``root`` with the copy's own code first on the path; returns its output."""
    env = dict(os.environ, PYTHONPATH=str(root / "platform"), RAY_AUTH_MODE="disabled",
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_API_SERVER_ADDRESS", None)  # the suite's own Ray instance is not this job's
    t0 = time.time()
    res = subprocess.run(command_line(run), cwd=root, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    print(f"{time.time() - t0:6.1f} s  {shlex.join(command_line(run))}")
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"`{run.command}` exited {res.returncode}:\n{out[-4000:]}"
    for pattern in run.creates:
        assert list(root.glob(pattern)), f"`{run.command}` did not write {pattern}:\n{out[-2000:]}"
    return out


def test_readme_quick_start_sweep_and_tools_as_written(tmp_path):
    root = fresh_copy(tmp_path / "repo")
    outputs = {r.command: run_as_written(root, r) for r in DEFAULT}
    train = outputs["platform train tasks/pose_demo.yaml"]
    assert "[train] finished" in train and "AP" in train
    assert "ONNX Runtime vs PyTorch" in outputs["platform export tasks/pose_demo.yaml --checkpoint work_dirs/pose_demo/best.pth"]
    tune = outputs["platform tune tuning/pose_hrnet_width_fusion.yaml"]
    assert "Traceback" not in tune and "PlacementGroupCleaner" not in tune, tune[-3000:]
    table = outputs["platform runs"]
    assert all(name in table for name in ("pose_demo", "tracked", "pose_hrnet_width_fusion")), table
    assert "finished" in table, table
    pair = outputs["platform runs work_dirs/pose_demo work_dirs/tracked"]
    assert "pose_demo" in pair and "tracked" in pair and "AP" in pair, pair


@pytest.mark.slow
def test_readme_demo_recipes_sweeps_and_main_job_as_written(tmp_path):
    root = fresh_copy(tmp_path / "repo")
    # scripts/demo.sh sources scripts/env.sh: the suite's environment is the one it would build, and
    # env.sh leaves a linked .venv alone (an editable re-install from here would point the suite's
    # environment at this temporary copy).
    (root / ".venv").symlink_to(Path(sys.prefix))
    for run in SLOW:
        if "--input street.jpg" in run.command:  # the user's photo: a picture of the demo set
            shutil.copy(sorted((root / "data/demo/coco/images/val2017").glob("*.jpg"))[0], root / "street.jpg")
        run_as_written(root, run)
