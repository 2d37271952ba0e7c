"""The multi-task comparison tables: single-task models against joint models trained with the
same budget on a demo set, compared the way multi-task papers do (each metric, Δm against the
single-task models, cost). Two suites:

``--suite pose_mask`` (default): single-task pose, single-task person mask and the joint pose + mask
model on the pose demo set, with parameters, GFLOPs and inference speed.

    python benchmarks/multitask_table.py [--epochs 30] [--data data/demo/coco]
        [--out benchmarks/results/multitask_table.json]

``--suite scenes``: the four single-task scenes recipes (tasks/{seg,depth,normals,boundary}_scenes_demo.yaml)
and tasks/mtl_scenes_demo.yaml with equal weights, the recipe's fixed weights, a weighting method
(DB-MTL) and two TorchJD aggregators (UPGrad, MGDA), all with the budget of
configs/schedules/scenes_demo.yaml (or ``--iters N`` for every run), with training time per step
and each balancing's extra cost per step over equal weights.

    python benchmarks/multitask_table.py --suite scenes [--iters 800] [--runs seg,depth,equal,...]
        [--data data/demo/scenes] [--out benchmarks/results/multitask_scenes_table.json]

Trains the runs one after the other on one local Ray instance (1 worker each); a run whose folder
is complete is not trained again, and with ``--runs`` the other runs' complete folders (same
work dir and budget) still fill their rows. Reads each run's evaluation from ``logs/metrics.jsonl``
(pose_mask: the best; scenes: the final one, as every run ends on the same schedule), prints a
Markdown table and writes everything to --out.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
RUNS = {"pose": "pose_demo.yaml", "mask": "person_mask_demo.yaml", "joint": "multitask_demo.yaml"}

# scenes suite: each member's figure in Δm (its primary metric), the figures the table shows,
# and the joint runs: name -> (row label, task.balancing; None keeps the recipe's fixed weights)
SCENES_MEMBERS = {"seg": "mIoU", "depth": "rmse", "normals": "mean_angle", "boundary": "odsF"}
SCENES_SHOWN = ("seg/mIoU", "depth/rmse", "depth/abs_rel", "normals/mean_angle", "boundary/odsF")
SCENES_JOINT = {
    "equal": ("equal weights (fixed, all 1)", "{type: fixed, weights: {seg: 1, depth: 1, normals: 1, boundary: 1}}"),
    "recipe": ("recipe's fixed weights (1 / 1 / 5 / 20)", None),
    "db_mtl": ("DB-MTL (weighting)", "{type: db_mtl}"),
    "upgrad": ("UPGrad (TorchJD aggregator)", "{type: aggregator, aggregator: upgrad}"),
    "mgda": ("MGDA (TorchJD aggregator)", "{type: aggregator, aggregator: mgda}"),
}
SCENES_RUNS = (*SCENES_MEMBERS, *SCENES_JOINT)
SCENES_SCHEDULE = REPO / "configs" / "schedules" / "scenes_demo.yaml"


def ensure_data(root: Path) -> Path:
    """The pose demo set under ``root``, written if absent."""
    if not (root / "annotations").is_dir():
        from densepred.tasks.pose.demo_data import make_pose_demo

        make_pose_demo(root, progress=False)
    return root


def ensure_scenes_data(root: Path) -> Path:
    """The synthetic scenes set (NYUD-v2 layout) under ``root``, written if absent."""
    if not (root / "classes.yaml").is_file():
        from densepred.tasks.dense.scenes_demo import make_scenes_demo

        make_scenes_demo(root, progress=False)
    return root


def run_overrides(name: str, root: Path, work_dir: Path, epochs: int) -> list[str]:
    """``--set`` items of pose_mask run ``name``."""
    common = [f"work_dir={work_dir}", f"train.epochs={epochs}", f"run_name=table_{name}"]
    if name == "joint":
        return common + [f"task.members.{m}.data_root={root}" for m in ("pose", "mask")]
    if name == "pose":  # the joint run's pose member: the 30-epoch stride-4 recipe and the joint model's head
        common += ["data.batch_size=32", "data.decoding=argmax", "scheduler.milestones=[20,26]",
                   "evaluation.interval=5", "data.heatmap_size=[24,32]", "data.sigma=2.0",
                   "data.augment.shift_factor=0.0", "model.backbone.stem_channels=64",
                   "model.heads.pose={type: HeatmapHead, num_keypoints: 17}"]
    return common + [f"data_root={root}"]


def scenes_run(name: str, root: Path, work_dir: Path, iters: int) -> tuple[str, list[str]]:
    """Task file and ``--set`` items of scenes run ``name``: the data under ``root`` (absolute, so
    the recipes' paths relative to the working directory do not matter), ``iters`` steps, and every
    run on all its CPUs (no thread probe: its choice flips with a neighbour's load, and the table
    compares seconds per step)."""
    common = [f"work_dir={work_dir}", f"run_name=scenes_{name}_{iters}it", f"train.iters={iters}",
              "train.thread_probe=false"]
    class_info = root / "classes.yaml"
    if name in SCENES_MEMBERS:
        data = [f"data_root={root}"] + ([f"data.class_info={class_info}"] if name == "seg" else [])
        return f"{name}_scenes_demo.yaml", common + data
    balancing = SCENES_JOINT[name][1]
    data = [f"task.members.{m}.data_root={root}" for m in SCENES_MEMBERS]
    data.append(f"task.members.seg.data.class_info={class_info}")
    return "mtl_scenes_demo.yaml", common + data + ([f"task.balancing={balancing}"] if balancing else [])


def log_records(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of a run's ``logs/metrics.jsonl``."""
    with open(run_dir / "logs" / "metrics.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def training_time(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Training speed and time of a run from its epoch records (evaluation and start-up excluded),
    with the seconds per optimizer step and the gradient balancing's own figures (ms per step)."""
    train_speed = [r["samples"] / r["epoch_time_s"] for r in records if r.get("samples")]
    train_time = sum(r.get("epoch_time_s", 0.0) for r in records)
    steps = max((r.get("step", 0) for r in records), default=0)
    out = {"train_img_s": sum(train_speed) / len(train_speed) if train_speed else None,
           "train_time_s": train_time, "steps": steps, "s_per_step": train_time / steps if steps else None,
           "startup_s": records[0].get("startup_s") if records else None,
           "eval_time_s": sum(r.get("eval_time_s", 0.0) for r in records)}
    for key in ("jac_ms", "agg_ms"):  # jac_ms: per batch, agg_ms: per step (aggregation.py)
        values = [r[key] for r in records if isinstance(r.get(key), (int, float))]
        out[key] = sum(values) / len(values) if values else None
    return out


def eval_record(run_dir: Path, metric: str, final: bool = False) -> dict[str, Any]:
    """The evaluated epoch with the highest ``metric`` (``final``: the last evaluated epoch, the end
    of the schedule), with the run's training time."""
    records = log_records(run_dir)
    evaluated = [r for r in records if isinstance(r.get(metric), (int, float))]
    chosen = evaluated[-1] if final else max(evaluated, key=lambda r: r[metric])
    return {**chosen, **training_time(records)}


def infer_throughput(models: dict[str, list[torch.nn.Module]], size_hw: tuple[int, int], batch: int = 32,
                     rounds: int = 5) -> dict[str, float]:
    """Images/s of each entry (one model, or several run one after the other on the same batch),
    measured in alternating rounds so that a busy neighbour slows them all alike."""
    x = torch.randn(batch, 3, *size_hw)
    times = {k: [] for k in models}
    with torch.no_grad():
        for ms in models.values():
            for m in ms:
                m.eval()(x)                          # warm-up
        for _ in range(rounds):
            for key, ms in models.items():
                t0 = time.perf_counter()
                for m in ms:
                    m(x)
                times[key].append(time.perf_counter() - t0)
    return {k: batch / sorted(v)[len(v) // 2] for k, v in times.items()}


def train_all(specs: dict[str, tuple[str, list[str]]]) -> dict[str, Any]:
    """Train each run ``{name: (task file under tasks/, --set items)}`` one after the other on one
    local Ray instance, 1 worker each (a complete run folder is not trained again)."""
    from densepred import load_config
    from densepred.engine.launch import shutdown_ray, train

    out = {}
    try:
        for name, (task_file, overrides) in specs.items():
            t0 = time.time()
            cfg = load_config(REPO / "tasks" / task_file, overrides)
            summary = train(cfg, workers=1)
            out[name] = {"config": cfg, "run_dir": summary["run_dir"], "best_checkpoint": summary["best_checkpoint"],
                         "wall_s": time.time() - t0}
    finally:
        shutdown_ray()
    return out


def measure(runs: dict[str, Any]) -> dict[str, Any]:
    """Metrics of each run's best epoch, Δm of the joint model, parameters, GFLOPs, throughput."""
    from densepred import load_checkpoint
    from densepred.cost import count_gflops, count_params
    from densepred.tasks.base import build_task

    pose = eval_record(Path(runs["pose"]["run_dir"]), "AP")
    mask = eval_record(Path(runs["mask"]["run_dir"]), "mIoU")
    joint = eval_record(Path(runs["joint"]["run_dir"]), "pose/AP")
    baselines = {"pose/AP": pose["AP"], "mask/mIoU": mask["mIoU"]}
    tasks = {k: build_task(r["config"]) for k, r in runs.items()}
    delta = tasks["joint"].delta_m(joint, baselines)
    models = {}
    for key, task in tasks.items():
        models[key] = task.build_model()
        load_checkpoint(models[key], runs[key]["best_checkpoint"])
    size = tasks["joint"].cost_input_size()
    cost = {k: {"params": count_params(m), "gflops": count_gflops(m, size)} for k, m in models.items()}
    speed = infer_throughput({"joint": [models["joint"]], "two single-task": [models["pose"], models["mask"]],
                              "pose": [models["pose"]]}, size)
    return {"pose": pose, "mask": mask, "joint": joint, "baselines": baselines, "delta_m": delta, "cost": cost,
            "infer_img_s": speed, "input_hw": list(size), "wall_s": {k: r["wall_s"] for k, r in runs.items()}}


def markdown(res: dict[str, Any], epochs: int) -> str:
    c, s = res["cost"], res["infer_img_s"]
    rows = [
        ("single-task pose (HRNet-W16 demo)", f"{res['pose']['AP']:.3f}", "–", "–",
         c["pose"]["params"], c["pose"]["gflops"], s["pose"], res["pose"]["train_img_s"]),
        ("single-task person mask", "–", f"{res['mask']['mIoU']:.3f}", "–",
         c["mask"]["params"], c["mask"]["gflops"], None, res["mask"]["train_img_s"]),
        ("two single-task models together", f"{res['pose']['AP']:.3f}", f"{res['mask']['mIoU']:.3f}", "0 (reference)",
         c["pose"]["params"] + c["mask"]["params"], c["pose"]["gflops"] + c["mask"]["gflops"],
         s["two single-task"], None),
        ("joint pose + mask (one backbone)", f"{res['joint']['pose/AP']:.3f}", f"{res['joint']['mask/mIoU']:.3f}",
         f"{res['delta_m']:+.2f} %", c["joint"]["params"], c["joint"]["gflops"], s["joint"],
         res["joint"]["train_img_s"]),
    ]
    head = ("| model | pose AP | mask mIoU | Δm | parameters | GFLOPs | inference img/s | training img/s |\n"
            "|---|---|---|---|---|---|---|---|")
    lines = [head] + [
        f"| {name} | {ap} | {iou} | {dm} | {params:,} | {gf:.3f} | {'–' if sp is None else f'{sp:.0f}'} | "
        f"{'–' if tr is None else f'{tr:.0f}'} |" for name, ap, iou, dm, params, gf, sp, tr in rows]
    lines.append(f"\n{epochs} epochs each on the demo set, 1 Ray Train worker, 2 CPU cores; best evaluation of "
                 f"each run; inference: batch 32 at {res['input_hw'][0]}x{res['input_hw'][1]}, median of "
                 "interleaved rounds.")
    return "\n".join(lines)


def _num(value: Any, spec: str) -> str:
    """A table cell: ``value`` formatted with ``spec``, or a dash when there is none."""
    return "–" if value is None else format(value, spec)


def scenes_figures(name: str, record: dict[str, Any]) -> dict[str, float]:
    """The table's figures (``<member>/<metric>``) in a run's record; a single-task run has its member's."""
    if name in SCENES_MEMBERS:
        return {k: record[k.split("/", 1)[1]] for k in SCENES_SHOWN if k.startswith(f"{name}/")}
    return {k: record[k] for k in SCENES_SHOWN}


def scenes_measure(run_dirs: dict[str, Path], iters: int, joint_cfg: Any) -> dict[str, Any]:
    """Final evaluation and training time of every complete run, Δm of the joint runs against the
    single-task runs (the platform's MultiTask.delta_m over each member's primary metric) and each
    joint run's extra seconds per step over equal weights."""
    from densepred.engine.run_state import read_status
    from densepred.tasks.base import build_task

    rows: dict[str, dict[str, Any]] = {}
    for name, run_dir in run_dirs.items():
        record = eval_record(run_dir, SCENES_MEMBERS.get(name, "seg/mIoU"), final=True)
        if record["steps"] < iters:
            print(f"[table] {name}: {run_dir} stopped at step {record['steps']} of {iters}; left out")
            continue
        rows[name] = {**{k: v for k, v in record.items() if "/" not in k}, "figures": scenes_figures(name, record),
                      "run_s": (read_status(run_dir) or {}).get("elapsed_s")}  # launch to end, from status.json
    singles = [m for m in SCENES_MEMBERS if m in rows]
    baselines = {f"{m}/{p}": rows[m]["figures"][f"{m}/{p}"] for m, p in SCENES_MEMBERS.items() if m in rows}
    task = build_task(joint_cfg)
    equal = rows.get("equal", {}).get("s_per_step")
    for name in (n for n in SCENES_JOINT if n in rows):
        r = rows[name]
        r["delta_m"] = task.delta_m(r["figures"], baselines) if len(singles) == len(SCENES_MEMBERS) else None
        r["extra_s_per_step"] = r["s_per_step"] - equal if equal and name != "equal" else None
        r["extra_pct"] = 100 * r["extra_s_per_step"] / equal if r["extra_s_per_step"] is not None else None
    single = {"figures": {k: v for m in singles for k, v in rows[m]["figures"].items()},
              "train_time_s": sum(rows[m]["train_time_s"] for m in singles),
              "run_s": sum(rows[m]["run_s"] or 0.0 for m in singles),
              "s_per_step": sum(rows[m]["s_per_step"] for m in singles)} if singles else None
    return {"runs": rows, "single_task": single, "baselines": baselines, "iters": iters}


def scenes_row(label: str, r: dict[str, Any], delta: str, extra: str) -> str:
    """One Markdown row of the scenes table."""
    f = r["figures"]
    cells = [_num(f.get(k), ".2f" if k == "normals/mean_angle" else ".3f") for k in SCENES_SHOWN]
    run = "" if r.get("run_s") is None else f" ({r['run_s'] / 60:.1f})"
    return (f"| {label} | {' | '.join(cells)} | {delta} | {r['train_time_s'] / 60:.1f}{run} | "
            f"{r['s_per_step']:.3f} | {extra} |")


def scenes_markdown(res: dict[str, Any], how: str) -> str:
    """The scenes table: the single-task models together, then each joint run."""
    lines = ["| model | seg mIoU ↑ | depth RMSE ↓ | depth abs-rel ↓ | normals mean angle (°) ↓ "
             "| boundary ODS F ↑ | Δm | training (whole run), min | s/step | extra s/step vs equal weights |",
             "|---" * 10 + "|"]
    if res["single_task"]:
        lines.append(scenes_row("4 single-task models (sum of time and s/step)", res["single_task"],
                                "0 (reference)", "–"))
    for name, r in ((n, r) for n, r in res["runs"].items() if n in SCENES_JOINT):
        extra = "reference" if name == "equal" else "–" if r["extra_s_per_step"] is None else \
            f"{r['extra_s_per_step']:+.3f} ({r['extra_pct']:+.0f} %)"
        delta = "–" if r["delta_m"] is None else f"{r['delta_m']:+.2f} %"
        lines.append(scenes_row(f"joint: {SCENES_JOINT[name][0]}", r, delta, extra))
    gradient = [f"{n} {r['jac_ms']:.0f} + {r['agg_ms']:.0f}" for n, r in res["runs"].items() if r.get("jac_ms")]
    lines.append(f"\n{how}. Final evaluation of each run (the {res['iters']}-step schedule ends every run); Δm over "
                 "seg mIoU, depth RMSE, normals mean angle and boundary ODS F against the single-task runs. "
                 "Training time excludes start-up and evaluation (in brackets: the whole run, launch to end). "
                 "Gradient balancing's own cost, ms per step (per-task backward + aggregation): "
                 f"{', '.join(gradient) or '–'}.")
    return "\n".join(lines)


def run_pose_mask(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The pose_mask suite: train, measure, table."""
    root = ensure_data(Path(args.data or REPO / "data" / "demo" / "coco").resolve())
    work_dir = Path(args.work_dir or REPO / "work_dirs" / "multitask_table").resolve()
    runs = train_all({n: (f, run_overrides(n, root, work_dir, args.epochs)) for n, f in RUNS.items()})
    res = measure(runs)
    return {**res, "epochs": args.epochs}, markdown(res, args.epochs)


def run_scenes(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """The scenes suite: train the selected runs, then measure every complete run of the same budget."""
    from densepred import load_config
    from densepred.engine.loop import run_dir_of

    root = ensure_scenes_data(Path(args.data or REPO / "data" / "demo" / "scenes").resolve())
    work_dir = Path(args.work_dir or REPO / "work_dirs" / "multitask_scenes_table").resolve()
    iters = args.iters or int(load_config(SCENES_SCHEDULE)["train"]["iters"])
    specs = {n: scenes_run(n, root, work_dir, iters) for n in SCENES_RUNS}
    selected = args.runs.split(",") if args.runs else list(SCENES_RUNS)
    unknown = sorted(set(selected) - set(SCENES_RUNS))
    if unknown:
        raise SystemExit(f"--runs: unknown run(s) {', '.join(unknown)}; runs: {', '.join(SCENES_RUNS)}")
    train_all({n: specs[n] for n in SCENES_RUNS if n in selected})
    configs = {n: load_config(REPO / "tasks" / f, o) for n, (f, o) in specs.items()}
    run_dirs = {n: run_dir_of(c) for n, c in configs.items()}
    res = scenes_measure({n: d for n, d in run_dirs.items() if (d / "logs" / "metrics.jsonl").is_file()},
                         iters, configs["equal"])
    how = f"{iters} iterations at batch 8 each on the scenes demo set, 1 Ray Train worker, 2 CPU cores, fp32"
    return res, scenes_markdown(res, how)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suite", choices=("pose_mask", "scenes"), default="pose_mask")
    ap.add_argument("--epochs", type=int, default=30, help="pose_mask: epochs of every run")
    ap.add_argument("--iters", type=int, default=None,
                    help="scenes: optimizer steps of every run (default: configs/schedules/scenes_demo.yaml)")
    ap.add_argument("--runs", default=None, help=f"scenes: comma-separated runs to train ({','.join(SCENES_RUNS)}; "
                    "default all); complete folders of the others still fill their rows")
    ap.add_argument("--data", default=None, help="data root (default data/demo/coco or data/demo/scenes)")
    ap.add_argument("--work-dir", default=None, help="run folders (default work_dirs/multitask_table or "
                    "work_dirs/multitask_scenes_table)")
    ap.add_argument("--out", default=None, help="JSON results (default benchmarks/results/multitask_table.json "
                    "or multitask_scenes_table.json)")
    args = ap.parse_args()
    if args.suite == "pose_mask" and (args.runs or args.iters):
        ap.error("--runs and --iters go with --suite scenes")
    res, table = (run_scenes if args.suite == "scenes" else run_pose_mask)(args)
    print(table)
    name = "multitask_scenes_table.json" if args.suite == "scenes" else "multitask_table.json"
    out = Path(args.out or REPO / "benchmarks" / "results" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**res, "markdown": table}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
