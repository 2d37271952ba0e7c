"""Bad input to every `platform` command: exit status 2 and ONE line `error: ...` that names the file,
key or value and says what to do; no traceback, no hang, and nothing written.

Each case is a row of ``ROWS`` (run in this process through ``densepred.cli.main``) or of
``SUBPROCESS_ROWS`` (run as ``python -m densepred.cli``: the ``--address`` cases, which must not touch
the Ray instance the rest of the suite shares). A row is::

    Row(id, argv, expected regex, setup=None, absent=(), empty_ok=())

``argv`` may use ``$pose`` / ``$seg`` (tiny demo sets), ``$tmp`` (the test's own folder), ``$work``
(``$tmp/work``), ``$ckpt`` (a checkpoint of the pose demo model), ``$tiny_ckpt`` (of another HRNet
configuration), ``$linear_ckpt`` (of an ``nn.Linear``), ``$text`` (a text file), ``$jpeg`` (a JPEG image) and the task files ``$POSE`` / ``$SEG``. ``setup(ctx)`` prepares the case (ctx maps
the same names to paths); ``absent`` lists paths that must not exist afterwards. Besides those, every
in-process row checks that the command created no file or folder anywhere under ``$tmp`` (the
working directory of the call) — bad input writes nothing — except the empty folders in ``empty_ok``.

`platform train` rows never start Ray: ``ensure_ray`` is replaced by a function that fails the test.
README.md, section "Bad input: what you get", subsection "Every command (tests/test_cli_errors.py)",
has one table row per case id; ``test_readme_lists_every_case`` keeps the two in step.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Callable, Optional

import pytest

from conftest import REPO, TINY_POSE_MODEL

POSE_TASK = str(REPO / "tasks" / "pose_demo.yaml")
SEG_TASK = str(REPO / "tasks" / "seg_demo.yaml")
MT_TASK = str(REPO / "tasks" / "multitask_demo.yaml")
MT_MIXED_TASK = str(REPO / "tasks" / "multitask_demo_pose_seg.yaml")
CUSTOM_SEG_TASK = str(REPO / "tasks" / "custom_seg_demo.yaml")
README = REPO / "README.md"
TIME_LIMIT_S = 60          # one in-process case; a hang is a failure
SUBPROCESS_TIMEOUT_S = 90  # one `python -m densepred.cli` case


@dataclass
class Row:
    id: str
    argv: list[str]
    expected: str                                   # regex searched in the error line
    setup: Optional[Callable[[dict], None]] = None
    absent: tuple[str, ...] = ()                    # paths (templates) that must not exist afterwards
    empty_ok: tuple[str, ...] = ()                  # output folders that may be left behind, empty


# ----------------------------------------------------------------------------- row helpers

POSE_SETS = ["--set", "data_root=$pose", "work_dir=$work"]
SEG_SETS = ["--set", "data_root=$seg", "work_dir=$work"]
NO_RUN = ("$work/pose_demo", "$work/seg_demo", "$work/run")
# `platform predict` checks and creates --out before it reads the checkpoint (frames.prepare_out_dir);
# a failure after that leaves the empty folder.
PREDICT_OUT = ("$tmp/out",)


def train(*sets: str, task: str = "$POSE", flags: tuple[str, ...] = ()) -> list[str]:
    base = SEG_SETS if task == "$SEG" else POSE_SETS
    return ["train", task, *flags, *base, *sets]


def _write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _copy_pose(ctx: dict) -> Path:
    return Path(shutil.copytree(ctx["pose"], ctx["tmp"] / "coco"))


def remove_train_annotation(ctx):
    (_copy_pose(ctx) / "annotations" / "person_keypoints_train2017.json").unlink()


def remove_val_images(ctx):
    shutil.rmtree(_copy_pose(ctx) / "images" / "val2017")


def remove_detections(ctx):
    shutil.rmtree(_copy_pose(ctx) / "person_detection_results")


def short_keypoints(ctx):
    """The first person of the train annotations has 16 keypoints' values instead of 17."""
    import json

    ann = _copy_pose(ctx) / "annotations" / "person_keypoints_train2017.json"
    data = json.loads(ann.read_text())
    first = next(a for a in data["annotations"] if a.get("num_keypoints", 0) > 0)
    first["keypoints"] = first["keypoints"][:48]
    ann.write_text(json.dumps(data))


def remove_train_image_files(ctx):
    for image in (_copy_pose(ctx) / "images" / "train2017").glob("*.jpg"):
        image.unlink()


def unknown_label_id(ctx):
    """A Cityscapes label file holding the labelId 99, which the label table does not have."""
    import cv2
    import numpy as np

    root = Path(shutil.copytree(ctx["seg"], ctx["tmp"] / "cityscapes"))
    label = sorted((root / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))[0]
    ids = cv2.imread(str(label), cv2.IMREAD_UNCHANGED)
    ids[0, :4] = 99
    cv2.imwrite(str(label), ids)


# --- segmentation on your own classes (tasks/custom_seg_demo.yaml on a copy of $custom: 2 train, 1 val)
CUSTOM_RUN = ("$work/custom_seg_demo",)


def custom_train(*sets: str, root: str = "$custom") -> list[str]:
    return ["train", "$CUSTOM", "--set", f"data_root={root}", "work_dir=$work", *sets]


def _copy_custom(ctx: dict) -> Path:
    return Path(shutil.copytree(ctx["custom"], ctx["tmp"] / "custom_seg"))


def _edit_labels(ctx: dict, edit: Callable, count: int = 2) -> None:
    """Rewrite the first ``count`` train labels of a copy of the custom set with ``edit(class ids)``."""
    import cv2

    for path in sorted((_copy_custom(ctx) / "labels" / "train").glob("*.png"))[:count]:
        cv2.imwrite(str(path), edit(cv2.imread(str(path), cv2.IMREAD_UNCHANGED)))


def colour_labels(ctx):
    """Every train label saved as a colour picture (RGB) instead of class ids."""
    import numpy as np

    _edit_labels(ctx, lambda ids: np.stack([ids * 40, ids * 20, ids], axis=-1).astype(np.uint8))


def label_above_class_list(ctx):
    """A train label holding 7 in a 5-class set."""
    def edit(ids):
        ids[:2, :3] = 7
        return ids
    _edit_labels(ctx, edit, count=1)


def zero_labels(ctx):
    """Every train label all 0 (only ignored pixels with reduce_zero_label)."""
    _edit_labels(ctx, lambda ids: ids * 0)


def split_file(*stems: str, remove_images: bool = False):
    def setup(ctx):
        root = _copy_custom(ctx)
        (root / "train.txt").write_text("".join(f"{s}\n" for s in stems))
        if remove_images:
            for image in (root / "images" / "train").glob("*.jpg"):
                image.unlink()
    return setup


def make_folder(name: str):
    def setup(ctx):
        (ctx["tmp"] / name).mkdir(parents=True)
    return setup


def pose_run_named_seg_demo(ctx):
    """A pose run folder under the run name of tasks/seg_demo.yaml."""
    from densepred import load_config
    from densepred.engine.launch import plain
    from densepred.engine.run_config import write_run_config

    cfg = plain(load_config(POSE_TASK, [f"data_root={ctx['pose']}", f"work_dir={ctx['work']}"]))
    cfg["run_name"] = "seg_demo"
    write_run_config(ctx["work"] / "seg_demo", cfg)


def existing_pose_run(ctx):
    """The run folder `platform train $POSE` would start (its config.yaml), as if it had run."""
    from densepred import load_config
    from densepred.engine.launch import plan_run
    from densepred.engine.run_config import write_run_config

    cfg = load_config(POSE_TASK, [f"data_root={ctx['pose']}", f"work_dir={ctx['work']}"])
    plan, _ = plan_run(cfg, None, None, None, False, None, False)
    write_run_config(plan.run_dir, plan.cfg)


def models_folder(content: Optional[str]):
    def setup(ctx):
        folder = ctx["tmp"] / "models"
        folder.mkdir()
        if content is not None:
            _write(folder / "broken.yaml", content)
    return setup


# ----------------------------------------------------------------------------- the cases

ROWS: list[Row] = [
    # ------------------------------------------------------------------ general
    Row("no-command", [], r"the following arguments are required: COMMAND \(see platform --help\)"),
    Row("unknown-command", ["trian", "$POSE"], r"invalid choice: 'trian' \(choose from .*'train'"),
    Row("data-no-action", ["data"], r"the following arguments are required: ACTION"),
    Row("unknown-flag", ["info", "--verbose"], r"unrecognized arguments: --verbose"),

    # ------------------------------------------------------------------ tune (space errors: tests/test_tune.py)
    Row("tune-missing-space", ["tune", "$tmp/none.yaml"], r"config file .*none\.yaml not found"),
    Row("tune-space-not-yaml", ["tune", "$jpeg"], r"is not a YAML text file"),
    Row("tune-samples-zero", ["tune", "$tmp/space.yaml", "--samples", "0"], r"--samples must be >= 1, got 0",
        setup=lambda ctx: _write(ctx["tmp"] / "space.yaml", "task: x.yaml\n")),
    Row("tune-space-missing-metric", ["tune", "$tmp/space.yaml"], r"space\.yaml: metric: missing",
        setup=lambda ctx: _write(ctx["tmp"] / "space.yaml", f"task: {POSE_TASK}\nspace: {{optimizer.lr: {{choice: [0.001]}}}}\n")),
    Row("tune-resume-nothing", ["tune", "$tmp/space.yaml", "--resume", "--storage", "$work"],
        r"--resume: no sweep 'space' to resume",
        setup=lambda ctx: _write(ctx["tmp"] / "space.yaml",
                                 f"task: {POSE_TASK}\nmetric: loss\nmode: min\noverrides: {{data_root: {ctx['pose']}}}\n"
                                 "space: {optimizer.lr: {choice: [0.001]}}\n"), absent=("$work",)),

    # ------------------------------------------------------------------ models
    Row("models-input-size-negative", ["models", "--forward", "--input-size", "-5", "10"],
        r"--input-size must be >= 1 and <= 8192, got -5 \(see platform models --help\)"),
    Row("models-input-size-huge", ["models", "--forward", "--input-size", "100000", "10"],
        r"--input-size must be >= 1 and <= 8192, got 100000"),
    Row("models-input-size-text", ["models", "--input-size", "tall", "10"],
        r"--input-size must be a whole number, got 'tall'"),
    Row("models-configs-missing", ["models", "--configs", "$tmp/no_such_folder"],
        r"--configs .*no_such_folder does not exist; give a folder of model \.yaml files"),
    Row("models-configs-is-file", ["models", "--configs", "$text"],
        r"--configs .*notes\.txt is a file; give a folder of model \.yaml files"),
    Row("models-configs-empty", ["models", "--configs", "$tmp/models"],
        r"no model configs \(\*\.yaml\) in .*models; give a folder of model \.yaml files", models_folder(None)),
    Row("models-config-bad-key", ["models", "--configs", "$tmp/models"],
        r"broken\.yaml: unknown key 'model\.backbone\.widht' for HRNet \(did you mean 'width'\?\)",
        models_folder("model:\n  backbone: {type: HRNet, widht: 18}\n  heads: {pose: {type: HeatmapHead}}\n")),

    # ------------------------------------------------------------------ convert
    Row("convert-out-is-folder", ["convert", "$POSE", "$ckpt", "$tmp/outdir"],
        r"OUT .*outdir is a folder; give a file name, e\.g\. .*outdir/model\.pth", make_folder("outdir")),
    Row("convert-out-folder-is-file", ["convert", "$POSE", "$ckpt", "$text/model.pth"],
        r"the folder of OUT .*notes\.txt is a file; give a folder"),
    Row("convert-config-is-jpeg", ["convert", "$jpeg", "$ckpt", "$tmp/out.pth"],
        r"config file .*photo\.jpg is not a YAML text file \(binary content\); give a task or model \.yaml",
        absent=("$tmp/out.pth",)),
    Row("convert-checkpoint-missing", ["convert", "$POSE", "$tmp/absent.pth", "$tmp/out.pth"],
        r"checkpoint file .*absent\.pth not found", absent=("$tmp/out.pth",)),
    Row("convert-checkpoint-text", ["convert", "$POSE", "$text", "$tmp/out.pth"],
        r"notes\.txt is not a PyTorch checkpoint \(it is a text file\)", absent=("$tmp/out.pth",)),
    Row("convert-checkpoint-other-model", ["convert", "$POSE", "$tiny_ckpt", "$tmp/out.pth"],
        r"checkpoint .*tiny\.pth \(densepred format\) does not fit this model: .*shape mismatches",
        absent=("$tmp/out.pth",)),
    Row("convert-missing-out", ["convert", "$POSE", "$ckpt"], r"the following arguments are required: out"),
    Row("convert-head-unknown", ["convert", "$POSE", "$ckpt", "$tmp/out.pth", "--head", "mask"],
        r"--head mask: the model has no head of that name; its heads: pose"),

    # ------------------------------------------------------------------ train: optimizer, schedule, weights
    Row("train-optimizer-type", train("optimizer.type=Adamm"),
        r"--set: optimizer\.type 'Adamm' is not a torch\.optim optimizer \(e\.g\. Adam, AdamW, SGD\)", absent=NO_RUN),
    Row("train-optimizer-lr-negative", train("optimizer.lr=-1"),
        r"--set: optimizer\.lr must be a number > 0, got -1", absent=NO_RUN),
    Row("train-optimizer-unknown-arg", train("optimizer.momentun=0.9"),
        r"--set: optimizer\.momentun: Adam has no argument 'momentun'; it takes: lr, betas, eps", absent=NO_RUN),
    # arguments checked by what they mean, not only by whether torch's constructor raises
    Row("train-adam-betas-one-value", train("optimizer.betas=0.9"),
        r"--set: optimizer\.betas: must be a list of 2 numbers, got 0\.9 \(Adam\)", absent=NO_RUN),
    Row("train-adam-betas-range", train("optimizer.betas=[0.9, 1.5]"),
        r"--set: optimizer\.betas: must be each in \[0, 1\), got \[0\.9, 1\.5\] \(Adam\)", absent=NO_RUN),
    Row("train-adam-amsgrad-text", train("optimizer.amsgrad=maybe"),
        r"--set: optimizer\.amsgrad: must be true or false, got 'maybe' \(Adam\)", absent=NO_RUN),
    Row("train-adam-eps-zero", train("optimizer.eps=0"),
        r"--set: optimizer\.eps: must be > 0, got 0 \(Adam\)", absent=NO_RUN),
    Row("train-adamw-weight-decay-negative", train("optimizer.type=AdamW", "optimizer.weight_decay=-0.01"),
        r"--set: optimizer\.weight_decay: must be >= 0, got -0\.01 \(AdamW\)", absent=NO_RUN),
    Row("train-sgd-momentum-range", train("optimizer.type=SGD", "optimizer.momentum=1.5"),
        r"--set: optimizer\.momentum: must be in \[0, 1\), got 1\.5 \(SGD\)", absent=NO_RUN),
    Row("train-sgd-nesterov-text", train("optimizer.type=SGD", "optimizer.momentum=0.9", "optimizer.nesterov=yes please"),
        r"--set: optimizer\.nesterov: must be true or false, got 'yes please' \(SGD\)", absent=NO_RUN),
    Row("train-rmsprop-alpha-range", train("optimizer.type=RMSprop", "optimizer.alpha=2"),
        r"--set: optimizer\.alpha: must be in \[0, 1\], got 2 \(RMSprop\)", absent=NO_RUN),
    Row("train-multistep-milestones-unsorted", train("scheduler.milestones=[15, 12]"),
        r"--set: scheduler\.milestones: must increase strictly from >= 1, got \[15, 12\]", absent=NO_RUN),
    Row("train-multistep-milestones-repeated", train("scheduler.milestones=[12, 12]"),
        r"scheduler\.milestones: must increase strictly from >= 1, got \[12, 12\] \(a repeated milestone", absent=NO_RUN),
    Row("train-multistep-milestones-floats", train("scheduler.milestones=[1.5, 3]"),
        r"--set: scheduler\.milestones: must be a list of whole numbers", absent=NO_RUN),
    Row("train-multistep-gamma-negative", train("scheduler.gamma=-0.1"),
        r"--set: scheduler\.gamma: must be > 0, got -0\.1 \(MultiStepLR\)", absent=NO_RUN),
    Row("train-multistep-unknown-arg", train("scheduler.step_size=5"),
        r"--set: scheduler\.step_size: MultiStepLR has no argument 'step_size'; it takes: milestones, gamma", absent=NO_RUN),
    Row("train-poly-power-negative", train("scheduler={type: PolyLR, power: -1}"),
        r"--set: scheduler\.power: must be > 0, got -1 \(PolyLR\)", absent=NO_RUN),
    Row("train-poly-floor-range", train("scheduler={type: PolyLR, min_lr_ratio: 2}"),
        r"--set: scheduler\.min_lr_ratio: must be in \[0, 1\], got 2 \(PolyLR\)", absent=NO_RUN),
    Row("train-cosine-tmax-float", train("scheduler={type: CosineAnnealingLR, T_max: 10.5}"),
        r"--set: scheduler\.T_max: must be a whole number, got 10\.5 \(CosineAnnealingLR\)", absent=NO_RUN),
    Row("train-constant-lr-argument", train("scheduler={type: ConstantLR, factor: 0.5}"),
        r"--set: scheduler\.factor: ConstantLR has no argument 'factor'; it takes: none", absent=NO_RUN),
    # ------------------------------------------------------------------ tracking, runs
    Row("train-tracking-uri-empty", train("tracking.tracking_uri=''", flags=("--mlflow",)),
        r"tracking\.tracking_uri is empty: give a store \(sqlite:///path/mlflow\.db, http://host:5000\) or null",
        absent=NO_RUN),
    Row("train-tracking-unknown-key", train("tracking.mlfow=true"),
        r"unknown key 'tracking\.mlfow' \(did you mean 'mlflow'\?\)", absent=NO_RUN),
    Row("train-tracking-mlflow-text", train("tracking.mlflow=yes please"),
        r"tracking\.mlflow must be bool, got str 'yes please'", absent=NO_RUN),
    Row("tune-tracking-uri-empty", ["tune", "$tmp/space.yaml", "--mlflow", "--set", "data_root=$pose",
                                    "work_dir=$work", "tracking.tracking_uri=''"],
        r"tracking\.tracking_uri is empty", absent=("$work/tune",),
        setup=lambda ctx: _write(ctx["tmp"] / "space.yaml", f"task: {POSE_TASK}\nmetric: AP\n"
                                 "space: {optimizer.lr: {choice: [0.001, 0.002]}}\n")),
    Row("runs-folder-missing", ["runs", "$tmp/nowhere"],
        r"nowhere: no such folder; give the folder that holds your run folders"),
    Row("runs-three-folders", ["runs", "$tmp", "$tmp", "$tmp"],
        r"platform runs takes a folder \(a table of its runs\) or two run folders \(side by side\), got 3"),
    Row("runs-not-a-run-folder", ["runs", "$tmp", "$tmp"], r"not a run folder \(it needs config\.yaml and logs/\)"),
    Row("train-scheduler-last-epoch", train("scheduler.last_epoch=3"),
        r"--set: scheduler\.last_epoch: set by the platform", absent=NO_RUN),
    Row("train-loss-flag-not-bool", train("task.loss.use_target_weight=3"),
        r"task\.loss\.use_target_weight: must be bool, got 3 \(JointsMSELoss\)", absent=NO_RUN),
    Row("train-seg-loss-ohem-thresh-range", train("task.loss.ohem_thresh=1.5", task="$SEG"),
        r"task\.loss\.ohem_thresh: must be <= 1, got 1\.5 \(SegCrossEntropy\)", absent=NO_RUN),
    Row("train-scheduler-by-iter-text", train("scheduler.by_iter=sometimes"),
        r"--set: scheduler\.by_iter: must be true \(step every iteration\) or false", absent=NO_RUN),
    Row("train-scheduler-type", train("scheduler.type=StepLRR"),
        r"--set: scheduler\.type 'StepLRR' is not supported; choose one of MultiStepLR, PolyLR", absent=NO_RUN),
    Row("train-load-from-missing", train("train.load_from=$tmp/absent.pth"),
        r"train\.load_from: checkpoint file .*absent\.pth not found", absent=NO_RUN),
    Row("train-load-from-text", train("train.load_from=$text"),
        r"train\.load_from: .*notes\.txt is not a PyTorch checkpoint \(it is a text file\)", absent=NO_RUN),
    Row("train-load-from-other-model", train("train.load_from=$linear_ckpt"),
        r"train\.load_from: no tensor of .*linear\.pth fits this model", absent=NO_RUN),
    Row("train-load-from-other-backbone", train("train.load_from=$tiny_ckpt"),
        r"train\.load_from: .*tiny\.pth is a checkpoint of another backbone: \d+ tensors have other shapes "
        r"\(e\.g\. backbone\..* checkpoint \[.*\] vs model \[.*\]\)", absent=NO_RUN),

    # ------------------------------------------------------------------ train: ranges and choices
    Row("train-batch-size-0", train("data.batch_size=0"),
        r"--set: data\.batch_size must be >= 1, got 0 \(samples per worker and step\)", absent=NO_RUN),
    Row("train-val-batch-size-0", train("data.val_batch_size=0"),
        r"--set: data\.val_batch_size must be >= 1, got 0", absent=NO_RUN),
    Row("train-loader-workers-negative", train("data.loader_workers=-1"),
        r"--set: data\.loader_workers must be >= 0, got -1", absent=NO_RUN),
    Row("train-input-size-huge", train("data.input_size=[100000,100000]"),
        r"--set: data\.input_size must be <= 4096, got \[100000, 100000\]", absent=NO_RUN),
    Row("train-input-size-without-heatmap-size", train("data.input_size=[128,160]"),
        r"data\.heatmap_size \[48, 64\] does not fit data\.input_size \[128, 160\]: .* so set "
        r"data\.heatmap_size=\[64,80\]", absent=NO_RUN),
    Row("train-sigma-0", train("data.sigma=0"), r"--set: data\.sigma must be > 0, got 0", absent=NO_RUN),
    Row("train-encoding-unknown", train("data.encoding=foo"),
        r"--set: data\.encoding must be one of msra, dark, udp, got 'foo'", absent=NO_RUN),
    Row("train-rotation-prob", train("data.augment.rotation_prob=1.5"),
        r"--set: data\.augment\.rotation_prob must be <= 1, got 1\.5", absent=NO_RUN),
    Row("train-epochs-negative", train("train.epochs=-3"),
        r"--set: train\.epochs must be >= 1, got -3 \(number of training epochs\)", absent=NO_RUN),
    Row("train-log-interval-0", train("train.log_interval=0"),
        r"--set: train\.log_interval must be >= 1, got 0", absent=NO_RUN),
    Row("train-keep-checkpoints-0", train("train.keep_checkpoints=0"),
        r"--set: train\.keep_checkpoints must be >= 1, got 0", absent=NO_RUN),
    Row("train-nonfinite-loss", train("train.nonfinite_loss=maybe"),
        r"--set: train\.nonfinite_loss must be one of stop, skip, got 'maybe'", absent=NO_RUN),
    Row("train-max-fault-fraction", train("train.max_fault_fraction=2"),
        r"--set: train\.max_fault_fraction must be <= 1, got 2", absent=NO_RUN),
    Row("train-lr-scaling", train("train.lr_scaling=cubic"),
        r"--set: train\.lr_scaling must be one of none, linear, sqrt, got 'cubic'", absent=NO_RUN),
    Row("train-lr-scaling-without-base", train("train.lr_scaling=linear"),
        r"train\.lr_scaling needs train\.base_batch_size", absent=NO_RUN),
    Row("train-grad-clip-0", train("train.grad_clip=0"), r"--set: train\.grad_clip must be > 0, got 0",
        absent=NO_RUN),
    Row("train-oks-thre", train("evaluation.oks_thre=7"),
        r"--set: evaluation\.oks_thre must be <= 1, got 7 \(OKS above which NMS drops", absent=NO_RUN),
    Row("train-eval-backend", train("evaluation.eval_backend=fast"),
        r"--set: evaluation\.eval_backend must be one of auto, pycocotools, faster, got 'fast' \(COCOeval",
        absent=NO_RUN),
    Row("train-eval-interval-0", train("evaluation.interval=0"),
        r"--set: evaluation\.interval must be >= 1, got 0", absent=NO_RUN),
    Row("train-max-failures", train("ray.max_failures=-5"),
        r"--set: ray\.max_failures must be >= -1, got -5", absent=NO_RUN),
    Row("train-cpus-per-worker-0", train("ray.cpus_per_worker=0"),
        r"--set: ray\.cpus_per_worker must be >= 1, got 0", absent=NO_RUN),
    Row("train-gpus-per-worker-2", train("ray.gpus_per_worker=2"),
        r"--set: ray\.gpus_per_worker must be <= 1, got 2", absent=NO_RUN),
    Row("train-connect-timeout-0", train("ray.connect_timeout_s=0"),
        r"--set: ray\.connect_timeout_s must be > 0, got 0", absent=NO_RUN),
    Row("train-seg-inference-mode", train("inference.mode=tiles", task="$SEG"),
        r"--set: inference\.mode must be one of whole, slide, multiscale, got 'tiles'", absent=NO_RUN),
    Row("train-seg-stride-ratio-0", train("inference.stride_ratio=0", task="$SEG"),
        r"--set: inference\.stride_ratio must be > 0, got 0", absent=NO_RUN),
    Row("train-seg-crop-size-0", train("data.augment.crop_size=[0,0]", task="$SEG"),
        r"--set: data\.augment\.crop_size must be >= 16, got \[0, 0\]", absent=NO_RUN),
    Row("train-seed-text", train("seed=abc"), r"--set: 'seed' must be int, got str 'abc'", absent=NO_RUN),

    # ------------------------------------------------------------------ train: config files and --set
    Row("train-missing-task-file", ["train", "$tmp/tasks/pose_dmeo.yaml"],
        r"^error: config file .*tasks/pose_dmeo\.yaml not found$"),
    Row("train-task-file-is-folder", ["train", "$tmp/tasks"],
        r"config file .*tasks is a folder; give a \.yaml file", make_folder("tasks")),
    Row("train-set-without-equals", train("train.epochs"),
        r"--set 'train\.epochs': expected KEY=VALUE, e\.g\. --set train\.epochs=10", absent=NO_RUN),
    Row("train-set-broken-yaml", train("data.input_size=[192, 256"),
        r"--set data\.input_size: value '\[192, 256' is not valid YAML .*check its brackets and quotes",
        absent=NO_RUN),
    Row("train-unknown-top-level-key", train("sed=3"),
        r"--set: unknown top-level key 'sed' \(did you mean 'seed'\?\)", absent=NO_RUN),
    Row("train-unknown-backbone-key", train("model.backbone.widht=8"),
        r"--set: unknown key 'model\.backbone\.widht' for HRNet \(did you mean 'width'\?\)", absent=NO_RUN),
    Row("train-unknown-task-type", train("task.type=PoseTsk"),
        r"task\.type: unknown task type 'PoseTsk'; registered tasks: BoundaryTask, DepthTask, MultiTask, NormalsTask, PersonMaskTask, PoseTask, SegmentationTask", absent=NO_RUN),
    Row("train-multitask-top-level-data-root", ["train", "$MT", "--set", "data_root=$pose", "work_dir=$work"],
        r"--set: top-level 'data_root' is not used by a multi-task run; it belongs to a member "
        r"\(task\.members\.<name>\.data_root\)", absent=NO_RUN),
    Row("train-multitask-member-file-missing", ["train", "$MT", "--set", "task.members.mask.config=mask.yaml",
                                                 "work_dir=$work"],
        r"task\.members\.mask\.config: task file 'mask\.yaml' not found", absent=NO_RUN),
    Row("train-multitask-gradnorm-mixed", ["train", "$MTMIX", "--set", "task.balancing={type: gradnorm}",
                                            "work_dir=$work"],
        r"task\.balancing\.type 'gradnorm' needs every member's loss on the same batch; use task\.mode=same_input",
        absent=NO_RUN),
    Row("train-multitask-aggregator-mixed", ["train", "$MTMIX", "--set",
                                             "task.balancing={type: aggregator, aggregator: mean}", "work_dir=$work"],
        r"task\.balancing\.type 'aggregator' needs every member's loss on the same batch; use task\.mode=same_input",
        absent=NO_RUN),
    Row("train-multitask-aggregator-unknown", ["train", "$MT", "--set",
                                               "task.balancing={type: aggregator, aggregator: upgard}", "work_dir=$work"],
        r"task\.balancing\.aggregator: expected one of upgrad, mgda, .*, mean, got 'upgard'$", absent=NO_RUN),
    Row("train-multitask-aggregator-option", ["train", "$MT", "--set",
                                              "task.balancing={type: aggregator, aggregator: mgda, c: 0.4}",
                                              "work_dir=$work"],
        r"task\.balancing\.c: not an option of aggregator mgda \(mgda takes epsilon, max_iters\)$", absent=NO_RUN),
    Row("train-multitask-members-differ", ["train", "$MT", "--set", "task.members.mask.data.input_size=[64, 64]",
                                           "task.members.mask.data.heatmap_size=[16, 16]",
                                           "task.members.pose.data_root=$pose", "task.members.mask.data_root=$pose",
                                           "work_dir=$work"],
        r"task\.mode=same_input needs members that read the same training samples, but pose and mask differ",
        absent=NO_RUN),
    Row("train-unknown-loss-type", train("task.loss.type=MSELosss"),
        r"task\.loss: unknown loss type 'MSELosss'; registered losses: .*JointsMSELoss", absent=NO_RUN),
    Row("train-data-root-empty", train("data_root="),
        r"--set: data_root is empty; give the dataset root folder \(e\.g\. --set data_root=data/coco\)$", absent=NO_RUN),
    Row("train-work-dir-empty", train("work_dir="),
        r"--set: work_dir is empty; give the folder for run folders \(e\.g\. --set work_dir=work_dirs\)", absent=NO_RUN),
    Row("train-task-after-set", ["train", "--set", "data_root=$tmp/nowhere", "work_dir=$work", "$POSE"],
        r"data_root .*nowhere does not exist; set data_root", absent=NO_RUN),

    # ------------------------------------------------------------------ train: dataset files
    Row("train-data-root-missing", ["train", "$POSE", "--set", "data_root=$tmp/nowhere", "work_dir=$work"],
        r"data_root .*nowhere does not exist; set data_root \(--set data_root=\.\.\.\) or make the demo sets",
        absent=NO_RUN),
    Row("train-annotation-missing", ["train", "$POSE", "--set", "data_root=$tmp/coco", "work_dir=$work"],
        r"person_keypoints_train2017\.json: COCO annotation file not found; check data_root and data\.train_split",
        remove_train_annotation, NO_RUN),
    Row("train-image-folder-missing", ["train", "$POSE", "--set", "data_root=$tmp/coco", "work_dir=$work"],
        r"no image folder for split 'val2017' under .*coco", remove_val_images, NO_RUN),
    Row("train-bbox-file-missing", ["train", "$POSE", "--set", "data_root=$tmp/coco", "work_dir=$work"],
        r"person detection file .*COCO_val2017_detections_AP_H_56_person\.json not found "
        r"\(set bbox_file: null to use ground-truth boxes\)", remove_detections, NO_RUN),
    Row("train-seg-data-root-missing", ["train", "$SEG", "--set", "data_root=$tmp/nowhere", "work_dir=$work"],
        r"data_root .*nowhere does not exist", absent=NO_RUN),
    # ------------------------------------------------------------------ train: the data itself (before Ray)
    Row("train-keypoint-count-mismatch", ["train", "$POSE", "--set", "data_root=$tmp/coco", "work_dir=$work"],
        r"person_keypoints_train2017\.json: annotation \d+ has 48 keypoint values, expected 51 "
        r"\(17 keypoints x 3\)", short_keypoints, NO_RUN),
    Row("train-image-files-missing", ["train", "$POSE", "--set", "data_root=$tmp/coco", "work_dir=$work"],
        r"\d+ of \d+ train image files missing or unreadable \(e\.g\. .*\.jpg\): more than "
        r"train\.max_fault_fraction=0\.01, so the run would stop in its first epoch", remove_train_image_files, NO_RUN),
    # keypoint metadata (data.keypoint_info) and a data set of another skeleton
    Row("train-keypoint-info-sigmas-length", train("data.keypoint_info={keypoints: [a, b], sigmas: [0.1]}"),
        r"--set: data\.keypoint_info \(inline\): sigmas must list one number per keypoint \(2\), got 1", absent=NO_RUN),
    Row("train-keypoint-info-flip-pair-out-of-range", train("data.keypoint_info={keypoints: [a, b], flip_pairs: [[0, 5]]}"),
        r"--set: data\.keypoint_info \(inline\): flip_pairs: joint index 5 is out of range 0\.\.1", absent=NO_RUN),
    Row("train-keypoint-info-unknown-joint", train("data.keypoint_info={keypoints: [a, b], skeleton: [[a, c]]}"),
        r"data\.keypoint_info \(inline\): skeleton: 'c' is not one of the keypoints", absent=NO_RUN),
    Row("train-keypoint-info-unknown-name", train("data.keypoint_info=cocoo"),
        r"--set: data\.keypoint_info: no keypoint info named 'cocoo'; shipped: ap10k, coco, crowdpose, face68, hand21, mpii",
        absent=NO_RUN),
    Row("train-keypoint-info-file-missing", train("data.keypoint_info=$tmp/joints.yaml"),
        r"--set: data\.keypoint_info: keypoint info file .*joints\.yaml not found", absent=NO_RUN),
    Row("train-keypoint-head-mismatch", train("data.keypoint_info=crowdpose"),
        r"model\.heads\.pose\.num_keypoints is 17 but the data set has 14 keypoints \(keypoint info 'crowdpose'\); "
        r"set model\.heads\.pose\.num_keypoints=null to follow the data", absent=NO_RUN),
    Row("train-keypoint-file-other-skeleton", train("data.keypoint_info=crowdpose", "model.heads.pose.num_keypoints=null"),
        r"person_keypoints_train2017\.json: category 'person' does not match the configured keypoint info \(17 keypoints "
        r"in the file, 14 in keypoint info 'crowdpose'\); fix data\.keypoint_info, or set it to null", absent=NO_RUN),
    Row("train-seg-unknown-label-id", ["train", "$SEG", "--set", "data_root=$tmp/cityscapes", "work_dir=$work"],
        r"_gtFine_labelIds\.png: unknown Cityscapes label id\(s\) .*99.*\(valid labelIds are 0\.\.33\)",
        unknown_label_id, NO_RUN),

    # ------------------------------------------------------------------ train: segmentation on your own classes
    Row("train-seg-colour-labels", custom_train(root="$tmp/custom_seg"),
        r"label file .*000000\.png has 3 channels; expected a single-channel index PNG \(colour-coded labels: "
        r"convert them with `platform data convert-labels SRC OUT --palette CLASS_INFO`\)", colour_labels, CUSTOM_RUN),
    Row("train-seg-label-above-class-list", custom_train(root="$tmp/custom_seg"),
        r"000000\.png: label value\(s\) 7 outside the class list of data\.class_info of .*custom_seg_demo\.yaml "
        r"\(5 classes: values 0\.\.4; 255 is ignored\); fix the label file or data\.class_info",
        label_above_class_list, CUSTOM_RUN),
    Row("train-seg-reduce-zero-label-zero-only", custom_train("data.class_info.reduce_zero_label=true",
                                                              root="$tmp/custom_seg"),
        r"2 of 2 train label files read hold only ignored pixels, e\.g\. .*\(reduce_zero_label: true ignores 0 "
        r"and 255; if 0 is a class of yours, set reduce_zero_label: false", zero_labels, CUSTOM_RUN),
    Row("train-seg-empty-split-file", custom_train("data.train_split=train.txt", root="$tmp/custom_seg"),
        r"train\.txt: the split file lists no file stems; write one stem a line", split_file(), CUSTOM_RUN),
    Row("train-seg-split-file-missing-stem", custom_train("data.train_split=train.txt", root="$tmp/custom_seg"),
        r"train\.txt line 2: stem 'ghost' has no image and no label \(looked for .*ghost\.png\); fix the split file",
        split_file("000000", "ghost"), CUSTOM_RUN),
    Row("train-seg-image-files-missing", custom_train("data.train_split=train.txt", root="$tmp/custom_seg"),
        r"2 of 2 train image files missing or unreadable \(e\.g\. .*000000\.jpg\): more than "
        r"train\.max_fault_fraction=0\.01", split_file("000000", "000001", remove_images=True), CUSTOM_RUN),
    Row("train-seg-image-suffix", custom_train("data.image_suffix=.png"),
        r"no images in .*images/train ending in '\.png' .*it holds 2 '\.jpg' file\(s\): set data\.image_suffix=\.jpg",
        absent=CUSTOM_RUN),
    Row("train-seg-num-classes-mismatch", custom_train("model.heads.seg.num_classes=19"),
        r"--set: model\.heads\.seg\.num_classes is 19 but the class list data\.class_info of .* has 5 classes; set "
        r"it to null \(it then follows data\.class_info\) or to 5", absent=CUSTOM_RUN),
    Row("train-seg-palette-length", custom_train("data.class_info.palette=[[0,0,0]]"),
        r"--set: data\.class_info: palette has 1 colours for 5 classes \(names\); give one \[R, G, B\] per class",
        absent=CUSTOM_RUN),
    Row("train-seg-flip-pair-out-of-range", custom_train("data.class_info.label_flip_pairs=[[1,9]]"),
        r"data\.class_info: label_flip_pairs holds 9, outside the class ids 0\.\.4", absent=CUSTOM_RUN),
    Row("train-seg-duplicate-class-name", custom_train("data.class_info.names=[sky,sky,box,ball,cone]"),
        r"data\.class_info: class name 'sky' appears twice in names \(ids 0 and 1\)", absent=CUSTOM_RUN),
    Row("train-seg-no-class-info", custom_train("data.class_info=null"),
        r"--set: data\.format=folders needs data\.class_info: a shipped class list \(ade20k, cityscapes, lip, "
        r"pascal_context\), the path of a class_info \.yaml file", absent=CUSTOM_RUN),
    Row("train-seg-unknown-class-list", custom_train("data.class_info=pascal_contxt"),
        r"data\.class_info: no shipped class list named 'pascal_contxt' \(did you mean 'pascal_context'\?\)",
        absent=CUSTOM_RUN),
    Row("train-seg-class-info-file-missing", custom_train("data.class_info=$tmp/classes.yaml"),
        r"data\.class_info: class_info file .*classes\.yaml not found", absent=CUSTOM_RUN),
    Row("train-seg-official-weights-other-classes", custom_train("task.loss.class_weights=official"),
        r"--set: task\.loss\.class_weights=official are the Cityscapes class weights, but the class list is "
        r"data\.class_info of .* \(5 classes\); set task\.loss\.class_weights=null", absent=CUSTOM_RUN),
    Row("train-seg-folder-keys-in-cityscapes-layout", train("data.train_images=img", task="$SEG"),
        r"--set: data\.train_images belongs to the folders layout; set data\.format=folders", absent=NO_RUN),

    # ------------------------------------------------------------------ train: flags, run folders
    Row("train-workers-0", train(flags=("--workers", "0")), r"--workers must be >= 1, got 0 \(see platform train --help\)"),
    Row("train-workers-text", train(flags=("--workers", "abc")), r"--workers must be a whole number, got 'abc'"),
    Row("train-storage-is-file", train(flags=("--storage", "$text")),
        r"--storage / ray\.storage .*notes\.txt is a file; give a folder for the run folders"),
    Row("train-storage-cloud", train(flags=("--storage", "s3://bucket/runs")),
        r"ray\.storage='s3://bucket/runs': cloud URIs are not supported"),
    Row("train-work-dir-is-file", ["train", "$POSE", "--set", "data_root=$pose", "work_dir=$text"],
        r"work_dir .*notes\.txt is a file; give a folder for the run folders"),
    Row("train-resume-unknown-run", train("run_name=never_ran", flags=("--resume",)),
        r"--resume: no run named 'never_ran' in .*work \(check --set run_name=", absent=("$work/never_ran",)),
    Row("train-allow-changes-without-resume", train(flags=("--allow-changes",)),
        r"--allow-changes goes with --resume \(continue a run whose config changed\)", absent=NO_RUN),
    Row("train-seg-under-pose-run", train(task="$SEG"),
        r"run 'seg_demo' in .*seg_demo is a run of another task or model \(task\.type: 'PoseTask' -> "
        r"'SegmentationTask'.*use --set run_name=NEW", pose_run_named_seg_demo, ("$work/seg_demo/logs",)),
    Row("train-rerun-changed-config", train("optimizer.lr=0.5"),
        r"run 'pose_demo' in .*pose_demo was started with another config \(optimizer\.lr: 0\.001 -> 0\.5\); "
        r"to continue it with these changes add --resume --allow-changes", existing_pose_run,
        ("$work/pose_demo/logs",)),
    Row("train-resume-changed-config", train("optimizer.lr=0.5", flags=("--resume",)),
        r"was started with another config \(optimizer\.lr: 0\.001 -> 0\.5\); to continue it with these "
        r"changes add --resume --allow-changes", existing_pose_run, ("$work/pose_demo/logs",)),

    # ------------------------------------------------------------------ eval
    Row("eval-checkpoint-text", ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$text"],
        r"notes\.txt is not a PyTorch checkpoint \(it is a text file\); give a \.pth/\.pt file"),
    Row("eval-checkpoint-folder", ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$tmp/run"],
        r"checkpoint .*run is a folder, not a file; give the \.pth file inside it", make_folder("run")),
    Row("eval-baseline-single-task", ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$ckpt",
                                      "--baseline", "pose/AP=0.5"],
        r"--baseline applies to multi-task configs \(task\.type: MultiTask\)"),
    Row("eval-baseline-no-run", ["eval", "$MT", "--checkpoint", "$ckpt", "--baseline", "pose=$tmp/nowhere"],
        r"--baseline pose=.*nowhere: no such run folder or metrics file"),
    Row("eval-baseline-unknown-member", ["eval", "$MT", "--checkpoint", "$ckpt", "--baseline", "depth/AP=0.5"],
        r"--baseline 'depth/AP=0\.5': no member 'depth'; members: pose, mask"),
    Row("eval-checkpoint-missing", ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$tmp/a.pth"],
        r"checkpoint file .*a\.pth not found"),
    Row("eval-checkpoint-other-model", ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$tiny_ckpt"],
        r"checkpoint .*tiny\.pth \(densepred format\) does not fit this model"),
    Row("eval-checkpoint-and-predictions",
        ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$ckpt", "--predictions", "$text"],
        r"give either --checkpoint \(run a model\) or --predictions \(score a results file\), not both"),
    Row("eval-neither", ["eval", "$POSE", "--set", "data_root=$pose"],
        r"give --checkpoint CKPT \(a model to run\) or --predictions FILE \(results to score\)"),
    Row("eval-out-is-file", ["eval", "$POSE", "--set", "data_root=$pose", "--checkpoint", "$ckpt", "--out", "$text"],
        r"--out .*notes\.txt is a file; give a folder"),
    Row("eval-predictions-missing", ["eval", "$POSE", "--set", "data_root=$pose", "--predictions", "$tmp/r.json"],
        r"r\.json.* not found"),
    Row("eval-data-root-missing",
        ["eval", "$POSE", "--set", "data_root=$tmp/nowhere", "--checkpoint", "$ckpt", "--out", "$tmp/out"],
        r"data_root .*nowhere does not exist", absent=("$tmp/out",)),
    Row("eval-seg-prediction-missing", ["eval", "$CUSTOM", "--set", "data_root=$custom", "--predictions", "$tmp/preds"],
        r"000000\.png: no prediction found for it in .*preds \(expected 000000\.png\)", make_folder("preds")),

    # ------------------------------------------------------------------ predict
    Row("predict-missing-arguments", ["predict", "$POSE", "--checkpoint", "$ckpt"],
        r"the following arguments are required: --input, --out"),
    Row("predict-checkpoint-missing",
        ["predict", "$POSE", "--checkpoint", "$tmp/a.pth", "--input", "$jpeg", "--out", "$tmp/out",
         "--detector", "whole"],
        r"checkpoint file .*a\.pth not found", empty_ok=PREDICT_OUT),
    Row("predict-checkpoint-text",
        ["predict", "$POSE", "--checkpoint", "$text", "--input", "$jpeg", "--out", "$tmp/out",
         "--detector", "whole"],
        r"notes\.txt is not a PyTorch checkpoint \(it is a text file\)", empty_ok=PREDICT_OUT),
    Row("predict-input-missing",
        ["predict", "$POSE", "--checkpoint", "$ckpt", "--input", "$tmp/absent.jpg", "--out", "$tmp/out",
         "--detector", "whole"],
        r"--input .*absent\.jpg not found", empty_ok=PREDICT_OUT),

    # ------------------------------------------------------------------ data demo
    Row("demo-pose-train-negative", ["data", "demo", "--out", "$tmp/demo", "--pose-train", "-5"],
        r"--pose-train must be >= 1 and <= 100000, got -5 \(see platform data demo --help\)", absent=("$tmp/demo",)),
    Row("demo-seg-size-zero", ["data", "demo", "--out", "$tmp/demo", "--seg-size", "0", "0"],
        r"--seg-size must be >= 32 and <= 4096, got 0", absent=("$tmp/demo",)),
    Row("demo-seg-size-one-value", ["data", "demo", "--out", "$tmp/demo", "--seg-size", "256"],
        r"--seg-size expected 2 arguments", absent=("$tmp/demo",)),
    Row("demo-out-is-file", ["data", "demo", "--out", "$text", "--task", "pose", "--pose-train", "1",
                             "--pose-val", "1"],
        r"--out .*notes\.txt is a file; give a folder"),
    Row("demo-task-unknown", ["data", "demo", "--out", "$tmp/demo", "--task", "depth"],
        r"--task invalid choice: 'depth' \(choose from 'all', 'pose', 'mpii', 'seg', .*'custom-seg'.*\)",
        absent=("$tmp/demo",)),
    Row("demo-seed-text", ["data", "demo", "--out", "$tmp/demo", "--seed", "lucky"],
        r"--seed invalid int value: 'lucky'", absent=("$tmp/demo",)),

    # ------------------------------------------------------------------ data browse
    Row("browse-limit-negative", ["data", "browse", "$POSE", "--out", "$tmp/b", "--limit", "-1"],
        r"--limit must be >= 1, got -1 \(see platform data browse --help\)", absent=("$tmp/b",)),
    Row("browse-out-is-file", ["data", "browse", "$POSE", "--set", "data_root=$pose", "--out", "$text"],
        r"--out .*notes\.txt is a file; give a folder"),
    Row("browse-split-unknown", ["data", "browse", "$POSE", "--out", "$tmp/b", "--split", "test"],
        r"--split invalid choice: 'test' \(choose from 'train', 'val'\)", absent=("$tmp/b",)),
    Row("browse-missing-out", ["data", "browse", "$POSE"], r"the following arguments are required: --out"),
    Row("browse-data-root-missing", ["data", "browse", "$POSE", "--set", "data_root=$tmp/nowhere", "--out", "$tmp/b"],
        r"nowhere", absent=("$tmp/b",)),
    Row("browse-unknown-set-key", ["data", "browse", "$SEG", "--set", "data.augmnt={}", "--out", "$tmp/b"],
        r"--set: unknown key 'data\.augmnt' \(did you mean 'augment'\?\)", absent=("$tmp/b",)),

    # ------------------------------------------------------------------ data check, convert-labels
    Row("check-seg-label-above-class-list", ["data", "check", "$CUSTOM", "--set", "data_root=$tmp/custom_seg"],
        r"000000\.png: label value\(s\) 7 outside the class list", label_above_class_list),
    Row("convert-labels-unknown-palette", ["data", "convert-labels", "$tmp/colour", "$tmp/index", "--palette", "lipp"],
        r"--palette: no shipped class list named 'lipp' \(did you mean 'lip'\?\)", make_folder("colour"),
        absent=("$tmp/index",)),
    Row("convert-labels-src-missing", ["data", "convert-labels", "$tmp/colour", "$tmp/index", "--palette", "lip"],
        r"SRC_FOLDER .*colour not found; give the folder of colour label images", absent=("$tmp/index",)),
    Row("convert-labels-no-images", ["data", "convert-labels", "$tmp/colour", "$tmp/index", "--palette", "lip"],
        r"no label images \(\.png, \.bmp, \.tif, \.tiff\) in .*colour", make_folder("colour"),
        absent=("$tmp/index",)),
]

# `--address` cases run as their own process: the rest of the suite shares one in-process Ray
# instance, which `ensure_ray` would reuse instead of joining the address. Only loopback addresses
# and names that cannot resolve.
ADDRESS_SETS = ["--set", "data_root=$pose", "work_dir=$work", "ray.connect_timeout_s=5"]
SUBPROCESS_ROWS: list[Row] = [
    Row("train-address-refused", ["train", "$POSE", "--address", "localhost:1", *ADDRESS_SETS],
        r"--address localhost:1: nothing answers at localhost:1 \(.*\); check that `ray start --head` runs there",
        absent=NO_RUN),
    Row("train-address-unresolvable", ["train", "$POSE", "--address", "nosuchhost.invalid:6379", *ADDRESS_SETS],
        r"--address nosuchhost\.invalid:6379: cannot resolve the host name 'nosuchhost\.invalid'", absent=NO_RUN),
    Row("train-address-not-a-port", ["train", "$POSE", "--address", "127.0.0.1:notaport", *ADDRESS_SETS],
        r"--address '127\.0\.0\.1:notaport': expected HOST:PORT of the Ray head node", absent=NO_RUN),
    Row("train-address-auto-no-cluster", ["train", "$POSE", "--address", "auto", *ADDRESS_SETS],
        r"--address auto: no running Ray cluster found on this machine; start one with `ray start --head`",
        absent=NO_RUN),
    Row("info-address-refused", ["info", "--address", "127.0.0.1:1"],
        r"--address 127\.0\.0\.1:1: nothing answers at 127\.0\.0\.1:1"),
]


# ----------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> dict:
    """Read-only inputs shared by all rows: tiny demo sets, checkpoints, a text file, a JPEG."""
    import torch

    from densepred import build_model, load_config, save_checkpoint
    from densepred.tasks.pose.demo_data import make_pose_demo
    from densepred.tasks.segmentation.demo_data import make_seg_demo

    base = tmp_path_factory.mktemp("cli_errors")
    pose = base / "coco"
    make_pose_demo(pose, num_train_images=2, num_val_images=1, seed=3, progress=False)
    seg = base / "cityscapes"
    make_seg_demo(seg, num_train=1, num_val=1, image_size=(64, 32), seed=3, progress=False)
    from densepred.tasks.segmentation.custom_demo import make_custom_seg_demo

    custom = base / "custom_seg"
    make_custom_seg_demo(custom, num_train=2, num_val=1, image_size=64, seed=3, progress=False)
    files = base / "files"
    ckpt = save_checkpoint(files / "pose_demo.pth", build_model(load_config(POSE_TASK, [f"data_root={pose}"])))
    tiny = save_checkpoint(files / "tiny.pth", build_model(TINY_POSE_MODEL))   # another HRNet configuration
    linear = save_checkpoint(files / "linear.pth", torch.nn.Linear(3, 2))     # another model altogether
    text = _write(files / "notes.txt", "these are my notes, not weights\n")
    jpeg = files / "photo.jpg"
    jpeg.write_bytes(sorted((pose / "images" / "val2017").glob("*.jpg"))[0].read_bytes())
    return {"pose": pose, "seg": seg, "ckpt": ckpt, "tiny_ckpt": tiny, "linear_ckpt": linear, "text": text,
            "jpeg": jpeg, "POSE": Path(POSE_TASK), "SEG": Path(SEG_TASK), "MT": Path(MT_TASK),
            "MTMIX": Path(MT_MIXED_TASK), "custom": custom, "CUSTOM": Path(CUSTOM_SEG_TASK)}


@pytest.fixture
def ctx(shared, tmp_path) -> dict:
    work = tmp_path / "work"
    return {**shared, "tmp": tmp_path, "work": work}


def fill(text: str, ctx: dict) -> str:
    return Template(text).substitute({k: str(v) for k, v in ctx.items()})


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def check_error(rc: int, out: str, err: str, row: Row, ctx: dict, budget: str = "") -> None:
    """The platform's rule for bad input."""
    assert "Traceback" not in out + err, f"{row.id}: traceback\n{out}\n{err}"
    assert "weights_only" not in out + err, f"{row.id}: torch's unsafe-load advice leaked\n{err}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{row.id}: expected one error line, got {lines}"
    assert rc == 2, f"{row.id}: exit status {rc} (expected 2){budget}; {lines}"
    assert re.search(row.expected, lines[0]), \
        f"{row.id}: {lines[0]!r} does not match {row.expected!r}"
    for path in row.absent:
        assert not Path(fill(path, ctx)).exists(), f"{row.id}: {fill(path, ctx)} was created"


class Hang(BaseException):
    """Raised by SIGALRM; not an Exception, so that main()'s catch-all does not turn it into a line."""


def _alarm(signum, frame):  # noqa: ARG001
    raise Hang(f"no answer within {TIME_LIMIT_S} s")


# ----------------------------------------------------------------------------- the tests

def test_enough_rows():
    ids = [r.id for r in ROWS + SUBPROCESS_ROWS]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(ids) >= 60
    commands = {r.argv[0] if r.argv[0] != "data" else " ".join(r.argv[:2]) for r in ROWS + SUBPROCESS_ROWS if r.argv}
    assert commands >= {"models", "convert", "train", "tune", "eval", "predict", "data demo", "data browse", "info"}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, ctx, no_ray, capsys, monkeypatch):
    from densepred.cli import main

    if row.setup:
        row.setup(ctx)
    monkeypatch.chdir(ctx["tmp"])              # anything written relative to the cwd is seen below
    before = _tree(ctx["tmp"])
    capsys.readouterr()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIME_LIMIT_S)
    try:
        rc = main([fill(a, ctx) for a in row.argv])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    out, err = capsys.readouterr()
    check_error(rc, out, err, row, ctx)
    empty_ok = {str(Path(fill(p, ctx)).relative_to(ctx["tmp"])) for p in row.empty_ok
                if Path(fill(p, ctx)).is_dir() and not any(Path(fill(p, ctx)).iterdir())}
    created = sorted(_tree(ctx["tmp"]) - before - empty_ok)
    assert not created, f"{row.id}: bad input wrote {created}"


def _subprocess_env(tmp: Path) -> dict[str, str]:
    """No cluster to find: RAY_ADDRESS unset and private, empty temp folders for Ray and Python."""
    private = tmp / "private_tmp"
    private.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=str(private), TMPDIR=str(private), PYTHONUNBUFFERED="1")
    return env


def _start_cli(argv: list[str], tmp: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "densepred.cli", *argv], cwd=REPO, env=_subprocess_env(tmp),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, start: float) -> tuple[Optional[int], str, str, float]:
    """Exit status, stdout, stderr and seconds since ``start``; a process still running
    SUBPROCESS_TIMEOUT_S after ``start`` is killed and its exit status is None (a hang)."""
    try:
        out, err = proc.communicate(timeout=max(0.1, start + SUBPROCESS_TIMEOUT_S - time.monotonic()))
        rc: Optional[int] = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        rc = None
    return rc, out, err, time.monotonic() - start


def _run_cli(argv: list[str], tmp: Path) -> tuple[int, str, str, float]:
    start = time.monotonic()
    return _finish(_start_cli(argv, tmp), start)


def _ray_sessions(tmp: Path) -> list[Path]:
    return sorted((tmp / "private_tmp").glob("**/session_*"))


@pytest.fixture(scope="module")
def address_runs(shared, tmp_path_factory) -> dict:
    """The subprocess rows, started together (each is mostly Python start-up and waiting)."""
    started = {}
    for row in SUBPROCESS_ROWS:
        tmp = tmp_path_factory.mktemp(row.id)
        ctx = {**shared, "tmp": tmp, "work": tmp / "work"}
        if row.setup:
            row.setup(ctx)
        started[row.id] = (ctx, time.monotonic(), _start_cli([fill(a, ctx) for a in row.argv], tmp))
    runs = {}
    try:
        for row_id, (ctx, start, proc) in started.items():
            runs[row_id] = (ctx, _finish(proc, start))
    finally:
        for _ctx, _start, proc in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return runs


@pytest.mark.parametrize("row", SUBPROCESS_ROWS, ids=[r.id for r in SUBPROCESS_ROWS])
def test_bad_address(row: Row, address_runs):
    ctx, (rc, out, err, seconds) = address_runs[row.id]
    assert rc is not None, f"{row.id}: no answer within {SUBPROCESS_TIMEOUT_S} s\n{out}\n{err}"
    check_error(rc, out, err, row, ctx, budget=f" after {seconds:.1f}s")
    assert not _ray_sessions(ctx["tmp"]), f"{row.id}: a Ray session was started"


def test_invalid_optimizer_fails_on_the_driver_in_under_10s(ctx):
    """Acceptance: an invalid optimizer type fails in under 10 s on the driver with one line, and Ray
    never started (no session folder in the private temp folder, no run folder)."""
    argv = ["train", POSE_TASK, "--set", "optimizer.type=Adamm", f"data_root={ctx['pose']}",
            f"work_dir={ctx['work']}"]
    rc, out, err, seconds = _run_cli(argv, ctx["tmp"])
    lines = err.strip().splitlines()
    assert rc == 2, f"exit status {rc} after {seconds:.1f}s (None: no answer)\n{out}\n{err}"
    assert len(lines) == 1 and lines[0].startswith("error: ") and "optimizer.type 'Adamm'" in lines[0], lines
    assert "Traceback" not in out + err
    assert seconds < 10, f"took {seconds:.1f}s"
    assert not _ray_sessions(ctx["tmp"]), "Ray started a session"
    assert not (ctx["work"] / "pose_demo").exists() and not ctx["work"].exists(), "a run folder was created"


# ----------------------------------------------------------------------------- the README table

def readme_case_ids(text: str) -> list[str]:
    """First cells of the table in README.md's subsection `### Every command (tests/test_cli_errors.py)`."""
    section = text.split("## Bad input: what you get", 1)[-1]
    section = section.split("### Every command (tests/test_cli_errors.py)", 1)
    assert len(section) == 2, "README.md: no subsection '### Every command (tests/test_cli_errors.py)'"
    ids, in_table = [], False
    for line in section[1].splitlines():
        line = line.strip()
        if line.startswith("#"):
            break
        if not line.startswith("|"):
            if in_table:
                break
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        if not in_table:
            assert [c.lower() for c in cells] == ["id", "command", "what you get"], cells
            in_table = True
            continue
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            continue
        ids.append(cells[0].strip("`"))
    return ids


def test_readme_lists_every_case():
    listed = readme_case_ids(README.read_text())
    cases = [r.id for r in ROWS + SUBPROCESS_ROWS]
    assert len(listed) == len(set(listed)), "README.md lists a case twice"
    assert not set(cases) - set(listed), f"cases missing from README.md: {sorted(set(cases) - set(listed))}"
    assert not set(listed) - set(cases), f"README.md rows without a case: {sorted(set(listed) - set(cases))}"
