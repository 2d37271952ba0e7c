"""Start training on Ray Train: a local Ray instance by default, or an existing cluster."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..config import parse_section
from ..errors import ConfigError, PlatformError
from .loop import CKPT_FILE, run_dir_of, train_worker


@dataclass
class RaySettings:
    """``ray`` section of a task YAML; CLI flags (--workers, --gpu, --address) override it."""

    workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: int = 1
    address: Optional[str] = None
    max_failures: int = 0


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
          address: Optional[str] = None, resume: bool = False) -> dict[str, Any]:
    """Run (or resume) a training run; returns a summary with the final metrics and paths."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .loop import TrainSettings

    settings = parse_section(cfg, "ray", RaySettings)
    train_settings = parse_section(cfg, "train", TrainSettings)
    workers = settings.workers if workers is None else workers
    use_gpu = settings.use_gpu if use_gpu is None else use_gpu
    address = address or settings.address
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    cfg = resolve_paths(plain(cfg))
    from ..tasks.base import build_task
    build_task(cfg).preflight()
    if not cfg.get("run_name"):
        cfg["run_name"] = "run"
    run_dir = run_dir_of(cfg)
    if resume and not run_dir.is_dir():
        raise PlatformError(f"--resume: no run named '{cfg['run_name']}' in {cfg['work_dir']} "
                            "(check --set run_name=... and work_dir)")
    if run_dir.is_dir() and not resume:
        print(f"[train] run folder {run_dir} exists: resuming from its latest checkpoint if it has one "
              "(use --set run_name=NEW to start a new run)", flush=True)
    ensure_ray(address, num_cpus=None)
    cpus = fit_cpus_per_worker(workers, settings.cpus_per_worker, use_gpu)
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"cfg": cfg, "threads": cpus},
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": cpus}),
        run_config=RunConfig(
            name=cfg["run_name"], storage_path=cfg["work_dir"],
            checkpoint_config=CheckpointConfig(num_to_keep=max(1, train_settings.keep_checkpoints)),
            failure_config=FailureConfig(max_failures=settings.max_failures)),
    )
    print(f"[train] run '{cfg['run_name']}' in {run_dir}: {workers} worker(s), "
          f"{'GPU' if use_gpu else 'CPU'}, "
          + (f"{train_settings.iters} iterations" if train_settings.iters else f"{train_settings.epochs} epochs"),
          flush=True)
    try:
        result = trainer.fit()
    except Exception as e:
        raise user_error(e) from None
    metrics = dict(result.metrics or {})
    summary = {"run_dir": str(run_dir), "metrics": metrics,
               "best_checkpoint": str(run_dir / "best.pth") if (run_dir / "best.pth").exists() else None,
               "last_checkpoint": str(Path(result.checkpoint.path) / CKPT_FILE) if result.checkpoint else None}
    return summary
