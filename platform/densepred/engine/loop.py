"""The per-worker training loop, run by every Ray Train worker (or in-process for one worker).

Task-agnostic: it asks the Task for datasets, loss and evaluation. Each saved epoch ends with a
checkpoint in the run folder (model, optimizer, scheduler, epoch, config, best metric, fault
counts) that is recorded in ``latest.json`` and registered with Ray, so a restarted worker group, a
re-run of the same run name or ``--resume`` continue where the run stopped (see ``run_state``).
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch.distributed as dist

from ..checkpoint import save_checkpoint
from ..config import parse_section, setting
from ..errors import ConfigError, PlatformError
from ..tasks.base import StepContext, Task, build_task
from .optim import build_optimizer, build_scheduler
from .run_state import (CHECKPOINTS, CKPT_FILE, STOPPED, count_attempt, epoch_dir_name, find_resume_point,
                        note_unregistered, prune_checkpoints, read_stopped, record_latest,
                        write_json_atomic)
from .runlog import MetricsLog, RunLog

LR_SCALING = ("none", "linear", "sqrt")
NONFINITE = ("stop", "skip")


@dataclass
class TrainSettings:
    """``train`` section of a task YAML."""

    epochs: int = setting(210, ge=1, hint="number of training epochs")
    iters: Optional[int] = setting(None, ge=1)   # iteration-based schedule: total optimizer steps (overrides epochs)
    amp: bool = True                 # bf16 autocast on CPUs with native bf16, fp16 AMP on GPU
    channels_last: bool = True
    log_interval: int = setting(50, ge=1)  # iterations between progress lines and TensorBoard points
    keep_checkpoints: int = setting(2, ge=1)  # newest epoch checkpoints kept (best.pth is kept separately)
    checkpoint_interval: int = setting(1, ge=1)  # epochs between checkpoints (short epochs: raise it)
    load_from: Optional[str] = None  # initial weights, any supported checkpoint format
    grad_clip: Optional[float] = setting(None, gt=0)
    max_iters: Optional[int] = setting(None, ge=1)  # stop after this many optimizer steps in total (smoke tests)
    accumulate: int = setting(1, ge=1)  # batches per optimizer step (gradient accumulation)
    sync_bn: bool = False            # batch-norm statistics over all workers' batches
    lr_scaling: str = setting("none", choices=LR_SCALING)  # scale optimizer.lr by total batch / base
    base_batch_size: Optional[int] = setting(None, ge=1)  # total batch size optimizer.lr was tuned for
    nonfinite_loss: str = setting("stop", choices=NONFINITE)  # stop | skip (skip the batch and count it)
    max_fault_fraction: float = setting(0.01, ge=0, le=1)  # more skipped samples (or batches) per epoch: error
    report_cost: bool = False        # report params, GFLOPs and batch-1 latency with every epoch (sweeps)
    thread_probe: bool = True        # measure whether ray.cpus_per_worker threads beat 1 thread (shared CPUs)

    def __post_init__(self) -> None:
        if self.lr_scaling != "none" and not self.base_batch_size:
            raise ConfigError("train.lr_scaling needs train.base_batch_size: the total batch size "
                              "optimizer.lr was tuned for (e.g. 128 for the official pose recipe)")


def schedule_epochs(settings: TrainSettings, batches_per_epoch: int) -> int:
    """The epochs of the schedule: ``train.epochs``, or for an iteration schedule (``train.iters``)
    the whole epochs it takes to make that many optimizer steps."""
    if not settings.iters:
        return settings.epochs
    return math.ceil(settings.iters / _steps_per_epoch(settings, batches_per_epoch))


def planned_epochs(settings: TrainSettings, batches_per_epoch: int) -> int:
    """Epochs a run actually trains: the schedule's, cut short by ``train.max_iters``."""
    epochs = schedule_epochs(settings, batches_per_epoch)
    if settings.max_iters:
        epochs = min(epochs, math.ceil(settings.max_iters / _steps_per_epoch(settings, batches_per_epoch)))
    return epochs


def _steps_per_epoch(settings: TrainSettings, batches_per_epoch: int) -> int:
    return math.ceil(max(1, batches_per_epoch) / settings.accumulate)


def eval_rounds(epochs_done: int, interval: int, finished: bool) -> int:
    """Evaluations made after ``epochs_done`` epochs: every ``interval`` epochs, and after the last.
    Sweep schedulers (ASHA, median) count a trial's progress in these rounds."""
    return epochs_done // interval + (1 if finished and epochs_done % interval else 0)


def run_dir_of(cfg: dict) -> Path:
    """The run folder: ``<ray.storage or work_dir>/<run_name>``."""
    storage = (cfg.get("ray") or {}).get("storage") or cfg["work_dir"]
    return Path(storage).expanduser().resolve() / cfg["run_name"]


def scaled_lr(lr: float, total_batch: int, settings: TrainSettings) -> float:
    """The learning-rate scaling rule: ``lr * (total/base)`` (linear) or ``lr * sqrt(total/base)``."""
    if settings.lr_scaling == "none":
        return lr
    ratio = total_batch / float(settings.base_batch_size)
    return lr * (ratio if settings.lr_scaling == "linear" else math.sqrt(ratio))


def seed_worker(seed: int, rank: int) -> None:
    """Seed Python, numpy and torch per worker (rank 0's initial weights are broadcast by DDP).
    Augmentation does not use these streams: it draws from (seed, epoch, sample index), so a resumed
    run sees the same augmented samples as an uninterrupted one."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def _bar(frac: float, width: int = 20) -> str:
    n = int(round(frac * width))
    return "#" * n + "." * (width - n)


def _fmt_time(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


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


def any_worker(flag: bool, world: int, device: torch.device) -> bool:
    """True on every worker if ``flag`` is true on any (keeps collective decisions identical)."""
    if world <= 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def gather_lists(items: list, world: int) -> list:
    if world <= 1:
        return list(items)
    out: list = [None] * world
    dist.all_gather_object(out, list(items))
    return [x for part in out for x in part]


class StopRun(Exception):
    """A decision taken by all workers together to end the run (non-finite loss, too many faults);
    not retried by Ray: the message goes to the driver as the run's result."""


def is_peer_failure(e: BaseException) -> bool:
    """An error a worker sees because another worker died (a collective lost its peer): Ray's
    restart of the worker group is the cure, so these are the only exceptions left to Ray."""
    text = str(e).lower()
    return isinstance(e, getattr(dist, "DistBackendError", ())) or any(
        w in text for w in ("gloo", "nccl", "connection closed", "connection reset", "broken pipe"))


def train_worker(config: dict) -> None:
    """Entry point of every Ray Train worker; ``config = {"cfg": plain config dict, "threads": n}``.

    An error that would happen again on a retry (bad data, a wrong setting, a bug) ends the run
    with its reason in ``stopped.json`` instead of going back to Ray, which would restart the
    worker group for nothing; only worker deaths are left to Ray's restarts."""
    import traceback

    import ray.train

    run_dir = run_dir_of(config["cfg"])
    try:
        _train_worker(config)
    except PlatformError as e:
        reason = str(e)
    except Exception as e:
        if is_peer_failure(e):
            raise
        trace = run_dir / "logs" / "error.txt"
        trace.parent.mkdir(parents=True, exist_ok=True)
        trace.write_text(traceback.format_exc())
        reason = f"{type(e).__name__}: {' '.join(str(e).split())[:300]} in a training worker (traceback in {trace})"
    else:
        return
    write_json_atomic(run_dir / STOPPED, {"epoch": None, "reason": reason})
    ray.train.report({"stopped": reason})


@dataclass
class _Run:
    """What the phases of one worker's run share, built once by ``_build_run``."""

    config: dict
    cfg: dict
    settings: TrainSettings
    rank: int
    world: int
    seed: int
    run_dir: Path
    log: RunLog
    task: Task
    device: torch.device
    model: torch.nn.Module  # as prepared by Ray (DDP-wrapped with several workers)
    core: torch.nn.Module   # the bare model
    cost: dict[str, float]
    batches: Any            # densepred.batching.TrainBatches
    extras: Optional[torch.nn.Module]  # task-owned trained parameters (loss weights), or None
    batch_size: int
    batches_per_epoch: int
    planned_epochs: int     # epochs this run trains (the schedule's, or fewer with train.max_iters)
    total_batch: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    by_iter: bool
    autocast: Callable[[], Any]
    scaler: Optional[torch.amp.GradScaler]
    metrics_log: Optional[MetricsLog] = None


@dataclass
class _Progress:
    """Counters carried from epoch to epoch (and restored from the resume point)."""

    start_epoch: int = 0
    best: Optional[float] = None
    global_step: int = 0
    faults_total: int = 0
    skipped_total: int = 0
    t_run: float = 0.0
    startup_s: Optional[float] = None  # from the launch (driver or sweep trial) to the first training step


@dataclass
class _EpochStats:
    """What one epoch's batch loop on this worker adds up."""

    t0: float
    loss_acc: Optional[torch.Tensor] = None  # sample-weighted loss sum, kept on the device (no sync per step)
    n_seen: int = 0
    data_wait_s: float = 0.0        # time the loop waited for the loader
    steps: int = 0
    faults: list = field(default_factory=list)
    skipped: int = 0
    log_sums: dict = field(default_factory=dict)    # the task's step figures, sample-weighted sums
    log_counts: dict = field(default_factory=dict)

    @property
    def loss_sum(self) -> float:
        return float(self.loss_acc) if self.loss_acc is not None else 0.0

    def add_loss(self, loss: torch.Tensor, n: int) -> None:
        value = loss.detach().float() * n
        self.loss_acc = value if self.loss_acc is None else self.loss_acc + value
        self.n_seen += n

    def add_logs(self, logs: dict[str, Any], n: int) -> None:
        for k, v in logs.items():
            v = v.detach().float() * n if isinstance(v, torch.Tensor) else float(v) * n
            self.log_sums[k] = self.log_sums.get(k, 0.0) + v
            self.log_counts[k] = self.log_counts.get(k, 0) + n

    def plain_log_sums(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.log_sums.items()}


def timed_batches(batches: Any, stats: _EpochStats) -> Iterator[tuple[int, Any]]:
    """``enumerate(batches)``, adding the time spent waiting for each batch to ``stats``."""
    it = iter(batches)
    i = 0
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        stats.data_wait_s += time.perf_counter() - t0
        stats.steps += 1
        yield i, batch
        i += 1


def _train_worker(config: dict) -> None:
    """Build the run, resume it, then train epoch after epoch until it finishes or is stopped."""
    import ray.train

    run = _build_run(config)
    progress = _resume(run)
    settings, log, rank, run_dir = run.settings, run.log, run.rank, run.run_dir
    if progress.start_epoch >= settings.epochs:
        log.say(f"[train] run {run.cfg['run_name']} already finished its {settings.epochs} epochs; "
                "raise train.epochs to continue it or use --set run_name=NEW")
        done = {"epoch": progress.start_epoch, "best": progress.best, "already_finished": True}
        ray.train.report({k: v for k, v in done.items() if v is not None})
        return
    run.metrics_log = MetricsLog(run_dir, mlflow=config.get("mlflow")) if rank == 0 else None
    eval_interval = run.task.eval_interval
    progress.t_run = time.time()
    try:
        for epoch in range(progress.start_epoch, settings.epochs):
            stats = _train_epoch(run, progress, epoch)
            if _end_epoch(run, progress, epoch, stats, eval_interval):
                break
    except StopRun as e:
        # Ray returns only the metrics attached to checkpoints, so the reason goes to the run folder.
        log.say(f"[train] stopped: {e}")
        if rank == 0:
            write_json_atomic(run_dir / STOPPED, {"epoch": epoch + 1, "reason": str(e)})
        ray.train.report({"stopped": str(e), "epoch": epoch + 1})
    finally:
        if run.metrics_log is not None:
            run.metrics_log.close()


def _build_run(config: dict) -> _Run:
    """Worker setup: settings, threads, seeds, logs, then the model, data loader, optimizer,
    scheduler and precision, with the lines that describe them."""
    import ray.train
    import ray.train.torch

    cfg = config["cfg"]
    quiet_ray_train_info()
    settings = parse_section(cfg, "train", TrainSettings)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed = int(cfg.get("seed", 0))
    seed_worker(seed, rank)
    run_dir = run_dir_of(cfg)
    log = RunLog(run_dir, enabled=rank == 0)
    set_compute_threads(int(config.get("threads", 0)), settings.thread_probe, log)

    if rank == 0 and config.get("fit_id"):
        attempt, previous = count_attempt(run_dir, config["fit_id"], world)
        if attempt > 1 and previous and previous != world:
            log.say(f"[elastic] resized: {previous} -> {world} worker(s) (Ray Train started a new worker group; "
                    "training continues from the newest checkpoint)")
        elif attempt > 1:
            log.say(f"[train] a worker failed: Ray started a new worker group (attempt {attempt} of at most "
                    f"{1 + int(config.get('max_failures', 0))})")

    task: Task = build_task(cfg)
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    model, core, cost = _build_model(task, settings, device, rank, world, log)
    batches = _build_batches(task, seed, rank, world, log)
    batch_size = batches.batch_size
    batches_per_epoch = max(1, len(batches))
    accum = settings.accumulate = elastic_accumulation(settings.accumulate, batch_size, world,
                                                       int(config.get("max_workers") or world), log)
    planned = planned_epochs(settings, batches_per_epoch)
    if settings.iters:
        # Iteration-based recipes (segmentation): run whole epochs until `iters` steps are done.
        settings.epochs = schedule_epochs(settings, batches_per_epoch)
        settings.max_iters = min(settings.iters, settings.max_iters or settings.iters)
    total_batch = batch_size * world * accum
    optim_cfg = dict(cfg.get("optimizer") or {"type": "Adam", "lr": 1e-3})
    base_lr = float(optim_cfg.get("lr", 1e-3))
    optim_cfg["lr"] = scaled_lr(base_lr, total_batch, settings)
    extras = task.trainable_extras()
    params = list(core.parameters())
    if extras is not None:
        extras.to(device)
        params += [p for p in extras.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, optim_cfg)
    sched_cfg = cfg.get("scheduler") or {}
    by_iter = bool(sched_cfg.get("by_iter", False))
    scheduler = build_scheduler(optimizer, sched_cfg,
                                (settings.iters or settings.epochs * math.ceil(batches_per_epoch / accum))
                                if by_iter else settings.epochs)
    precision = amp_mode(device, settings.amp)
    autocast = _autocast_factory(device, precision)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    note = " (this CPU has no native bf16, so fp32 is faster)" if settings.amp and precision == "fp32" else ""
    log.say(f"[train] {world} worker(s) on {device.type}, precision {precision}{note}, "
            f"{batches.describe()}, total batch {total_batch} = {batch_size}/worker x {world} "
            f"worker(s) x {accum} accumulation step(s)"
            + (", sync BN" if settings.sync_bn and world > 1 else ""))
    if settings.lr_scaling != "none":
        log.say(f"[train] lr {base_lr:.3g} -> {optim_cfg['lr']:.3g} ({settings.lr_scaling} scaling from "
                f"base batch {settings.base_batch_size} to {total_batch})")
    return _Run(config=config, cfg=cfg, settings=settings, rank=rank, world=world, seed=seed, run_dir=run_dir,
                log=log, task=task, device=device, model=model, core=core, cost=cost, batches=batches,
                extras=extras, batch_size=batch_size, batches_per_epoch=batches_per_epoch,
                planned_epochs=planned, total_batch=total_batch, optimizer=optimizer, scheduler=scheduler,
                by_iter=by_iter, autocast=autocast, scaler=scaler)


WORKER_MIN_SPEEDUP = 0.9  # more threads unless they take over 1/0.9 = 1.11x the time of one


def set_compute_threads(threads: int, probe: bool, log: RunLog) -> int:
    """Intra-op threads of this worker: its ``threads`` CPUs, or 1 when a short probe
    (``threadprobe``) finds more threads clearly slower than one (the stall of spinning threads
    with a busy neighbour). A tie keeps all threads: the probe runs while Ray and the data loader
    are still starting, and one noisy reading must not halve a whole run's speed."""
    if threads <= 0:
        return torch.get_num_threads()
    chosen, info = threads, None
    if probe and threads > 1:
        from ..threadprobe import choose_threads

        chosen, info = choose_threads(rounds=3, max_threads=threads, every_round=False,
                                      min_speedup=WORKER_MIN_SPEEDUP)
    torch.set_num_threads(chosen)
    if info is not None:
        ms = ", ".join(f"{n} thread(s) {v:.1f} ms" for n, v in info["probe_ms"].items())
        log.say(f"[train] compute threads per worker: {chosen} of {threads} CPU(s) (probe: {ms}; "
                f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; train.thread_probe=false keeps {threads})")
    return chosen


def _build_model(task: Task, settings: TrainSettings, device: torch.device, rank: int, world: int,
                 log: RunLog) -> tuple[torch.nn.Module, torch.nn.Module, dict[str, float]]:
    """The task's model with ``load_from`` weights, sync BN and channels-last, prepared by Ray;
    returns (prepared model, bare model, cost report: empty unless ``report_cost``, on rank 0)."""
    import ray.train.torch

    model = task.build_model()
    if settings.load_from:
        report = task.load_initial_weights(model, settings.load_from)
        log.say(f"[init] {report.summary()}")
    if settings.sync_bn and world > 1:
        from .syncbn import convert_sync_batchnorm
        model = convert_sync_batchnorm(model, device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = ray.train.torch.prepare_model(model)
    core = model.module if hasattr(model, "module") else model
    cost: dict[str, float] = {}
    if settings.report_cost and rank == 0:
        from ..cost import model_cost
        cost = model_cost(core, task.cost_input_size(), device)
        log.say(f"[cost] {cost['params']:,} parameters, {cost['gflops']:.3g} GFLOPs, "
                f"{cost['latency_ms']:.3g} ms batch-1 latency on {device.type}")
    return model, core, cost


def _build_batches(task: Task, seed: int, rank: int, world: int, log: RunLog) -> Any:
    """The task's training batch source for this worker (one loader, or several interleaved)."""
    batches = task.build_train_batches(seed, rank, world)
    for dataset in getattr(batches, "datasets", None) or [getattr(batches, "dataset", None)]:
        if getattr(dataset, "index_source", None):
            log.say(f"[data] annotation index {dataset.index_source} in {dataset.index_seconds:.2f} s")
        for note in getattr(dataset, "notes", []):
            log.say(f"[data] {note}")
    return batches


def elastic_accumulation(accumulate: int, batch_size: int, world: int, max_workers: int, log: RunLog) -> int:
    """Accumulation steps that keep the total batch of the full worker group (``max_workers`` x
    ``batch_size`` x ``accumulate``) with ``world`` workers, so that the schedule and the results
    do not depend on how many workers happened to be alive (elastic runs)."""
    if world >= max_workers:
        return accumulate
    target = batch_size * max_workers * accumulate
    steps = math.ceil(target / (batch_size * world))
    exact = "" if steps * batch_size * world == target else f" (closest: {steps * batch_size * world})"
    log.say(f"[elastic] {world} of up to {max_workers} worker(s): {steps} accumulation step(s) keep the total batch "
            f"{target}{exact}")
    return steps


def _resume(run: _Run) -> _Progress:
    """Load the resume point (Ray's checkpoint or the run folder's latest), if any, into the model,
    optimizer, scheduler and scaler; returns the counters to continue from."""
    import ray.train

    progress = _Progress()
    ray_ckpt = ray.train.get_checkpoint()
    ray_dir = Path(ray_ckpt.path) if ray_ckpt is not None else None
    if run.rank == 0:
        note_unregistered(run.run_dir, ray_dir)
    resume = find_resume_point(run.run_dir, ray_dir, warn=run.log.say)
    if resume is not None:
        state = resume.state
        run.core.load_state_dict(state["state_dict"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        if run.scaler is not None and state.get("scaler"):
            run.scaler.load_state_dict(state["scaler"])
        if run.extras is not None and state.get("task_state"):
            run.extras.load_state_dict(state["task_state"])
        meta = state["meta"]
        progress.start_epoch = int(meta["epoch"]) + 1
        progress.best = meta.get("best")
        progress.global_step = int(meta.get("global_step", 0))
        progress.faults_total = int(meta.get("faults_total", 0))
        progress.skipped_total = int(meta.get("skipped_batches_total", 0))
        run.log.say(f"[resume] continuing after epoch {progress.start_epoch} from {resume.path} ({resume.source}); "
                    f"best {run.task.primary_metric} so far: {progress.best}")
    return progress


def _train_epoch(run: _Run, progress: _Progress, epoch: int) -> _EpochStats:
    """One pass over the loader: forward/backward per batch, an optimizer step every ``accumulate``
    batches, progress lines; stops early at ``max_iters`` optimizer steps."""
    settings, accum = run.settings, run.settings.accumulate
    run.batches.set_epoch(epoch)
    run.model.train()
    if run.extras is not None:
        run.extras.train()
    stats = _EpochStats(t0=time.time())
    run.optimizer.zero_grad(set_to_none=True)
    for it, batch in timed_batches(run.batches, stats):
        if progress.startup_s is None and run.config.get("t_start"):
            progress.startup_s = time.time() - float(run.config["t_start"])
            run.log.say(f"[train] first training step {progress.startup_s:.1f} s after the launch")
        last = it + 1 == run.batches_per_epoch
        step_now = (it + 1) % accum == 0 or last
        bad = _forward_backward(run, progress, stats, batch, epoch, it, step_now)
        if step_now and bad and run.world > 1 and accum > 1:
            # The earlier batches of this step kept their gradients local (no_sync) and the
            # batch that would have all-reduced them was skipped: drop the whole step on
            # every worker rather than let the replicas drift apart.
            run.optimizer.zero_grad(set_to_none=True)
        elif step_now:
            _optimizer_step(run)
            progress.global_step += 1
        if run.rank == 0 and ((it + 1) % settings.log_interval == 0 or last):
            _log_progress(run, progress, stats, epoch, it)
        if settings.max_iters and progress.global_step >= settings.max_iters and step_now:
            break
    if not run.by_iter:
        run.scheduler.step()
    return stats


def _forward_backward(run: _Run, progress: _Progress, stats: _EpochStats, batch: dict, epoch: int, it: int,
                      step_now: bool) -> bool:
    """Loss and gradients of one batch, with the non-finite loss guard (decided by all workers
    together); returns True when the batch was skipped for a non-finite loss."""
    settings, world, device, model = run.settings, run.world, run.device, run.model
    stats.faults += [f for f in batch.get("fault", []) if f]
    images = batch["image"].to(device, non_blocking=True)
    if settings.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    batch = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v)
             for k, v in batch.items()}
    # DDP all-reduces gradients only on the batch that completes an optimizer step.
    sync = model.no_sync() if (world > 1 and not step_now and hasattr(model, "no_sync")) \
        else contextlib.nullcontext()
    with sync:
        with run.autocast():
            outputs = model(images)
        ctx = StepContext(model=run.core, epoch=epoch, global_step=progress.global_step, world=world,
                          accumulate=settings.accumulate, step_end=step_now)
        loss, logs = run.task.train_loss(outputs, batch, ctx)
        bad = any_worker(not bool(torch.isfinite(loss)), world, device)
        if bad:
            where = f"epoch {epoch + 1}, iteration {it + 1} (step {progress.global_step + 1})"
            value = loss.item()
            what = f"loss is {value}" if not math.isfinite(value) else "loss is not finite on another worker"
            if settings.nonfinite_loss == "stop":
                raise StopRun(f"{what} at {where}; the last good "
                              "checkpoint is kept. Lower the learning rate, check the data, or "
                              "set train.nonfinite_loss=skip")
            stats.skipped += 1
            run.log.say(f"[train] non-finite loss at {where}: batch skipped ({stats.skipped} this epoch)")
        else:
            # The task back-propagates (plain backward by default; see Task.backward).
            logs = {**logs, **run.task.backward(loss / settings.accumulate, ctx, run.scaler)}
            stats.add_loss(loss, len(images))
            stats.add_logs(logs, len(images))
    return bad


def _optimizer_step(run: _Run) -> None:
    """Unscale, clip, step (through the AMP scaler if any), zero the gradients, and step a
    per-iteration scheduler."""
    scaler, optimizer = run.scaler, run.optimizer
    if run.extras is not None and run.world > 1:
        _average_extra_grads(run.extras, run.world)
    if scaler is not None:
        scaler.unscale_(optimizer)
    if run.settings.grad_clip:
        torch.nn.utils.clip_grad_norm_(run.core.parameters(), run.settings.grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if run.by_iter:
        run.scheduler.step()


def _average_extra_grads(extras: torch.nn.Module, world: int) -> None:
    """DDP averages the model's gradients; the task's own parameters (loss weights) are averaged
    here so every worker keeps the same values. A missing gradient counts as zero."""
    for p in extras.parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= world


def _log_progress(run: _Run, progress: _Progress, stats: _EpochStats, epoch: int, it: int) -> None:
    """Rank 0's progress line and TensorBoard scalars after iteration ``it``."""
    n = run.batches_per_epoch
    total_epochs = run.settings.epochs
    dt = time.time() - stats.t0
    speed = (stats.n_seen + stats.skipped * run.batch_size) * run.world / max(dt, 1e-9)
    done = (epoch - progress.start_epoch) * n + it + 1
    todo = (total_epochs - progress.start_epoch) * n - done
    eta = (time.time() - progress.t_run) / done * todo
    lr = run.optimizer.param_groups[0]["lr"]
    run.log.say(f"epoch {epoch + 1}/{total_epochs} [{_bar((it + 1) / n)}] "
                f"{it + 1}/{n} loss {stats.loss_sum / max(1, stats.n_seen):.6f} "
                f"lr {lr:.2e} {speed:.1f} img/s eta {_fmt_time(eta)}")
    run.metrics_log.scalars(progress.global_step, {"train/loss": stats.loss_sum / max(1, stats.n_seen),
                                                   "train/lr": lr,
                                                   "train/img_per_s": speed})


def _end_epoch(run: _Run, progress: _Progress, epoch: int, stats: _EpochStats, eval_interval: int) -> bool:
    """Fault checks, weight checks, evaluation, checkpoint, metrics and the report to Ray after an
    epoch (collectives in the same order on every worker); returns True when the run ends here."""
    import ray.train

    settings, rank = run.settings, run.rank
    metrics = _epoch_faults(run, progress, epoch, stats)
    metrics.update(_epoch_task_logs(run, epoch, stats))
    if rank == 0:
        _epoch_summary(run, metrics)
    if not all(bool(torch.isfinite(t).all()) for t in run.core.state_dict().values() if t.is_floating_point()):
        raise StopRun(f"the weights are no longer finite after epoch {epoch + 1} (the model diverged); "
                      "the last good checkpoint is kept. Lower the learning rate")
    finished = epoch + 1 == settings.epochs or bool(settings.max_iters and progress.global_step >= settings.max_iters)
    if run.world > 1 and finished:
        metrics["weight_fingerprints"] = weight_fingerprints(run.core)
    if (epoch + 1) % eval_interval == 0 or finished:
        metrics["eval_round"] = eval_rounds(epoch + 1, eval_interval, finished)
        if rank == 0:
            _evaluate(run, progress, epoch, metrics)
    metrics["best"] = progress.best
    metrics["planned_epochs"] = run.planned_epochs
    reported = {k: v for k, v in metrics.items() if v is not None}
    save = finished or (epoch + 1) % max(1, settings.checkpoint_interval) == 0
    ckpt_name = epoch_dir_name(epoch + 1)
    ckpt = _save_epoch_checkpoint(run, progress, epoch, ckpt_name) if rank == 0 and save else None
    if run.metrics_log is not None:
        run.metrics_log.write(progress.global_step, reported)
    if save:
        from ray.train import CheckpointUploadMode
        # The checkpoint is already in the run folder: Ray registers it without a copy.
        ray.train.report(reported, checkpoint=ckpt, checkpoint_dir_name=ckpt_name,
                         checkpoint_upload_mode=CheckpointUploadMode.NO_UPLOAD)
    else:
        ray.train.report(reported)
    if read_stopped(run.run_dir) is not None:  # rank 0 stopped the run while the others waited
        return True
    if finished:
        if progress.faults_total or progress.skipped_total:
            run.log.say(f"[summary] {progress.faults_total} sample(s) skipped over the run "
                        f"(logs/faults.txt), {progress.skipped_total} batch(es) with a non-finite loss skipped")
        return True
    return False


def _epoch_summary(run: _Run, m: dict[str, Any]) -> None:
    """Rank 0's line after each epoch: time, speed over all workers, loss, and how long the step
    waited for data (this worker), with advice when the loader starves the step."""
    t = max(m["epoch_time_s"], 1e-9)
    wait = m["data_wait_fraction"]
    advice = " - the loader is the bottleneck: raise data.loader_workers" if wait > 0.2 else ""
    run.log.say(f"epoch {m['epoch']}/{run.settings.epochs} done in {t:.1f} s: {m['samples'] / t:.1f} img/s, "
                f"loss {m['loss']:.6f}, data wait {m['data_wait_ms_per_step']:.1f} ms/step "
                f"({wait:.0%} of the epoch){advice}")


def _epoch_task_logs(run: _Run, epoch: int, stats: _EpochStats) -> dict[str, float]:
    """The epoch means of the task's step figures over all workers, handed to ``task.end_epoch``
    (loss balancing that adapts per epoch); returns both for the epoch's metrics."""
    parts = gather_lists([(stats.plain_log_sums(), stats.log_counts)], run.world)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for part_sums, part_counts in parts:
        for k, v in part_sums.items():
            sums[k] = sums.get(k, 0.0) + v
            counts[k] = counts.get(k, 0) + part_counts[k]
    means = {k: sums[k] / max(1, counts[k]) for k in sorted(sums)}
    return {**means, **run.task.end_epoch(epoch, means)}


def _epoch_faults(run: _Run, progress: _Progress, epoch: int, stats: _EpochStats) -> dict[str, Any]:
    """Gather the skipped samples of all workers, log them, stop the run past
    ``max_fault_fraction``; returns the epoch's training metrics."""
    settings, batch_size = run.settings, run.batch_size
    all_faults = gather_lists(stats.faults, run.world)
    seen_total = sum(gather_lists([stats.n_seen + stats.skipped * batch_size], run.world))
    progress.faults_total += len(all_faults)
    progress.skipped_total += stats.skipped
    metrics: dict[str, Any] = {**run.cost, "startup_s": progress.startup_s, "epoch": epoch + 1,
                               "loss": stats.loss_sum / max(1, stats.n_seen),
                               "lr": run.optimizer.param_groups[0]["lr"], "faults": len(all_faults),
                               "faults_total": progress.faults_total, "skipped_batches": stats.skipped,
                               "epoch_time_s": time.time() - stats.t0, "samples": seen_total,
                               "data_wait_ms_per_step": 1e3 * stats.data_wait_s / max(1, stats.steps),
                               "data_wait_fraction": stats.data_wait_s / max(1e-9, time.time() - stats.t0)}
    if all_faults:
        run.log.say(f"[data] epoch {epoch + 1}: {len(all_faults)} sample(s) skipped (listed in "
                    f"logs/faults.txt): " + "; ".join(sorted(set(all_faults))[:5]))
        run.log.faults(epoch + 1, all_faults)
    fault_fraction = len(all_faults) / max(1, seen_total)
    if fault_fraction > settings.max_fault_fraction:
        raise StopRun(f"{len(all_faults)} of {seen_total} samples ({fault_fraction:.1%}) were skipped in "
                      f"epoch {epoch + 1}, more than train.max_fault_fraction="
                      f"{settings.max_fault_fraction}; see {run.run_dir / 'logs' / 'faults.txt'}")
    if stats.skipped / run.batches_per_epoch > settings.max_fault_fraction:
        raise StopRun(f"{stats.skipped} of {run.batches_per_epoch} batches had a non-finite loss in epoch "
                      f"{epoch + 1}, more than train.max_fault_fraction={settings.max_fault_fraction}; "
                      "lower the learning rate or check the data")
    return metrics


def _evaluate(run: _Run, progress: _Progress, epoch: int, metrics: dict[str, Any]) -> None:
    """Rank 0's evaluation after an epoch: adds its results to ``metrics`` and saves ``best.pth``
    when the primary metric improved."""
    t_eval = time.time()
    try:
        stats = run.task.evaluate(run.core, run.run_dir / "eval" / f"epoch_{epoch + 1:03d}", run.device,
                                  autocast=run.autocast)
    except PlatformError as e:  # deterministic: a Ray retry would fail the same way
        raise StopRun(f"evaluation after epoch {epoch + 1} failed: {e}") from None
    metrics.update(stats)
    metrics["eval_time_s"] = time.time() - t_eval
    key = run.task.primary_metric
    if key in stats:
        run.log.say(f"epoch {epoch + 1}: {key} {stats[key]:.4f} (eval {metrics['eval_time_s']:.0f}s)")
        best = progress.best
        better = best is None or (stats[key] > best if run.task.greater_is_better else stats[key] < best)
        if better:
            progress.best = stats[key]
            save_checkpoint(run.run_dir / "best.pth", run.core, meta={"epoch": epoch + 1, key: progress.best,
                                                                      "config": run.cfg, **run.task.checkpoint_meta()})


def _save_epoch_checkpoint(run: _Run, progress: _Progress, epoch: int, ckpt_name: str) -> Any:
    """Rank 0: write the epoch checkpoint to the run folder, record it in ``latest.json``, prune old
    ones; returns it as a Ray checkpoint."""
    import ray.train

    meta = {"epoch": epoch, "global_step": progress.global_step, "best": progress.best, "config": run.cfg,
            "faults_total": progress.faults_total, "skipped_batches_total": progress.skipped_total,
            "world_size": run.world, "total_batch": run.total_batch, **run.task.checkpoint_meta()}
    ckpt_dir = run.run_dir / CHECKPOINTS / ckpt_name
    save_checkpoint(ckpt_dir / CKPT_FILE, run.core, meta=meta, optimizer=run.optimizer.state_dict(),
                    scheduler=run.scheduler.state_dict(),
                    scaler=run.scaler.state_dict() if run.scaler is not None else None,
                    task_state=run.extras.state_dict() if run.extras is not None else None)
    record_latest(run.run_dir, ckpt_dir, epoch + 1, progress.global_step)
    prune_checkpoints(run.run_dir, run.settings.keep_checkpoints)
    return ray.train.Checkpoint.from_directory(str(ckpt_dir))
