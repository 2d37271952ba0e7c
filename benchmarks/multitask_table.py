"""The multi-task comparison table: single-task pose, single-task person mask and the joint
pose + mask model, trained with the same budget on the demo set, then compared the way
multi-task papers do (each metric, Δm against the single-task models, parameters, GFLOPs, speed).

    python benchmarks/multitask_table.py [--epochs 30] [--data data/demo/coco]
        [--out benchmarks/results/multitask_table.json]

Trains three runs one after the other on one local Ray instance (1 worker each), reads each
run's best evaluation from its ``logs/metrics.jsonl``, and measures inference throughput of the
joint model and of the two single-task models together, interleaved in one process so the
figures compare as ratios on a shared, noisy machine. Prints a Markdown table (the README's) and
writes everything to --out.
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


def ensure_data(root: Path) -> Path:
    if not (root / "annotations").is_dir():
        from densepred.tasks.pose.demo_data import make_pose_demo

        make_pose_demo(root, progress=False)
    return root


def run_overrides(name: str, root: Path, work_dir: Path, epochs: int) -> list[str]:
    common = [f"work_dir={work_dir}", f"train.epochs={epochs}", f"run_name=table_{name}"]
    if name == "joint":
        return common + [f"task.members.{m}.data_root={root}" for m in ("pose", "mask")]
    if name == "pose":  # the 30-epoch recipe the joint run's pose member uses (pose_demo.yaml trains 17)
        common += ["data.batch_size=32", "data.decoding=argmax", "scheduler.milestones=[20,26]",
                   "evaluation.interval=5"]
    return common + [f"data_root={root}"]


def best_record(run_dir: Path, metric: str) -> dict[str, Any]:
    records = [json.loads(line) for line in open(run_dir / "logs" / "metrics.jsonl")]
    evaluated = [r for r in records if isinstance(r.get(metric), (int, float))]
    best = max(evaluated, key=lambda r: r[metric])
    train_speed = [r["samples"] / r["epoch_time_s"] for r in records if r.get("samples")]
    best["train_img_s"] = sum(train_speed) / len(train_speed) if train_speed else None
    best["train_time_s"] = sum(r.get("epoch_time_s", 0.0) for r in records)
    return best


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


def train_all(root: Path, work_dir: Path, epochs: int) -> dict[str, Any]:
    from densepred import load_config
    from densepred.engine.launch import shutdown_ray, train

    out = {}
    try:
        for name, task_file in RUNS.items():
            t0 = time.time()
            cfg = load_config(REPO / "tasks" / task_file, run_overrides(name, root, work_dir, epochs))
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

    pose = best_record(Path(runs["pose"]["run_dir"]), "AP")
    mask = best_record(Path(runs["mask"]["run_dir"]), "mIoU")
    joint = best_record(Path(runs["joint"]["run_dir"]), "pose/AP")
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--data", default=str(REPO / "data" / "demo" / "coco"))
    ap.add_argument("--work-dir", default=str(REPO / "work_dirs" / "multitask_table"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "multitask_table.json"))
    args = ap.parse_args()
    root = ensure_data(Path(args.data).resolve())
    runs = train_all(root, Path(args.work_dir).resolve(), args.epochs)
    res = measure(runs)
    table = markdown(res, args.epochs)
    print(table)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({**res, "epochs": args.epochs, "markdown": table}, indent=2, default=str))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
