"""What a run leaves for its user besides checkpoints, from its start to its end: its state
(``status.json``, read by `platform runs`), its curves (``pictures/curves.png``) and, when tracking
is on, its MLflow run (opened by the driver, fed per epoch by rank 0, closed with the artifacts)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from ..tracking.settings import MlflowTarget
from .run_config import CONFIG_FILE, backbone_label
from .run_curves import PICTURES, write_curves
from .run_state import write_status

#: the platform's end states as MLflow run statuses
MLFLOW_STATUS = {"finished": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "stopped": "FINISHED"}


@dataclass
class RunRecord:
    run_dir: Path
    primary: Optional[str]
    title: str
    mlflow: Optional[MlflowTarget] = None

    def worker_config(self) -> dict[str, Any]:
        """What rank 0 needs to log each epoch to the same MLflow run."""
        return {"mlflow": asdict(self.mlflow)} if self.mlflow else {}


def run_tags(cfg: dict, run_dir: Path) -> dict[str, str]:
    """The MLflow tags of a run: what it trains and where its folder is."""
    return {"task": str((cfg.get("task") or {}).get("type", "?")), "backbone": backbone_label(cfg),
            "run_dir": str(run_dir)}


def begin_run(plan: Any, parent_run_id: Optional[str] = None) -> RunRecord:
    """Mark the run as running and open its MLflow run when tracking is on."""
    from ..tracking.mlflow_run import open_run, params_of

    cfg, run_dir = plan.cfg, plan.run_dir
    write_status(run_dir, "running", metric=plan.primary_metric)
    title = f"{cfg['run_name']}: {(cfg.get('task') or {}).get('type', '?')}, {backbone_label(cfg)}"
    record = RunRecord(run_dir, plan.primary_metric, title)
    if plan.tracking is not None:
        record.mlflow = open_run(plan.tracking, run_dir, cfg["run_name"], params_of(cfg), run_tags(cfg, run_dir),
                                 parent_run_id)
    return record


def end_run(record: RunRecord, status: str, reason: Optional[str] = None) -> Optional[Path]:
    """Record the end state, draw the curves, close the MLflow run with its artifacts (``config.yaml``
    and the pictures); returns the curves picture."""
    write_status(record.run_dir, status, reason)
    try:
        curves = write_curves(record.run_dir, record.primary, record.title)
    except Exception as e:  # a picture must never turn a finished run into a failed one
        print(f"[train] curves not drawn: {' '.join(str(e).split())[:200]}", flush=True)
        curves = None
    if record.mlflow is not None:
        from ..tracking.mlflow_run import close_run

        pictures = sorted((record.run_dir / PICTURES).glob("*.png"))
        close_run(record.mlflow, MLFLOW_STATUS[status],
                  [(record.run_dir / CONFIG_FILE, None)] + [(p, PICTURES) for p in pictures])
        print(f"[mlflow] run '{record.run_dir.name}' logged to {record.mlflow.uri} (experiment "
              f"'{record.mlflow.experiment}'); browse: mlflow ui --backend-store-uri {record.mlflow.uri}", flush=True)
    return curves
