"""The ``platform`` command line. Each subcommand is a small function; errors a user can fix are
printed as one line (``error: ...``) with exit status 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import PlatformError
from .outputs import ensure_out_dir, ensure_out_file

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_model_configs() -> Path:
    return PROJECT_ROOT / "configs" / "models"


# --------------------------------------------------------------------------- models

# Input sizes (H, W) at which `platform models` counts GFLOPs: the official recipes' inputs.
MODEL_INPUT_HW = {"pose": (256, 192), "seg": (1024, 2048)}
BACKBONE_INPUT_HW = {"StackedHourglass": (256, 256)}


def model_input_hw(model_cfg: dict) -> tuple[int, int]:
    """The input size a model config is usually run at: by backbone type, else by head kind."""
    model = model_cfg.get("model") or {}
    backbone = (model.get("backbone") or {}).get("type")
    if backbone in BACKBONE_INPUT_HW:
        return BACKBONE_INPUT_HW[backbone]
    return MODEL_INPUT_HW["seg" if "seg" in (model.get("heads") or {}) else "pose"]


def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from . import backbones, heads  # noqa: F401  (register components)
    from .config import load_config
    from .cost import count_gflops
    from .model import build_model, num_parameters
    from .registry import BACKBONES, HEADS, registered_names

    folder = Path(args.configs)
    if not folder.is_dir():
        raise PlatformError(f"--configs {folder} {'is a file' if folder.exists() else 'does not exist'}; give a "
                            f"folder of model .yaml files (default {default_model_configs()})")
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise PlatformError(f"no model configs (*.yaml) in {folder}; give a folder of model .yaml files with "
                            "--configs")
    print(f"backbones: {', '.join(registered_names(BACKBONES))}")
    print(f"heads:     {', '.join(registered_names(HEADS))}")
    print(f"\nmodel configs in {folder} (GFLOPs of one image, a multiply-add counted as 2):")
    print(f"  {'config':34s} {'parameters':>12s} {'GFLOPs':>9s}  {'input HxW':10s}"
          + ("  outputs" if args.forward else ""))
    for f in files:
        cfg = load_config(f)
        h, w = args.input_size or model_input_hw(cfg)
        # Built and counted on the meta device: shapes only, no arithmetic, so large models cost little.
        with torch.device("meta"):
            meta_model = build_model(cfg)
        gflops = count_gflops(meta_model, (h, w), "meta")
        line = f"  {f.stem:34s} {num_parameters(meta_model):>12,d} {gflops:>9.2f}  {f'{h}x{w}':10s}"
        if args.forward:
            with torch.no_grad():
                out = build_model(cfg).eval()(torch.zeros(1, 3, h, w))
            line += "  " + ", ".join(f"{k}: {list(v.shape)}" for k, v in out.items())
        print(line, flush=True)
    return 0


# --------------------------------------------------------------------------- convert

def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import head_state_dict, load_checkpoint, save_checkpoint
    from .config import load_config

    ensure_out_file(args.out, "OUT")
    cfg = load_config(args.config, args.set)
    model = _model_of(cfg)
    if args.head:
        head_state_dict(model.state_dict(), args.head)  # the head exists, before the checkpoint is read
    report = load_checkpoint(model, args.checkpoint, strict=not args.no_strict)
    print(report.summary())
    for k, why in list(report.skipped.items())[:20]:
        print(f"  skipped {k}: {why}")
    meta = {"source": str(args.checkpoint), "source_format": report.format,
            "config": str(args.config), "model": cfg["model"]}
    state: Any = model
    if args.head:
        state = head_state_dict(model.state_dict(), args.head)
        meta["model"] = {**cfg["model"], "heads": {args.head: cfg["model"]["heads"][args.head]}}
        meta["head"] = args.head
        print(f"kept the backbone and head '{args.head}' ({len(state)} tensors)")
    out = save_checkpoint(args.out, state, meta=meta)
    print(f"wrote {out}")
    return 0



def _model_of(cfg: Any) -> Any:
    """The model of a model config, or of a task config through its task (head sizes left null
    follow the data set: its joints or classes)."""
    from .model import build_model

    if not (cfg.get("task") or {}).get("type"):
        return build_model(cfg)
    from .errors import DataError
    from .tasks.base import build_task

    try:
        return build_task(cfg).build_model()
    except DataError as e:
        raise PlatformError(f"{e} (the model's head size follows the data set, which could not be read: give "
                            "its size, e.g. --set model.heads.pose.num_keypoints=17)") from None


# --------------------------------------------------------------------------- train / eval

def _task_config(args: argparse.Namespace):
    from .config import load_config

    return load_config(args.task, _with_mlflow(args))


def _with_mlflow(args: argparse.Namespace) -> list[str]:
    """The ``--set`` overrides, plus ``tracking.mlflow=true`` for ``--mlflow``."""
    return [*args.set, "tracking.mlflow=true"] if getattr(args, "mlflow", False) else list(args.set)


def _sigterm_as_interrupt() -> None:
    """``kill`` (SIGTERM) of ``platform train`` cleans up like Ctrl-C: workers stop, the run stays resumable."""
    import signal

    def handler(signum, frame):  # noqa: ARG001
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def cmd_train(args: argparse.Namespace) -> int:
    from .engine.launch import train

    _sigterm_as_interrupt()
    cfg = _task_config(args)
    train(cfg, workers=args.workers, use_gpu=args.gpu or None, address=args.address,
          resume=args.resume, storage=args.storage, allow_changes=args.allow_changes)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from .tuning.runner import run_sweep
    from .tuning.space import load_space

    import shlex

    if args.keep_errors and not args.resume:
        raise PlatformError("--keep-errors goes with --resume (continue a sweep without retrying its failed trials)")
    spec = load_space(args.space, _with_mlflow(args), samples=args.samples, concurrent=args.concurrent)
    try:
        run_sweep(spec, address=args.address, storage=args.storage, resume=args.resume, keep_errors=args.keep_errors)
    except KeyboardInterrupt:
        again = " ".join(shlex.quote(a) for a in [args.space, "--resume"]
                         + (["--storage", args.storage] if args.storage else [])
                         + (["--address", args.address] if args.address else [])
                         + (["--mlflow"] if args.mlflow else [])
                         + (["--set", *args.set] if args.set else []))
        print(f"[tune] interrupted: finished trials are kept; continue with: platform tune {again}",
              file=sys.stderr, flush=True)
        return 130
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from .engine.run_index import compare_runs, resolve_run, runs_table

    if len(args.folders) > 2:
        raise PlatformError("platform runs takes a folder (a table of its runs) or two run folders (side by side), "
                            f"got {len(args.folders)} arguments")
    if len(args.folders) == 2:
        print(compare_runs(resolve_run(args.folders[0]), resolve_run(args.folders[1])))
    else:
        print(runs_table(Path(args.folders[0] if args.folders else "work_dirs")))
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    import json

    import torch

    from .checkpoint import load_checkpoint
    from .tasks.base import build_task

    cfg = _task_config(args)
    task = build_task(cfg)
    baselines = _eval_baselines(task, args.baseline)
    out_dir = Path(args.out) if args.out else None
    if args.predictions and args.checkpoint:
        raise PlatformError("give either --checkpoint (run a model) or --predictions (score a results file), "
                            "not both")
    if out_dir is not None:
        ensure_out_dir(out_dir, "--out", create=False)  # created once the evaluation ran
    if args.predictions:
        stats = task.evaluate_file(args.predictions, out_dir)
    else:
        if not args.checkpoint:
            raise PlatformError("give --checkpoint CKPT (a model to run) or --predictions FILE (results to score)")
        model = task.build_model()
        print(load_checkpoint(model, args.checkpoint).summary())
        if not args.eager:
            from .inference import optimize_for_task

            model, plan = optimize_for_task(task, model, getattr(getattr(task, "data", None), "val_batch_size", 1),
                                            precision=args.precision)
            print(plan, flush=True)
        stats = task.evaluate(model, out_dir, torch.device("cpu"),
                              progress=_progress("eval"))
    if baselines:
        stats["delta_m"] = task.delta_m(stats, baselines)
        print(task.format_metrics(stats, baselines))
    else:
        print(task.format_metrics(stats))
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
        safe = {k: (None if isinstance(v, float) and v != v else v) for k, v in stats.items()}  # NaN -> null
        (out_dir / "metrics.json").write_text(json.dumps(safe, indent=2))
        print(f"wrote {out_dir / 'metrics.json'}")
    return 0


def _eval_baselines(task: Any, items: list[str]) -> dict[str, float]:
    """Single-task figures for Δm: ``task.baselines`` plus ``--baseline`` items (multi-task only)."""
    if not hasattr(task, "members"):
        if items:
            raise PlatformError("--baseline applies to multi-task configs (task.type: MultiTask)")
        return {}
    from .tasks.multitask.baselines import check_baselines, parse_baselines

    baselines = parse_baselines(items, task)
    check_baselines(baselines, task.metric_names)
    return baselines


def cmd_info(args: argparse.Namespace) -> int:
    from .sysinfo import describe_system

    for line in describe_system(args.address):
        print(line)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_bench
    from .bench.official import official_repo

    official = official_repo(args.official_repo)  # checked before anything is measured
    for item in args.checkpoints or []:
        ckpt = Path(item) / "best.pth" if Path(item).is_dir() else Path(item)
        if not ckpt.is_file() or not (ckpt.parent / "config.yaml").is_file():
            raise PlatformError(f"--checkpoints {item}: give a trained run folder (with best.pth and config.yaml) "
                                "or a checkpoint file inside one")
    if args.out:
        if Path(args.out).is_dir():
            raise PlatformError(f"--out {args.out} is a folder; give a JSON file name, e.g. "
                                f"{Path(args.out) / 'bench.json'}")
        ensure_out_file(args.out, "--out")
    result, _, _ = run_bench(quick=args.quick, only=args.only, out=Path(args.out) if args.out else None,
                             official_repo=official, checkpoints=[Path(c) for c in args.checkpoints or []] or None)
    return 1 if result["errors"] else 0


def _progress(label: str):
    def show(done: int, total: int) -> None:
        if done == total or done % max(1, total // 10) == 0:
            print(f"  {label} {done}/{total}", flush=True)
    return show


# --------------------------------------------------------------------------- data

#: ``platform data demo --task`` values (besides ``all``): what each writes and where
DEMO_SETS = ("pose", "mpii", "seg", "custom-pose", "custom-seg", "scenes")
#: default training images of the street scenes: with 60 the 1000-iteration recipe over-fitted
#: (val mIoU 0.619 against 0.650 with 400, README "Results"); 400 take about 17 s to write
SEG_DEMO_TRAIN = 400
CUSTOM_SEG_DEMO_TRAIN = 60


def _demo_writers(args: argparse.Namespace) -> dict[str, tuple[str, str, Callable[[Path], dict]]]:
    """--task name -> (what it is, folder under --out, writer)."""
    from .tasks.dense.scenes_demo import make_scenes_demo
    from .tasks.pose.custom_demo import make_custom_pose_demo
    from .tasks.pose.demo_data import make_pose_demo
    from .tasks.pose.mpii_demo import make_mpii_demo
    from .tasks.segmentation.custom_demo import make_custom_seg_demo
    from .tasks.segmentation.demo_data import make_seg_demo

    return {
        "pose": ("pose demo (COCO keypoint format)", "coco", lambda d: make_pose_demo(
            d, num_train_images=args.pose_train, num_val_images=args.pose_val, seed=args.seed)),
        "mpii": ("pose demo (MPII layout)", "mpii", lambda d: make_mpii_demo(
            d, num_train_persons=args.mpii_train, num_val_persons=args.mpii_val, seed=args.seed)),
        "seg": ("segmentation demo (Cityscapes layout)", "cityscapes", lambda d: make_seg_demo(
            d, num_train=args.seg_train or SEG_DEMO_TRAIN, num_val=args.seg_val, image_size=tuple(args.seg_size),
            seed=args.seed)),
        "custom-pose": ("keypoints of your own (robot arms, COCO format)", "custom_pose", lambda d: make_custom_pose_demo(
            d, num_train=args.pose_train, num_val=args.pose_val, seed=args.seed)),
        "custom-seg": ("segmentation demo with its own classes (folders layout)", "custom_seg",
                       lambda d: make_custom_seg_demo(d, num_train=args.seg_train or CUSTOM_SEG_DEMO_TRAIN,
                                                      num_val=args.seg_val, seed=args.seed)),
        "scenes": ("indoor scenes: segmentation, depth, normals, boundaries (NYUD-v2 layout)", "scenes",
                   lambda d: make_scenes_demo(d, num_train=args.scenes_train, num_val=args.scenes_val, seed=args.seed)),
    }


def cmd_data_demo(args: argparse.Namespace) -> int:
    out = ensure_out_dir(args.out)
    for name, (what, folder, write) in _demo_writers(args).items():
        if args.task in ("all", name):
            summary = write(out / folder)
            print(f"{what}: {out / folder}  {_short_summary(summary)}", flush=True)
    return 0


def cmd_data_convert_labels(args: argparse.Namespace) -> int:
    """Colour-coded label images -> index PNGs through the palette of a class list."""
    from .tasks.segmentation.class_info import load_class_info
    from .tasks.segmentation.convert_labels import convert_folder, list_label_images

    info = load_class_info(args.palette, "--palette")
    src, out = Path(args.src), Path(args.out)
    list_label_images(src, out.resolve())  # the input is good before anything is written
    print(convert_folder(src, ensure_out_dir(out, "OUT_FOLDER"), info).describe(out, info))
    return 0


def _short_summary(summary: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in summary.items() if isinstance(v, (int, float)))


def cmd_data_browse(args: argparse.Namespace) -> int:
    from .tasks.base import build_task

    task = build_task(_task_config(args))
    written = task.browse(args.split, ensure_out_dir(args.out, create=False), args.limit)
    print(f"wrote {written} samples to {args.out}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    """Read every file of the configured splits and report what would break or weaken training."""
    from .datacheck import DataReport
    from .engine.loop import TrainSettings
    from .config import parse_section
    from .tasks.base import build_task

    cfg = _task_config(args)
    task = build_task(cfg)
    task.preflight()
    report = DataReport(max_fault_fraction=parse_section(cfg, "train", TrainSettings).max_fault_fraction)
    task.check_data(report, full=True)
    for line in report.info:
        print(f"  {line}")
    for line in report.warnings:
        print(f"warning: {line}")
    for line in report.listed_errors():
        print(f"error: {line}", file=sys.stderr)
    print(f"data check of {args.task}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    return 2 if report.errors else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .tasks.base import build_task

    task = build_task(_task_config(args))

    def load_model():
        # Called by the task once the input, --out and the options are checked: mistakes there fail
        # in a second instead of after reading a large checkpoint.
        model = task.build_model()
        print(load_checkpoint(model, args.checkpoint).summary())
        if not args.eager:
            from .inference import optimize_for_task

            model, plan = optimize_for_task(task, model, precision=args.precision)
            print(plan, flush=True)
        return model

    task.predict(load_model, args.input, Path(args.out), boxes=args.boxes, det_thr=args.det_thr,
                 kpt_thr=args.kpt_thr, max_megapixels=args.max_pixels, detector=args.detector)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .export import export_and_check, require_onnx
    from .tasks.base import build_task

    require_onnx()  # before anything slow: without the packages nothing can be written
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else checkpoint.with_suffix(".onnx")
    if out.is_dir():
        raise PlatformError(f"--out {out} is a folder; give a file name, e.g. {out / (checkpoint.stem + '.onnx')}")
    ensure_out_file(out, "--out")
    task = build_task(_task_config(args))
    model = task.build_model()
    print(load_checkpoint(model, checkpoint).summary())
    h, w = task.cost_input_size()
    batch = "N" if args.dynamic_batch else 1
    print(f"exporting {args.format.upper()} for input image ({batch}, 3, {h}, {w})", flush=True)
    print(export_and_check(model, (h, w), out, dynamic_batch=args.dynamic_batch).describe())
    return 0


# --------------------------------------------------------------------------- parser

def count(lo: int, hi: Optional[int] = None) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"must be >= {lo}" + (f" and <= {hi}" if hi is not None else "")
                                             + f", got {value}")
        return value
    return parse


class OneLineParser(argparse.ArgumentParser):
    """argparse with the platform's error style: one ``error:`` line (no usage block), exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        message = message.replace("argument ", "", 1) if message.startswith("argument ") else message
        message = message.replace(": ", " ", 1) if message.startswith("-") else message
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def untangle_set(argv: list[str]) -> list[str]:
    """``--set`` (and ``--baseline``) take several KEY=VALUE; a task file written after them
    (``train --set a=1 tasks/x.yaml``) would be swallowed as one more. Such paths are moved behind ``--``."""
    out, moved, in_set = [], [], False
    for tok in argv:
        if tok == "--":
            break
        if tok in ("--set", "--baseline"):
            in_set = True
        elif tok.startswith("-"):
            in_set = False
        elif in_set and "=" not in tok and (tok.endswith((".yaml", ".yml")) or os.path.exists(tok)):
            moved.append(tok)
            continue
        out.append(tok)
    rest = argv[len(out) + len(moved):]
    return out + (["--"] + moved if moved else []) + rest


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config values (YAML syntax), e.g. --set train.epochs=5 "
                        "model.backbone.width=18; repeatable")


def _add_info_command(sub: argparse._SubParsersAction) -> None:
    """`platform info`."""
    p = sub.add_parser("info", help="versions, CPU features and chosen precision, GPUs, Ray cluster resources",
                       description="Print what the platform runs on: package versions, the CPU's features and "
                                   "the precision and threads training would choose, GPUs, and (with "
                                   "--address) the resources of a Ray cluster.")
    p.add_argument("--address", default=None, help="also show the resources of this Ray cluster (or auto)")
    p.set_defaults(func=cmd_info)


def _add_models_command(sub: argparse._SubParsersAction) -> None:
    """`platform models`."""
    p = sub.add_parser("models", help="list registered components and model configs with parameter counts",
                       description="List registered backbones and heads and every model config "
                                   "with its parameter count (optionally run a forward pass).")
    p.add_argument("--configs", default=str(default_model_configs()), help="folder of model YAML files")
    p.add_argument("--forward", action="store_true", help="also run a forward pass and print output shapes")
    p.add_argument("--input-size", nargs=2, type=count(1, 8192), default=None, metavar=("H", "W"),
                   help="input size for GFLOPs and --forward (default: each model's usual input: pose "
                        "256 192, hourglass 256 256, segmentation 1024 2048)")
    p.set_defaults(func=cmd_models)


def _add_convert_command(sub: argparse._SubParsersAction) -> None:
    """`platform convert`."""
    p = sub.add_parser("convert", help="write an official / mmpose / mmseg checkpoint as a platform checkpoint",
                       description="Load a checkpoint in any supported format (official HRNet pose or "
                                   "segmentation, ImageNet HRNet, mmpose, mmseg) into the model of CONFIG "
                                   "and save it in the platform's own format.")
    p.add_argument("config", help="model or task YAML describing the architecture")
    p.add_argument("checkpoint", help="checkpoint to convert")
    p.add_argument("out", help="output .pth path")
    p.add_argument("--no-strict", action="store_true", help="load what fits instead of failing on mismatches")
    p.add_argument("--head", metavar="NAME",
                   help="keep only this head (and the backbone): a multi-task checkpoint's single-task part, "
                        "loadable with that member's own task file")
    _add_set(p)
    p.set_defaults(func=cmd_convert)


def _add_train_command(sub: argparse._SubParsersAction) -> None:
    """`platform train`."""
    p = sub.add_parser("train", help="train a task on Ray Train workers",
                       description="Train TASK (a task YAML) with Ray Train: a local Ray instance by default, "
                                   "an existing cluster with --address. Re-running the same run name resumes.")
    p.add_argument("task", help="task YAML, e.g. tasks/pose_coco.yaml")
    p.add_argument("--workers", type=count(1), default=None, help="number of Ray Train workers (default: ray.workers)")
    p.add_argument("--gpu", action="store_true", help="one GPU per worker (AMP fp16)")
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. 10.0.0.1:6379 or auto")
    p.add_argument("--resume", action="store_true", help="continue the run named by run_name (error if absent)")
    p.add_argument("--storage", default=None,
                   help="folder for run folders (checkpoints, logs); on a cluster a path every node mounts "
                        "(default: ray.storage or work_dir)")
    p.add_argument("--allow-changes", action="store_true",
                   help="with --resume: continue a run although its config changed (the changes are listed)")
    p.add_argument("--mlflow", action="store_true",
                   help="log the run to MLflow (tracking.mlflow: true; store: tracking.tracking_uri or "
                        "<work_dir>/mlflow.db)")
    _add_set(p)
    p.set_defaults(func=cmd_train)


def _add_tune_command(sub: argparse._SubParsersAction) -> None:
    """`platform tune`."""
    p = sub.add_parser("tune", help="search backbone widths, fusion settings and hyperparameters with Ray Tune",
                       description="Run the sweep described by SPACE (a search-space YAML in tuning/): each trial "
                                   "is an ordinary Ray Train run of the task with sampled values. Results "
                                   "(results.csv, best.yaml, summary.md, pictures) go to "
                                   "<work_dir or --storage>/tune/<space name>/.")
    p.add_argument("space", help="search-space YAML, e.g. tuning/pose_hrnet_width_fusion.yaml")
    p.add_argument("--samples", type=count(1), default=None, help="number of trials (default: search.samples)")
    p.add_argument("--concurrent", type=count(1), default=None,
                   help="trials at once (default: resources.concurrent)")
    p.add_argument("--address", default=None, help="Ray cluster address, e.g. 10.0.0.1:6379 or auto")
    p.add_argument("--storage", default=None, help="folder for the sweep (default: the task's work_dir); on a "
                                                   "cluster a path every node mounts")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted sweep: unfinished and failed trials run again (their run folders "
                        "resume from their last checkpoints)")
    p.add_argument("--keep-errors", action="store_true", help="with --resume: do not retry failed trials")
    p.add_argument("--mlflow", action="store_true",
                   help="log the sweep to MLflow: one parent run, one child run per trial (store: "
                        "tracking.tracking_uri or <work_dir or --storage>/mlflow.db)")
    _add_set(p)
    p.set_defaults(func=cmd_tune)


def _add_runs_command(sub: argparse._SubParsersAction) -> None:
    """`platform runs`."""
    p = sub.add_parser("runs", help="list the runs under a folder, or compare two runs",
                       description="With no argument or one FOLDER (default work_dirs): one table of the run folders "
                                   "under it (sweep trials included): task, backbone, epochs done, best metric, "
                                   "status (running / finished / failed / interrupted / stopped), time. With two run "
                                   "folders A B: both side by side, with the config keys that differ and their "
                                   "final metrics.")
    p.add_argument("folders", nargs="*", metavar="FOLDER", help="a folder of runs, or two run folders (paths, or "
                                                                 "names inside work_dirs)")
    p.set_defaults(func=cmd_runs)


def _add_eval_command(sub: argparse._SubParsersAction) -> None:
    """`platform eval`."""
    p = sub.add_parser("eval", help="evaluate a checkpoint or a results file",
                       description="Evaluate a model checkpoint on the task's validation split, or score a "
                                   "results file (COCO keypoint results JSON) against the task's annotations.")
    p.add_argument("task", help="task YAML")
    p.add_argument("--checkpoint", help="checkpoint (any supported format)")
    p.add_argument("--predictions", help="results file to score instead of running a model")
    p.add_argument("--out", help="folder for metrics.json and the results")
    p.add_argument("--baseline", action="extend", nargs="+", default=[], metavar="ITEM",
                   help="multi-task runs: single-task figures for Δm, as MEMBER=RUN_DIR, "
                        "MEMBER=metrics.json or MEMBER/METRIC=NUMBER (e.g. pose=work_dirs/pose_demo)")
    _add_eager(p)
    _add_set(p)
    p.set_defaults(func=cmd_eval)


def _add_predict_command(sub: argparse._SubParsersAction) -> None:
    """`platform predict`."""
    p = sub.add_parser("predict", help="run a model on images, a folder or a video and draw the results",
                       description="Predict on an image, a folder of images (searched recursively) or a video. "
                                   "Pose writes results.json (COCO format), images.json, boxes.json and "
                                   "pictures; segmentation writes labelId PNGs and overlays (an overlay video "
                                   "for a video); person masks write COCO RLE results and mask pictures. A "
                                   "multi-task config draws every head on one picture and writes each member's "
                                   "results in OUT/<member>/. Person boxes come from --boxes, else from OpenCV's "
                                   "HOG people detector. Unreadable or too large files in a folder are skipped "
                                   "and listed in skipped.txt.")
    p.add_argument("task", help="task YAML")
    p.add_argument("--checkpoint", required=True, help="checkpoint (any supported format)")
    p.add_argument("--input", required=True, help="image, folder of images, or video (.mp4 .avi .mov .mkv .webm)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--boxes", help="pose: person detections (COCO results JSON; image_id = file stem or "
                                   "frame index); without it OpenCV's HOG people detector proposes boxes")
    p.add_argument("--det-thr", type=float, default=None, metavar="T",
                   help="pose: use boxes scoring >= T, 0..1 (default: data.det_score_thr of the config)")
    p.add_argument("--kpt-thr", type=float, default=None, metavar="T",
                   help="pose: draw keypoints whose confidence is above T, 0..1 (default 0.3)")
    p.add_argument("--detector", choices=["hog", "whole"], default=None,
                   help="pose without --boxes: hog (default; whole image where it finds nobody) or whole "
                        "(each image is one person box, for single-person crops)")
    p.add_argument("--max-pixels", type=float, default=None, metavar="MP",
                   help="refuse images larger than MP megapixels (default 40); in a folder they are skipped")
    _add_eager(p)
    _add_set(p)
    p.set_defaults(func=cmd_predict)


def _add_export_command(sub: argparse._SubParsersAction) -> None:
    """`platform export`."""
    p = sub.add_parser("export", help="export a checkpoint as ONNX and check it with ONNX Runtime",
                       description="Export the task's model with a checkpoint's weights as ONNX (opset 17; input "
                                   "`image`, one output per head) for the task's network input size, then run it "
                                   "with ONNX Runtime on a random input and print the max abs difference to "
                                   "PyTorch and the file size. Needs the export extra: pip install '.[export]'.")
    p.add_argument("task", help="task YAML")
    p.add_argument("--checkpoint", required=True, help="checkpoint (any supported format)")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="output format (default onnx)")
    p.add_argument("--out", help="output file (default: <checkpoint stem>.onnx next to the checkpoint)")
    p.add_argument("--dynamic-batch", action="store_true",
                   help="leave the batch size free (default: fixed to 1)")
    _add_set(p)
    p.set_defaults(func=cmd_export)


def _add_eager(p: argparse.ArgumentParser) -> None:
    p.add_argument("--eager", action="store_true",
                   help="run the model as built (default: BatchNorm folded, and channels_last / bf16 / ONNX "
                        "Runtime where a short measurement shows them faster; the choice is printed and cached)")
    p.add_argument("--precision", choices=["auto", "fp32"], default=None,
                   help="auto (default, inference.precision): bf16 on a native-bf16 CPU (fp16 on a GPU) where the "
                        "task's decoded outputs on validation samples agree with fp32; fp32: never reduced")


def _add_data_command(sub: argparse._SubParsersAction) -> None:
    """`platform data demo|browse|check`."""
    p = sub.add_parser("data", help="make demo data or inspect a task's samples",
                       description="Data tools: `data demo` writes the synthetic datasets, `data browse` "
                                   "draws and dumps what the network sees.")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    q = dsub.add_parser("demo", help="write the synthetic demo datasets (COCO keypoints, MPII, Cityscapes layouts)",
                        description="Write small synthetic datasets in the official formats under OUT.")
    q.add_argument("--out", default="data/demo", help="output folder (default data/demo)")
    q.add_argument("--task", choices=["all", *DEMO_SETS], default="all",
                   help="which demo set(s) to write: pose (COCO keypoints), mpii (MPII layout), seg (Cityscapes), "
                        "custom-pose (robot arms: a COCO-format set with a 6-joint skeleton of its own, under "
                        "custom_pose/), custom-seg (a folders-layout set with 5 classes of its own, under custom_seg/), "
                        "scenes (ray-cast indoor rooms with segmentation, depth, normals and boundaries in the "
                        "NYUD-v2 multi-task layout, under scenes/)")
    q.add_argument("--pose-train", type=count(1, 100000), default=300, help="pose training images")
    q.add_argument("--pose-val", type=count(1, 100000), default=60, help="pose validation images")
    q.add_argument("--mpii-train", type=count(1, 100000), default=300, help="MPII training persons")
    q.add_argument("--mpii-val", type=count(1, 100000), default=60, help="MPII validation persons")
    q.add_argument("--seg-train", type=count(1, 100000), default=None,
                   help=f"segmentation training images (default {SEG_DEMO_TRAIN} street scenes for seg, "
                        f"{CUSTOM_SEG_DEMO_TRAIN} for custom-seg)")
    q.add_argument("--seg-val", type=count(1, 100000), default=20, help="segmentation validation images")
    q.add_argument("--seg-size", type=count(32, 4096), nargs=2, default=[256, 128], metavar=("W", "H"),
                   help="segmentation image size (default 256 128: Cityscapes' 2:1 at 1/8 scale)")
    q.add_argument("--scenes-train", type=count(1, 100000), default=200, help="indoor scenes training images")
    q.add_argument("--scenes-val", type=count(1, 100000), default=50, help="indoor scenes validation images")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=cmd_data_demo)
    q = dsub.add_parser("browse", help="write pictures and .npz of the samples a task feeds the network",
                        description="For each sample write a picture (crop, target heatmaps, keypoints) and "
                                    "an .npz with the network input crop (uint8 RGB), targets, weights, "
                                    "center and scale.")
    q.add_argument("task", help="task YAML")
    q.add_argument("--split", choices=["train", "val"], default="val")
    q.add_argument("--out", required=True, help="output folder")
    q.add_argument("--limit", type=count(1), default=20, help="number of samples (default 20)")
    _add_set(q)
    q.set_defaults(func=cmd_data_browse)
    q = dsub.add_parser("check", help="read a task's data and report what would break or weaken training",
                        description="Read every file of the task's training and validation splits without "
                                    "training and print a short report: samples, images, missing or unreadable "
                                    "files, annotation problems. Problems that would break training are errors "
                                    "(exit status 2); `platform train` runs the quick part of the same checks "
                                    "before Ray starts.")
    q.add_argument("task", help="task YAML")
    _add_set(q)
    q.set_defaults(func=cmd_data_check)
    q = dsub.add_parser("convert-labels", help="colour-coded (RGB) segmentation labels -> index PNGs",
                        description="Convert every colour label image under SRC_FOLDER (.png .bmp .tif, searched "
                                    "recursively) into a single-channel index PNG under OUT_FOLDER (same relative "
                                    "path), through the palette of a class list. Colours not in the palette become "
                                    "ignored pixels; they are counted and reported.")
    q.add_argument("src", metavar="SRC_FOLDER", help="folder of colour-coded label images")
    q.add_argument("out", metavar="OUT_FOLDER", help="folder for the index PNGs")
    q.add_argument("--palette", required=True, metavar="CLASS_INFO",
                   help="the class list whose palette the colours follow: a shipped name (cityscapes, "
                        "pascal_context, lip, ade20k) or a class_info .yaml file")
    q.set_defaults(func=cmd_data_convert_labels)


def _add_bench_command(sub: argparse._SubParsersAction) -> None:
    """`platform bench`."""
    from .bench import SECTIONS

    p = sub.add_parser("bench", help="measure this machine: peak FLOP/s, training and inference speed, data, eval",
                       description="Measure, in one run: the machine's matmul/convolution peak, training-step and "
                                   "inference throughput of the HRNet models (as fractions of that peak), the data "
                                   "pipelines against JPEG/PNG decoding, evaluation time and `platform train` "
                                   "start-up. Prints a table, writes JSON and a chart (.png next to it).")
    p.add_argument("--quick", action="store_true",
                   help="reduced inputs and repeats (about 2 minutes on 2 cores); skips startup")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="JSON file (default benchmarks/results/<YYYY-MM-DD>-<machine id>.json)")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=None, metavar="SECTION",
                   help=f"run only these sections ({', '.join(SECTIONS)}); train and infer also run peak")
    p.add_argument("--checkpoints", nargs="+", default=None, metavar="RUN",
                   help="trained run folders (or checkpoints beside their config.yaml) whose inference paths the "
                        "paths section compares by AP/mIoU and latency (default: work_dirs/pose_demo and "
                        "work_dirs/seg_demo)")
    p.add_argument("--official-repo", default=None, metavar="PATH",
                   help="checkout of the official HRNet pose code (git clone https://github.com/leoxiaobin/"
                        "deep-high-resolution-net.pytorch; default $DENSEPRED_OFFICIAL_HRNET): the train section "
                        "also times its fp32 W32 step and reports our speed-up over it")
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = OneLineParser(
        prog="platform",
        description="HRNet-family dense prediction: pose (COCO) and segmentation (Cityscapes) "
                    "on Ray Train.")
    parser.add_argument("--version", action="version", version=f"densepred {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in (_add_info_command, _add_models_command, _add_convert_command, _add_train_command,
                     _add_tune_command, _add_runs_command, _add_eval_command, _add_predict_command, _add_data_command,
                     _add_bench_command, _add_export_command, *EXTRA_COMMANDS):
        register(sub)
    return parser


# Later modules (training, evaluation, data tools) add their subcommands here.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = build_parser()
    try:
        args = parser.parse_args(untangle_set(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as e:  # --help, --version, or a usage error already printed on one line
        return int(e.code or 0) if not isinstance(e.code, str) else 2
    try:
        return int(args.func(args) or 0)
    except PlatformError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line for the user, the traceback in a file for the report
        where = _save_traceback()
        print(f"error: internal error: {type(e).__name__}: {_one_line(e)[:300]} (full traceback in {where}; "
              "please report it)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _save_traceback() -> str:
    import tempfile
    import time
    import traceback

    folder = Path(tempfile.gettempdir()) / "densepred-errors"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    path.write_text(traceback.format_exc())
    return str(path)


def run() -> None:
    """Console entry point: ``main()``, then leave without interpreter finalization once Ray was
    used. Ray's native threads (and the helper threads that join or fit with it) can crash the
    interpreter while it tears down, turning a clean exit status into a segfault; Ray is shut down
    explicitly first, so nothing is left behind."""
    code = main()
    ray = sys.modules.get("ray")
    if ray is None:
        sys.exit(code)
    try:
        if ray.is_initialized():
            ray.shutdown()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    run()
