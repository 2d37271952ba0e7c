"""Start training on Ray Train: a local Ray instance by default, or an existing cluster."""
from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import parse_section
from ..errors import ConfigError, PlatformError
from .loop import run_dir_of, train_worker
from .run_state import CKPT_FILE, STOPPED, read_latest, read_stopped
from .runlog import RunLog


@dataclass
class RaySettings:
    """``ray`` section of a task YAML; CLI flags (--workers, --gpu, --address) override it."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    address: Optional[str] = None
    max_failures: int = 3            # worker-group restarts (from the newest checkpoint) before giving up
    storage: Optional[str] = None    # run folders go here (default work_dir); shared path on a cluster


def plain(x: Any) -> Any:
    """A picklable plain copy of a config (Ray ships it to the workers)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    return x


def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
    """Connect to ``address`` (a running cluster) or start a local Ray instance, once per process."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray Train V2 re-routes print() in workers through a logger and also tees it, which doubles
    # every progress line and defeats redirect_stdout; workers keep plain print.
    kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True,
                              "runtime_env": {"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}}}
    if address:
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


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
        stack += list(getattr(err, "worker_failures", {}).values())
        stack += [getattr(err, "controller_failure", None), err.__cause__, getattr(err, "cause", None)]
    root = seen[-1] if len(seen) > 1 else e
    first = str(root).strip().splitlines()
    return PlatformError(f"training failed: {type(root).__name__}: {first[-1] if first else ''} "
                         "(full traceback above)")


def resolve_paths(cfg: dict) -> dict:
    """Make user paths absolute on the driver: Ray workers run in another working directory."""
    cfg.setdefault("work_dir", "work_dirs")
    for key in ("work_dir", "data_root"):
        if cfg.get(key):
            cfg[key] = str(Path(cfg[key]).expanduser().resolve())
    train_cfg = cfg.get("train") or {}
    if train_cfg.get("load_from"):
        train_cfg["load_from"] = str(Path(train_cfg["load_from"]).expanduser().resolve())
    ray_cfg = cfg.get("ray") or {}
    if ray_cfg.get("storage"):
        if "://" in str(ray_cfg["storage"]):
            raise ConfigError(f"ray.storage={ray_cfg['storage']!r}: cloud URIs are not supported; use a "
                              "filesystem path that every node mounts at the same place (e.g. NFS)")
        ray_cfg["storage"] = str(Path(ray_cfg["storage"]).expanduser().resolve())
    return cfg


def fit_cpus_per_worker(workers: int, wanted: int, use_gpu: bool) -> int:
    """CPUs per worker that the cluster can actually grant (Ray would otherwise wait forever)."""
    import ray

    total = int(ray.cluster_resources().get("CPU", 0))
    if use_gpu:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < workers:
            raise PlatformError(f"--gpu with {workers} worker(s) needs {workers} GPU(s); the Ray cluster has {gpus}")
    if workers * wanted <= total:
        return wanted
    fitted = total // workers
    if fitted < 1:
        raise PlatformError(f"{workers} workers need at least {workers} CPUs; the Ray cluster has {total}. "
                            "Use fewer --workers or add nodes (see README: Running on a Ray cluster)")
    print(f"[train] ray.cpus_per_worker={wanted} does not fit {workers} workers on {total} CPUs; "
          f"using {fitted} per worker", flush=True)
    return fitted


def train(cfg: dict, workers: Optional[int] = None, use_gpu: Optional[bool] = None,
          address: Optional[str] = None, resume: bool = False, storage: Optional[str] = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the final metrics and paths.

    Ray restarts a failed worker group up to ``ray.max_failures`` times from the newest checkpoint.
    Ctrl-C stops the workers and leaves the run resumable (``--resume`` or the same run name).
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .loop import TrainSettings

    # Sections are checked on the loaded config, whose errors name the file or --set that set a key.
    settings = parse_section(cfg, "ray", RaySettings)
    train_settings = parse_section(cfg, "train", TrainSettings)
    cfg = plain(cfg)
    if storage:
        cfg.setdefault("ray", {})["storage"] = storage
    workers = settings.workers if workers is None else workers
    use_gpu = settings.use_gpu if use_gpu is None else use_gpu
    address = address or settings.address
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    cfg = resolve_paths(cfg)
    from ..tasks.base import build_task
    build_task(cfg).preflight()
    if not cfg.get("run_name"):
        cfg["run_name"] = "run"
    run_dir = run_dir_of(cfg)
    storage_path = str(run_dir.parent)
    if resume and not run_dir.is_dir():
        raise PlatformError(f"--resume: no run named '{cfg['run_name']}' in {storage_path} "
                            "(check --set run_name=... and work_dir / --storage)")
    existed = run_dir.is_dir()
    log = RunLog(run_dir)
    latest = read_latest(run_dir)
    if existed and not resume:
        log.say(f"[train] run folder {run_dir} exists: resuming from its latest checkpoint if it has one "
                "(use --set run_name=NEW to start a new run)")
    if latest:
        log.say(f"[train] latest complete checkpoint: epoch {latest['epoch']} ({latest['path']}, {latest['time']})")
    (run_dir / STOPPED).unlink(missing_ok=True)
    if not address:
        # Node preemption notices only exist on clusters; locally the watcher is an idle actor
        # whose start-up prints an error-level line.
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    ensure_ray(address, num_cpus=None)
    cpus = fit_cpus_per_worker(workers, settings.cpus_per_worker, use_gpu)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg, "threads": cpus, "fit_id": uuid.uuid4().hex,
                           "max_failures": settings.max_failures},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(
            name=cfg["run_name"], storage_path=storage_path,
            # Ray deletes the registered checkpoints beyond K; run_state.prune_checkpoints those
            # it never registered. best.pth is never pruned.
            checkpoint_config=CheckpointConfig(num_to_keep=max(1, train_settings.keep_checkpoints)),
            failure_config=FailureConfig(max_failures=settings.max_failures)),
    )
    log.say(f"[train] run '{cfg['run_name']}' in {run_dir}: {workers} worker(s), "
            f"{'GPU' if use_gpu else 'CPU'}, "
            + (f"{train_settings.iters} iterations" if train_settings.iters else f"{train_settings.epochs} epoch(s)")
            + f", up to {settings.max_failures} worker-group restart(s)")
    try:
        result = fit_interruptibly(trainer)
    except KeyboardInterrupt:
        log.say(f"[train] interrupted: stopping the workers. Finished epochs are kept in {run_dir}; "
                f"continue with: platform train TASK --resume --set run_name={cfg['run_name']}")
        shutdown_ray()
        raise
    except Exception as e:
        raise user_error(e) from None
    stopped = read_stopped(run_dir)
    if stopped:
        raise PlatformError(f"training stopped: {stopped['reason']}")
    metrics = dict(result.metrics or {})
    latest = read_latest(run_dir)
    return {"run_dir": str(run_dir), "metrics": metrics,
            "best_checkpoint": str(run_dir / "best.pth") if (run_dir / "best.pth").exists() else None,
            "last_checkpoint": str(run_dir / latest["path"] / CKPT_FILE) if latest else None}


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
