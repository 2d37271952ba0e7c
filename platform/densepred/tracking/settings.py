"""The ``tracking`` section of a task YAML: whether runs go to MLflow, and which store."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from ..config import parse_section
from ..errors import ConfigError

DB_FILE = "mlflow.db"
INSTALL_HINT = "install the tracking extra: pip install -e '.[tracking]' (scripts/env.sh installs it)"


@dataclass
class TrackingSettings:
    """``tracking: {mlflow: true}`` logs the run to MLflow; the store defaults to the SQLite file
    ``<work_dir>/mlflow.db`` (no server), ``tracking_uri`` names any other (``http://host:5000``)."""

    mlflow: bool = False
    tracking_uri: Optional[str] = None
    experiment: Optional[str] = None   # default: the task type (pose, segmentation, multitask, ...)


@dataclass(frozen=True)
class MlflowTarget:
    """Where one run logs: the store, the experiment, and (once opened) the MLflow run."""

    uri: str
    experiment: str
    run_id: Optional[str] = None


def default_uri(work_dir: Path) -> str:
    """``sqlite:////abs/work_dir/mlflow.db``: one store per work_dir, next to the run folders."""
    return "sqlite:///" + str((Path(work_dir) / DB_FILE).resolve())


def tracking_target(cfg: Mapping[str, Any], work_dir: Path, enable: bool = False) -> Optional[MlflowTarget]:
    """The MLflow store of a run, or None when tracking is off; ``enable`` is ``--mlflow``. Checked on
    the driver: a missing MLflow is a one-line error before anything starts."""
    settings = parse_section(cfg, "tracking", TrackingSettings)
    if not (settings.mlflow or enable):
        return None
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise ConfigError(f"tracking.mlflow is on but MLflow is not installed: {INSTALL_HINT}") from None
    if settings.tracking_uri is not None and not settings.tracking_uri.strip():
        raise ConfigError("tracking.tracking_uri is empty: give a store (sqlite:///path/mlflow.db, "
                          "http://host:5000) or null for <work_dir>/mlflow.db")
    experiment = settings.experiment or str((cfg.get("task") or {}).get("type") or "densepred")
    return MlflowTarget(settings.tracking_uri or default_uri(work_dir), experiment)
