"""The per-worker training loop, run by every Ray Train worker (or in-process for one worker).

Task-agnostic: it asks the Task for datasets, loss and evaluation. Each epoch ends with a
checkpoint reported to Ray (model, optimizer, scheduler, epoch, config, best metric), so a re-run
of the same run name resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from ..checkpoint import read_checkpoint, save_checkpoint
from ..config import parse_section
from ..imageio import loader_worker_init
from ..tasks.base import Task, build_task
from .optim import build_optimizer, build_scheduler

CKPT_FILE = "model.pth"


@dataclass
class TrainSettings:
    """``train`` section of a task YAML."""

    epochs: int = 210
    iters: Optional[int] = None      # iteration-based schedule: total iterations (overrides epochs)
    amp: bool = True                 # bf16 autocast + channels_last on CPU, fp16 AMP on GPU
    channels_last: bool = True
    log_interval: int = 50           # iterations between progress lines
    keep_checkpoints: int = 2        # latest checkpoints kept by Ray (best.pth is kept separately)
    checkpoint_interval: int = 1     # epochs between checkpoints (short epochs: raise it)
    load_from: Optional[str] = None  # initial weights, any supported checkpoint format
    grad_clip: Optional[float] = None
    max_iters: Optional[int] = None  # stop early after this many iterations in total (smoke tests)


def run_dir_of(cfg: dict) -> Path:
    return Path(cfg["work_dir"]).resolve() / cfg["run_name"]


def _bar(frac: float, width: int = 20) -> str:
    n = int(round(frac * width))
    return "#" * n + "." * (width - n)


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class MetricsLog:
    """Metrics to a JSONL file and TensorBoard (rank 0 only)."""

    def __init__(self, run_dir: Path):
        self.dir = run_dir / "logs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(self.dir / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tb = SummaryWriter(str(self.dir / "tensorboard"))
        except Exception:  # tensorboard missing: JSONL still has everything
            self.tb = None

    def write(self, step: int, record: dict) -> None:
        self.jsonl.write(json.dumps({"step": step, "time": time.time(), **record}) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def quiet_ray_train_info() -> None:
    """Ray Train logs every report and checkpoint at INFO (some loggers are named by file path);
    our progress lines say the same, shorter. Warnings and errors still pass."""
    def keep(record: logging.LogRecord) -> bool:
        from_train = record.name.startswith("ray.train") or "/ray/train/" in record.name
        return record.levelno >= logging.WARNING or not from_train

    logging.getLogger("ray.train").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        handler.addFilter(keep)


def weight_fingerprints(model: torch.nn.Module) -> list[float]:
    """One number per worker summarising its weights (gathered over DDP): equal when in sync."""
    import torch.distributed as dist

    with torch.no_grad():
        fp = torch.stack([sum((p.double() * (i + 1)).sum() for i, p in enumerate(model.parameters()))])
    gathered = [torch.zeros_like(fp) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, fp)
    return [float(g.item()) for g in gathered]


def cpu_has_fast_bf16() -> bool:
    """bf16 autocast pays off only with native bf16 (AVX512-BF16 / AMX); elsewhere oneDNN falls back
    to reference kernels that are many times slower than fp32 (measured: 30x on an AVX2 machine)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def amp_mode(device: torch.device, enabled: bool) -> str:
    """``fp16`` (CUDA AMP), ``bf16`` (CPU with native bf16) or ``fp32``."""
    if not enabled:
        return "fp32"
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def _autocast_factory(device: torch.device, mode: str):
    if mode == "fp16":
        return lambda: torch.autocast("cuda", dtype=torch.float16)
    if mode == "bf16":
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


def train_worker(config: dict) -> None:
    """Entry point of every Ray Train worker; ``config = {"cfg": plain config dict}``."""
    import ray.train
    import ray.train.torch

    cfg = config["cfg"]
    quiet_ray_train_info()
    settings = parse_section(cfg, "train", TrainSettings)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    threads = int(config.get("threads", 0))
    if threads > 0:
        torch.set_num_threads(threads)
    seed = int(cfg.get("seed", 0))
    torch.manual_seed(seed + rank)

    task: Task = build_task(cfg)
    device = ray.train.torch.get_device()
    model = task.build_model()
    if settings.load_from:
        from ..checkpoint import load_checkpoint
        report = load_checkpoint(model, settings.load_from, strict=False)
        if rank == 0:
            print(f"[init] {report.summary()}", flush=True)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    core = model.module if hasattr(model, "module") else model

    dataset = task.build_dataset("train")
    batch_size = int(getattr(task.data, "batch_size", 32))
    if world > 1:
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed,
                                     drop_last=True)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=len(dataset) >= batch_size * world,
                        num_workers=task.data.loader_workers, worker_init_fn=loader_worker_init,
                        collate_fn=task.collate, persistent_workers=task.data.loader_workers > 0)
    iters_per_epoch = max(1, len(loader))
    if settings.iters:
        # Iteration-based recipes (segmentation): run whole epochs until `iters` iterations are done.
        settings.epochs = math.ceil(settings.iters / iters_per_epoch)
        settings.max_iters = settings.iters
    optimizer = build_optimizer(core.parameters(), cfg.get("optimizer") or {})
    sched_cfg = cfg.get("scheduler") or {}
    by_iter = bool(sched_cfg.get("by_iter", False))
    scheduler = build_scheduler(optimizer, sched_cfg,
                                (settings.iters or settings.epochs * iters_per_epoch) if by_iter else settings.epochs)
    precision = amp_mode(device, settings.amp)
    autocast = _autocast_factory(device, precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    if rank == 0:
        note = " (this CPU has no native bf16, so fp32 is faster)" if settings.amp and precision == "fp32" else ""
        print(f"[train] {world} worker(s) on {device.type}, precision {precision}{note}, "
              f"{len(dataset)} training samples, batch {batch_size}/worker", flush=True)

    start_epoch, best, global_step = 0, None, 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = read_checkpoint(Path(d) / CKPT_FILE)
        core.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["meta"]["epoch"]) + 1
        best = state["meta"].get("best")
        global_step = int(state["meta"].get("global_step", 0))
        if rank == 0:
            print(f"[resume] continuing from the checkpoint of epoch {start_epoch} "
                  f"(best {task.primary_metric} so far: {best})", flush=True)

    run_dir = run_dir_of(cfg)
    if start_epoch >= settings.epochs:
        if rank == 0:
            print(f"[train] run {cfg['run_name']} already finished its {settings.epochs} epochs; "
                  "raise train.epochs to continue it or use --set run_name=NEW", flush=True)
        done = {"epoch": start_epoch, "best": best, "already_finished": True}
        ray.train.report({k: v for k, v in done.items() if v is not None})
        return
    log = MetricsLog(run_dir) if rank == 0 else None
    eval_interval = int(getattr(getattr(task, "eval_cfg", None), "interval", 1) or 1)
    total_epochs = settings.epochs
    t_run = time.time()
    for epoch in range(start_epoch, total_epochs):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        else:
            sampler.generator.manual_seed(seed * 1000 + epoch)
        dataset.set_epoch(epoch)
        model.train()
        t0 = time.time()
        loss_sum, n_seen, faults = 0.0, 0, []
        for it, batch in enumerate(loader):
            faults += [f for f in batch.get("fault", []) if f]
            images = batch["image"].to(device, non_blocking=True)
            if settings.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            batch = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
                     for k, v in batch.items()}
            with autocast():
                outputs = model(images)
            loss = task.loss(outputs, batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1}, iteration {it + 1}; "
                                         "lower the learning rate or check the data")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if settings.grad_clip:
                torch.nn.utils.clip_grad_norm_(core.parameters(), settings.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            if by_iter:
                scheduler.step()
            global_step += 1
            loss_sum += loss.item() * len(images)
            n_seen += len(images)
            last = it + 1 == iters_per_epoch
            if rank == 0 and ((it + 1) % settings.log_interval == 0 or last):
                dt = time.time() - t0
                speed = n_seen * world / max(dt, 1e-9)
                done = (epoch - start_epoch) * iters_per_epoch + it + 1
                todo = (total_epochs - start_epoch) * iters_per_epoch - done
                eta = (time.time() - t_run) / done * todo
                print(f"epoch {epoch + 1}/{total_epochs} [{_bar((it + 1) / iters_per_epoch)}] "
                      f"{it + 1}/{iters_per_epoch} loss {loss_sum / n_seen:.6f} "
                      f"lr {optimizer.param_groups[0]['lr']:.2e} {speed:.1f} img/s eta {_fmt_time(eta)}",
                      flush=True)
            if settings.max_iters and global_step >= settings.max_iters:
                break
        if not by_iter:
            scheduler.step()
        metrics: dict[str, Any] = {"epoch": epoch + 1, "loss": loss_sum / max(1, n_seen),
                                   "lr": optimizer.param_groups[0]["lr"], "faults": len(faults),
                                   "epoch_time_s": time.time() - t0}
        if faults:
            print(f"[rank {rank}] epoch {epoch + 1}: {len(faults)} sample(s) skipped: "
                  + "; ".join(sorted(set(faults))[:5]), flush=True)
        finished = epoch + 1 == total_epochs or bool(settings.max_iters and global_step >= settings.max_iters)
        if world > 1 and finished:
            metrics["weight_fingerprints"] = weight_fingerprints(core)
        if rank == 0 and ((epoch + 1) % eval_interval == 0 or finished):
            t_eval = time.time()
            stats = task.evaluate(core, run_dir / "eval" / f"epoch_{epoch + 1:03d}", device, autocast=autocast)
            metrics.update(stats)
            metrics["eval_time_s"] = time.time() - t_eval
            key = task.primary_metric
            if key in stats:
                print(f"epoch {epoch + 1}: {key} {stats[key]:.4f} (eval {metrics['eval_time_s']:.0f}s)", flush=True)
                better = best is None or (stats[key] > best if task.greater_is_better else stats[key] < best)
                if better:
                    best = stats[key]
                    save_checkpoint(run_dir / "best.pth", core, meta={"epoch": epoch + 1, key: best,
                                                                      "config": cfg})
        metrics["best"] = best
        meta = {"epoch": epoch, "global_step": global_step, "best": best, "config": cfg}
        save = finished or (epoch + 1) % max(1, settings.checkpoint_interval) == 0
        if rank == 0:
            log.write(global_step, {k: v for k, v in metrics.items() if v is not None})
        reported = {k: v for k, v in metrics.items() if v is not None}
        if rank == 0 and save:
            with tempfile.TemporaryDirectory() as tmp:
                save_checkpoint(Path(tmp) / CKPT_FILE, core, meta=meta, optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(),
                                scaler=scaler.state_dict() if scaler is not None else None)
                ray.train.report(reported, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(reported)
        if finished:
            break
    if log is not None:
        log.close()
