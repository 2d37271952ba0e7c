"""Section ``paths``: every inference path of a trained demo model, with its accuracy on the demo
validation split (AP or mIoU) next to its batch-1 latency, and what the precision check chose.

Reduced precision is worth having only if the figure users care about does not move; this section
shows both numbers side by side. It needs trained checkpoints: ``work_dirs/pose_demo/best.pth`` and
``work_dirs/seg_demo/best.pth`` (what `bash scripts/demo.sh` and the README's seg recipe leave), or
the run folders / checkpoints given with ``platform bench --checkpoints``."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from .timing import median, rounded, time_runs, torch_threads

DEFAULT_RUNS = (Path("work_dirs/pose_demo"), Path("work_dirs/seg_demo"))
PATHS = ("eager", "fold", "fold+cl", "fold+cl+bf16", "fold+cl+bf16+jit", "fold+cl+bf16+onednn", "ort")


def _checkpoint_of(item: Path) -> Optional[Path]:
    """``best.pth`` of a run folder, or the file itself."""
    if item.is_dir():
        return item / "best.pth" if (item / "best.pth").is_file() else None
    return item if item.is_file() else None


def _load(ckpt: Path) -> tuple[Any, torch.nn.Module]:
    """The task (from the run folder's config.yaml) and the model with the checkpoint's weights."""
    from ..checkpoint import load_checkpoint
    from ..config import load_config
    from ..tasks.base import build_task

    task = build_task(load_config(ckpt.parent / "config.yaml"))
    model = task.build_model()
    load_checkpoint(model, ckpt)
    return task, model.eval()


def path_row(task: Any, model: torch.nn.Module, name: str, example: torch.Tensor, budget_s: float) -> dict[str, Any]:
    """One path's metric on the validation split and its batch-1 latency (or why it is not possible)."""
    from ..inference import build_path

    module, why = (model, "") if name == "eager" else build_path(model, example, name)
    if module is None:
        return {"path": name, "skipped": why}
    t0 = time.perf_counter()
    stats = task.evaluate(module, None, torch.device("cpu"))
    eval_s = time.perf_counter() - t0
    with torch.no_grad():
        latency = median(time_runs(lambda: module(example), budget_s, min_runs=3, max_runs=30, warmup=1))
    precision = module.plan["precision"] if name != "eager" else "fp32"
    return {"path": name, "precision": precision, "metric": task.primary_metric,
            "value": rounded(stats.get(task.primary_metric)), "latency_ms_batch1": rounded(latency * 1e3),
            "eval_s": rounded(eval_s)}


def model_entry(ckpt: Path, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Every path of one checkpoint, and the plan `platform eval` would choose for it."""
    from ..inference import optimize_for_task

    task, model = _load(ckpt)
    h, w = task.cost_input_size()
    example = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    rows = [path_row(task, model, name, example, 0.5 if quick else 2.0) for name in PATHS]
    eager = next(r for r in rows if r["path"] == "eager")
    for r in rows:
        if "value" in r and eager.get("value") is not None and r["value"] is not None:
            r["delta_vs_eager"] = rounded(r["value"] - eager["value"])
            r["speedup_vs_eager"] = rounded(eager["latency_ms_batch1"] / max(r["latency_ms_batch1"], 1e-9))
    _, plan = optimize_for_task(task, model, 1)
    entry = {"checkpoint": str(ckpt), "task": type(task).__name__, "input_hw": [h, w], "rows": rows, "chosen": plan}
    for r in rows:
        log(f"  paths {ckpt.parent.name} {r['path']}: " + (f"skipped ({r['skipped']})" if "skipped" in r else
            f"{r['metric']} {r['value']} ({r.get('delta_vs_eager', 0):+.4f}), {r['latency_ms_batch1']} ms b1"))
    return entry


def run_paths(quick: bool, log: Callable[[str], None] = print,
              checkpoints: Optional[Sequence[Path]] = None) -> dict[str, Any]:
    """The ``paths`` section for each trained checkpoint found (none: ``skipped`` says how to get one)."""
    from ..threadprobe import choose_threads

    found = [c for c in (_checkpoint_of(Path(p)) for p in (checkpoints or DEFAULT_RUNS)) if c is not None]
    if not found:
        wanted = ", ".join(str(p) for p in (checkpoints or DEFAULT_RUNS))
        return {"skipped": f"no trained checkpoint in {wanted}: run `bash scripts/demo.sh` (pose) and the seg demo "
                           "recipe first, or give --checkpoints RUN_FOLDER ..."}
    threads, _ = choose_threads()
    with torch_threads(threads):
        return {"threads": threads, "models": [model_entry(c, quick, log) for c in found]}
