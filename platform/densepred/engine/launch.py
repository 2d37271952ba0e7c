"""Start training on Ray Train: a local Ray instance by default, or an existing cluster."""
from __future__ import annotations

import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import LoadedConfig, parse_section, setting
from ..errors import ConfigError, PlatformError
from .cluster import (DEFAULT_CONNECT_TIMEOUT_S, check_reachable, color_env, init_with_timeout, resolve_auto,
                      start_local_ray, wait_for_cpus)
from .loop import TrainSettings, run_dir_of, train_worker
from .preflight import preflight
from .run_config import check_rerun, describe, write_run_config
from .run_state import CKPT_FILE, STOPPED, read_latest, read_stopped
from .run_record import begin_run, end_run
from .runlog import RunLog
from ..tracking.settings import MlflowTarget, tracking_target


@dataclass
class RaySettings:
    """``ray`` section of a task YAML; CLI flags (--workers, --gpu, --address) override it."""

    workers: Any = 1                 # N, or [MIN, MAX]: elastic (starts with MIN, grows to MAX, shrinks on node loss)
    use_gpu: bool = False
    # < 1 lets several workers share a GPU (e.g. 0.5: two per GPU); they then talk over gloo,
    # since NCCL refuses two ranks on one device.
    gpus_per_worker: float = setting(1.0, gt=0, le=1)
    cpus_per_worker: int = setting(1, ge=1)
    address: Optional[str] = None
    max_failures: int = setting(3, ge=-1)  # worker-group restarts (from the newest checkpoint); -1: no limit
    storage: Optional[str] = None    # run folders go here (default work_dir); shared path on a cluster
    connect_timeout_s: float = setting(DEFAULT_CONNECT_TIMEOUT_S, gt=0)  # joining --address, free CPUs
    resize_interval_s: float = setting(60.0, gt=0)  # elastic: how often Ray Train looks for more resources
    placement_timeout_s: float = setting(300.0, gt=0)  # a worker group not placed by then ends the run


def worker_range(value: Any, where: str = "ray.workers") -> tuple[int, int]:
    """``ray.workers``: a number N (fixed) or ``[MIN, MAX]`` (elastic), as (min, max)."""
    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if whole(value):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(whole(v) for v in value) and value[0] <= value[1]:
        return int(value[0]), int(value[1])
    raise ConfigError(f"{where} must be a whole number >= 1, or [MIN, MAX] with 1 <= MIN <= MAX (elastic), "
                      f"got {value!r}")


def plain(x: Any) -> Any:
    """A picklable plain copy of a config (Ray ships it to the workers)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


#: iterations an OpenMP thread spins at a barrier before it sleeps (libgomp; microseconds)
GOMP_SPINCOUNT = "10000"


def ray_init_kwargs() -> dict[str, Any]:
    # Ray Train V2 re-routes print() in workers through a logger and also tees it, which doubles
    # every progress line and defeats redirect_stdout; workers keep plain print.
    # Ray's INFO start-up lines carry ANSI colours even when redirected; warnings still show.
    # OpenMP threads that spin at every operator's barrier steal the core a busy neighbour (or
    # the data loader) needs: 2 threads then ran 15x slower than 1 on shared vCPUs. Waits that
    # sleep at once (PASSIVE) cost a third of the speed of 2 threads on a quiet machine, though:
    # the pose demo step ran at 76 img/s against 124 with spinning. A short spin before sleeping
    # (GOMP_SPINCOUNT, libgomp's bound, which overrides PASSIVE) keeps all of that speed and
    # bounds the stall; the thread probe still drops to 1 thread next to a busy neighbour.
    env = {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", GOMP_SPINCOUNT)}
    return {"ignore_reinit_error": True, "log_to_driver": True, "logging_level": logging.WARNING,
            "runtime_env": {"env_vars": env}}


def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None,
               timeout: float = DEFAULT_CONNECT_TIMEOUT_S, log_to_driver: bool = True) -> None:
    """Join ``address`` (checked first, with a bounded wait) or start a local Ray instance of this
    job's own (``cluster.start_local_ray``), once per process. ``log_to_driver=False`` keeps the
    workers' output off the console (sweeps: it is in each trial's logs)."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    color_env()
    kwargs = {**ray_init_kwargs(), "log_to_driver": log_to_driver}
    if address:
        if address == "auto":
            address = resolve_auto(address)
        check_reachable(address, timeout)
        init_with_timeout({**kwargs, "address": address}, timeout, address)
        return
    if num_cpus:
        kwargs["num_cpus"] = num_cpus
    start_local_ray(kwargs)


def user_error(e: BaseException) -> PlatformError:
    """The first error a user can act on inside Ray's wrappers (worker failures, causes), or a
    one-line summary of the failure."""
    seen: list[BaseException] = []
    stack = [e]
    while stack:
        err = stack.pop(0)
        if err is None or any(err is s for s in seen):
            continue
        seen.append(err)
        if isinstance(err, PlatformError):
            return err
        if type(err).__name__ == "WorkerGroupStartupTimeoutError":
            return PlatformError(f"the {getattr(err, 'num_workers', '')} worker(s) could not be placed within "
                                 f"ray.placement_timeout_s={os.environ.get('RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S')} s: "
                                 "the cluster is busy or too small; free resources, lower ray.workers or "
                                 "ray.cpus_per_worker, or raise ray.placement_timeout_s")
        stack += list(getattr(err, "worker_failures", {}).values())
        stack += [getattr(err, "controller_failure", None), err.__cause__, getattr(err, "cause", None)]
    root = seen[-1] if len(seen) > 1 else e
    first = str(root).strip().splitlines()
    return PlatformError(f"training failed: {type(root).__name__}: {first[-1] if first else ''} "
                         "(full traceback above)")


def check_paths(cfg: dict) -> dict:
    """The run-folder paths can hold run folders (``load_config`` made them absolute already)."""
    cfg.setdefault("work_dir", str(Path("work_dirs").resolve()))
    ray_cfg = cfg.get("ray") or {}
    if ray_cfg.get("storage"):
        if "://" in str(ray_cfg["storage"]):
            raise ConfigError(f"ray.storage={ray_cfg['storage']!r}: cloud URIs are not supported; use a "
                              "filesystem path that every node mounts at the same place (e.g. NFS)")
        ray_cfg["storage"] = str(Path(ray_cfg["storage"]).expanduser().resolve())
    for key, path in (("--storage / ray.storage", ray_cfg.get("storage")), ("work_dir", cfg["work_dir"])):
        if path and Path(path).exists() and not Path(path).is_dir():
            raise ConfigError(f"{key} {path} is a file; give a folder for the run folders")
    return cfg


def fit_cpus_per_worker(workers: int, wanted: int, use_gpu: bool, gpus_per_worker: float = 1.0) -> int:
    """CPUs per worker that the cluster can actually grant (Ray would otherwise wait forever)."""
    import ray

    total = int(ray.cluster_resources().get("CPU", 0))
    if use_gpu:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        needed = math.ceil(workers * gpus_per_worker - 1e-9)
        if gpus < needed:
            raise PlatformError(f"--gpu with {workers} worker(s) x ray.gpus_per_worker={gpus_per_worker:g} needs "
                                f"{needed} GPU(s); the Ray cluster has {gpus}")
    fitted = wanted if workers * wanted <= total else total // workers
    if fitted < 1:
        raise PlatformError(f"{workers} workers need at least {workers} CPUs; the Ray cluster has {total}. "
                            "Use fewer --workers or add nodes (see README: Running on a Ray cluster)")
    if fitted < wanted:
        print(f"[train] ray.cpus_per_worker={wanted} does not fit {workers} workers on {total} CPUs; "
              f"using {fitted} per worker", flush=True)
    return fitted


@dataclass
class LaunchPlan:
    """What the driver settled before starting Ray Train: checked config, run folder, scaling."""

    cfg: dict
    run_dir: Path
    settings: RaySettings
    train_settings: TrainSettings
    workers: int                 # the most workers (elastic runs start with min_workers)
    use_gpu: bool
    address: Optional[str]
    command: str                 # how the user can continue this run
    min_workers: int = 0         # < workers: elastic
    primary_metric: Optional[str] = None  # the task's metric (best.pth, curves)
    tracking: Optional[MlflowTarget] = None  # the MLflow store, when tracking is on

    @property
    def elastic(self) -> bool:
        return 0 < self.min_workers < self.workers

    def describe_workers(self) -> str:
        return f"{self.min_workers}-{self.workers} workers (elastic)" if self.elastic else f"{self.workers} worker(s)"


def plan_run(cfg: dict, workers: Optional[int], use_gpu: Optional[bool], address: Optional[str],
             resume: bool, storage: Optional[str], allow_changes: bool,
             check_data: bool = True) -> tuple[LaunchPlan, list]:
    """Every check that needs no Ray: sections, paths, task, optimizer, weights, the data
    (``check_data``: what `platform data check` finds quickly), the run folder's config. Nothing
    is written yet."""
    # Sections are checked on the loaded config, whose errors name the file or --set that set a key.
    settings = parse_section(cfg, "ray", RaySettings)
    train_settings = parse_section(cfg, "train", TrainSettings)
    source = getattr(cfg, "source", None)
    loaded, cfg = cfg, plain(cfg)
    if storage:
        cfg.setdefault("ray", {})["storage"] = storage
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    min_workers, max_workers = (workers, workers) if workers is not None else worker_range(
        settings.workers, f"{source_of(cfg, 'ray.workers')}: ray.workers")
    cfg = check_paths(cfg)
    task = preflight(_with_sources(cfg, loaded), (cfg.get("train") or {}).get("load_from"))
    task_file = _display_path(source) if source else "TASK.yaml"
    if check_data:
        check_task_data(task, train_settings.max_fault_fraction, task_file)
    warn_schedule(cfg, train_settings)
    if not cfg.get("run_name"):
        cfg["run_name"] = "run"
    run_dir = run_dir_of(cfg)
    if resume and not run_dir.is_dir():
        raise PlatformError(f"--resume: no run named '{cfg['run_name']}' in {run_dir.parent} "
                            "(check --set run_name=... and work_dir / --storage)")
    if allow_changes and not resume:
        raise PlatformError("--allow-changes goes with --resume (continue a run whose config changed)")
    changes = check_rerun(run_dir, cfg, resume, allow_changes)
    plan = LaunchPlan(cfg, run_dir, settings, train_settings, max_workers,
                      settings.use_gpu if use_gpu is None else use_gpu, address or settings.address,
                      resume_command(run_dir, workers, use_gpu, address), min_workers,
                      task.primary_metric, tracking_target(_with_sources(cfg, loaded), run_dir.parent))
    return plan, changes


def source_of(cfg: Any, key: str) -> str:
    return cfg.where(key) if hasattr(cfg, "where") else "config"


def resume_command(run_dir: Path, workers: Optional[int], use_gpu: Optional[bool], address: Optional[str]) -> str:
    """How to continue a run exactly as it was started: its own config.yaml (every --set value is
    in it) and the command-line flags that are not config keys."""
    from .run_config import CONFIG_FILE

    flags = (f" --workers {workers}" if workers else "") + (" --gpu" if use_gpu else "") \
        + (f" --address {address}" if address else "")
    return f"platform train {_display_path(run_dir / CONFIG_FILE)} --resume{flags}"


def warn_schedule(cfg: dict, settings: TrainSettings) -> None:
    """Milestones past the end of the schedule (a shortened run of a long recipe): said, not silent."""
    from .optim_args import milestones_past_end

    sched = cfg.get("scheduler") or {}
    if sched.get("by_iter"):
        total, unit = settings.iters or settings.max_iters, "iterations"
    elif settings.iters:
        return  # epochs follow from the data: known in the workers only
    else:
        total, unit = settings.epochs, "epochs"
    note = milestones_past_end(sched, total, unit) if total else None
    if note:
        print(f"[train] note: {note}", flush=True)


def check_task_data(task: Any, max_fault_fraction: float, task_file: str) -> None:
    """The quick data check (`platform data check` reads everything): warnings are printed, the
    first error stops the run before Ray starts."""
    from ..datacheck import DataReport

    report = DataReport(max_fault_fraction=max_fault_fraction)
    task.check_data(report, full=False)
    for line in report.info:
        print(f"[data] {line}", flush=True)
    for line in report.warnings:
        print(f"[data] warning: {line}", flush=True)
    report.raise_errors(f"`platform data check {task_file}` lists them")


def _with_sources(cfg: dict, loaded: Any) -> dict:
    """``cfg`` that still says which file or ``--set`` set each key (for the preflight's errors)."""
    if not isinstance(loaded, LoadedConfig):
        return cfg
    view = LoadedConfig(cfg)
    view.source, view.chain, view.overrides = loaded.source, loaded.chain, loaded.overrides
    return view


def _display_path(p: Path) -> str:
    try:
        return str(Path(p).relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def start_ray(plan: LaunchPlan) -> int:
    """Join or start Ray and check that the cluster can hold the run; returns CPUs per worker."""
    if not plan.address:
        # Node preemption notices only exist on clusters; locally the watcher is an idle actor
        # whose start-up prints an error-level line.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    timeout = plan.settings.connect_timeout_s
    ensure_ray(plan.address, num_cpus=None, timeout=timeout)
    needed = plan.min_workers or plan.workers  # an elastic run starts as soon as its minimum fits
    cpus = fit_cpus_per_worker(needed, plan.settings.cpus_per_worker, plan.use_gpu, plan.settings.gpus_per_worker)
    wait_for_cpus(needed * cpus, timeout, f"{needed} worker(s) x {cpus} CPU(s)")
    return cpus


def open_run_folder(plan: LaunchPlan, changes: list) -> RunLog:
    """Create (or reopen) the run folder, say what is resumed and what changed, save config.yaml."""
    run_dir, cfg = plan.run_dir, plan.cfg
    existed = (run_dir / "logs").is_dir()
    log = RunLog(run_dir)
    latest = read_latest(run_dir)
    if existed:
        log.say(f"[train] run folder {run_dir} exists: resuming from its latest checkpoint if it has one "
                "(use --set run_name=NEW to start a new run)")
    if changes:
        log.say(f"[train] config changes since the run started: {describe(changes, limit=20)}")
    if latest:
        log.say(f"[train] latest complete checkpoint: epoch {latest['epoch']} ({latest['path']}, {latest['time']})")
    (run_dir / STOPPED).unlink(missing_ok=True)
    write_run_config(run_dir, cfg)
    return log


#: seconds one start of an elastic worker group waits for placement before Ray Train decides again
ELASTIC_START_TRY_S = 10.0


def placement_tries(placement_timeout_s: float, elastic: bool) -> tuple[float, int]:
    """(seconds one worker-group start waits, starts tried) within ``ray.placement_timeout_s``.

    A fixed-size run tries once for the whole time and then ends with one line. An elastic run
    tries in short rounds: after a lost node, Ray Train (2.60) first asks for as many workers as
    the cluster's reservation still counts, the dead node's included; the start times out, and the
    next decision, once the reservation has caught up, starts with the workers that remain."""
    if not elastic:
        return placement_timeout_s, 1
    return ELASTIC_START_TRY_S, max(1, math.ceil(placement_timeout_s / ELASTIC_START_TRY_S))


def build_trainer(plan: LaunchPlan, cpus: int, callbacks: Optional[list] = None,
                  extra: Optional[dict] = None) -> Any:
    """The TorchTrainer of a planned run; ``callbacks`` go to Ray Train (e.g. Tune's report
    callback), ``extra`` to the workers' loop config (e.g. ``t_start`` to measure start-up)."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    settings = plan.settings
    start_timeout, start_tries = placement_tries(settings.placement_timeout_s, plan.elastic)
    # Ray Train reads this in the controller (propagated from the process that fits): a worker group
    # that cannot be placed for this long ends the run instead of waiting for ever.
    os.environ["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"] = str(start_timeout)
    resources: dict[str, float] = {"CPU": cpus}
    shared_gpu = plan.use_gpu and settings.gpus_per_worker < 1
    if shared_gpu:
        resources["GPU"] = settings.gpus_per_worker
    return TorchTrainer(
        train_worker,
        train_loop_config={"cfg": plan.cfg, "threads": cpus, "fit_id": uuid.uuid4().hex,
                           "max_failures": settings.max_failures, "max_workers": plan.workers, **(extra or {})},
        scaling_config=ScalingConfig(num_workers=(plan.min_workers, plan.workers) if plan.elastic else plan.workers,
                                     use_gpu=plan.use_gpu, resources_per_worker=resources,
                                     elastic_resize_monitor_interval_s=settings.resize_interval_s),
        torch_config=TorchConfig(backend="gloo") if shared_gpu and plan.workers > 1 else None,
        run_config=RunConfig(
            name=plan.cfg["run_name"], storage_path=str(plan.run_dir.parent),
            # Ray deletes the registered checkpoints beyond K; run_state.prune_checkpoints those
            # it never registered. best.pth is never pruned.
            checkpoint_config=CheckpointConfig(num_to_keep=max(1, plan.train_settings.keep_checkpoints)),
            # Ray's INFO lines (e.g. its advice to delete a run folder that the platform resumes
            # on purpose) contradict the platform's own messages; warnings and errors still show.
            logging_config=LoggingConfig(log_level="WARNING"), callbacks=callbacks,
            failure_config=FailureConfig(max_failures=settings.max_failures, controller_failure_limit=start_tries - 1)),
    )


def train(cfg: dict, workers: Optional[int] = None, use_gpu: Optional[bool] = None,
          address: Optional[str] = None, resume: bool = False, storage: Optional[str] = None,
          allow_changes: bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the final metrics and paths.

    Everything that can be checked without Ray is checked first; the run folder is created only
    once Ray is up and can hold the run. Ray restarts a failed worker group up to
    ``ray.max_failures`` times from the newest checkpoint (errors that would repeat are not
    retried). Ctrl-C stops the workers and leaves the run resumable.
    """
    t_start = time.time()
    plan, changes = plan_run(cfg, workers, use_gpu, address, resume, storage, allow_changes)
    cpus = start_ray(plan)
    log = open_run_folder(plan, changes)
    ts = plan.train_settings
    log.say(f"[train] run '{plan.cfg['run_name']}' in {plan.run_dir}: {plan.describe_workers()}, "
            f"{'GPU' if plan.use_gpu else 'CPU'}, "
            + (f"{ts.iters} iterations" if ts.iters else f"{ts.epochs} epoch(s)")
            + f", up to {plan.settings.max_failures} worker-group restart(s)")
    record = begin_run(plan)
    try:
        result = fit_interruptibly(build_trainer(plan, cpus, extra={"t_start": t_start, **record.worker_config()}))
    except KeyboardInterrupt:
        log.say(f"[train] interrupted: stopping the workers. Finished epochs are kept in {plan.run_dir}; "
                f"continue with: {plan.command}")
        end_run(record, "interrupted", "Ctrl-C or SIGTERM")
        shutdown_ray()
        raise
    except Exception as e:
        err = user_error(e)
        log.say(f"[train] failed: {err}")
        end_run(record, "failed", str(err))
        raise err from None
    stopped = read_stopped(plan.run_dir)
    if stopped:
        log.say(f"[train] failed: training stopped: {stopped['reason']}")
        end_run(record, "failed", f"training stopped: {stopped['reason']}")
        raise PlatformError(f"training stopped: {stopped['reason']}")
    end_run(record, "finished")
    return summarize(plan, dict(result.metrics or {}), log)


def summarize(plan: LaunchPlan, metrics: dict, log: RunLog) -> dict[str, Any]:
    """The end of a run, on the console and in train.log; returns the summary for the caller."""
    run_dir = plan.run_dir
    latest = read_latest(run_dir)
    best = run_dir / "best.pth"
    if metrics.get("already_finished"):
        log.say(f"[train] nothing to do: run folder {run_dir} is complete")
    else:
        log.say(f"[train] finished: epoch {metrics.get('epoch')}, loss {metrics.get('loss', float('nan')):.6f}"
                + (f", {k} {metrics[k]:.4f}" if (k := _primary(metrics)) else "")
                + (f", best {metrics['best']:.4f}" if metrics.get("best") is not None else ""))
        if metrics.get("faults_total"):
            log.say(f"[train] {metrics['faults_total']} training sample(s) were skipped: see "
                    f"{run_dir}/logs/faults.txt")
        log.say(f"[train] run folder: {run_dir}" + (f"; best checkpoint: {best}" if best.exists() else ""))
    return {"run_dir": str(run_dir), "metrics": metrics,
            "best_checkpoint": str(best) if best.exists() else None,
            "last_checkpoint": str(run_dir / latest["path"] / CKPT_FILE) if latest else None}


def _primary(metrics: dict) -> Optional[str]:
    return next((k for k in ("AP", "mIoU") if isinstance(metrics.get(k), (int, float))), None)


def fit_interruptibly(trainer: Any) -> Any:
    """``trainer.fit()`` in a helper thread, so that Ctrl-C (and SIGTERM, see the CLI) reach this
    thread as ``KeyboardInterrupt``. On the main thread Ray Train installs its own SIGINT handler,
    which aborts the run and then exits the process with status 1 before our clean-up can run."""
    import threading

    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="ray-train-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
    if "error" in box:
        raise box["error"]
    return box["result"]


def shutdown_ray() -> None:
    """Stop what this driver started (workers, placement groups, a local Ray instance)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
