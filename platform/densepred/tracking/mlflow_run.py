"""One platform run as one MLflow run: opened by the driver (params, tags), fed per epoch by rank 0
(the records of ``logs/metrics.jsonl``), closed by the driver (status, ``config.yaml`` and the
pictures as artifacts). A resumed run continues the same MLflow run (its id is kept in
``logs/mlflow.json``); a sweep is a parent run whose trials are child runs.

Tracking never stops training: a store that cannot be written is reported in one line and the run
goes on."""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from ..atomicfile import write_text_atomic
from ..config import flatten
from .settings import MlflowTarget

RECORD = "mlflow.json"            # in the run folder's logs/ (a sweep's: in the sweep folder)
PARAM_VALUE_MAX = 6000            # MLflow's limit on a param value
PARAMS_PER_BATCH = 100            # MLflow's limit per log_batch call
ARTIFACTS = "mlartifacts"         # next to a SQLite store: the experiments' artifact folder
_BAD_NAME = re.compile(r"[^\w\-. /]")


def _client(uri: str) -> Any:
    for name in ("mlflow", "alembic"):  # the store's table creation lines are not news to users
        logging.getLogger(name).setLevel(logging.WARNING)
    from mlflow.tracking import MlflowClient
    return MlflowClient(tracking_uri=uri)


def metric_name(key: str) -> str:
    """The MLflow name of a ``metrics.jsonl`` key: characters MLflow refuses become ``_``."""
    return _BAD_NAME.sub("_", key)


def params_of(cfg: Mapping[str, Any]) -> dict[str, str]:
    """The flattened resolved config as MLflow params (``optimizer.lr`` -> ``"0.001"``)."""
    out = {}
    for k, v in flatten(cfg).items():
        text = v if isinstance(v, str) else json.dumps(v, default=str)
        out[metric_name(k)] = text[:PARAM_VALUE_MAX]
    return out


def _experiment_id(client: Any, target: MlflowTarget) -> str:
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(target.experiment)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = None
    if target.uri.startswith("sqlite:///"):  # else MLflow writes ./mlruns in whatever folder this runs in
        location = (Path(target.uri[len("sqlite:///"):]).parent / ARTIFACTS).resolve().as_uri()
    try:
        return client.create_experiment(target.experiment, artifact_location=location)
    except MlflowException:  # another job created it first
        return client.get_experiment_by_name(target.experiment).experiment_id


def _recorded_run(client: Any, record_path: Path, uri: str) -> Optional[str]:
    """The MLflow run this folder logged to before (same store), if it still exists."""
    try:
        record = json.loads(record_path.read_text())
        if record.get("tracking_uri") != uri:
            return None
        run = client.get_run(record["run_id"])
        return run.info.run_id if run.info.lifecycle_stage == "active" else None
    except Exception:  # no record, unreadable, or a run deleted from the store
        return None


def _log_params(client: Any, run_id: str, params: Mapping[str, str]) -> list[str]:
    """Log the params MLflow does not have yet (it refuses to change one); returns the changed keys."""
    from mlflow.entities import Param

    have = client.get_run(run_id).data.params
    new = [Param(k, v) for k, v in params.items() if k not in have]
    for i in range(0, len(new), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=new[i:i + PARAMS_PER_BATCH])
    return sorted(k for k, v in params.items() if k in have and have[k] != v)


def open_run(target: MlflowTarget, folder: Path, name: str, params: Mapping[str, str], tags: Mapping[str, str],
             parent_run_id: Optional[str] = None, record_dir: str = "logs") -> Optional[MlflowTarget]:
    """Open (or reopen, for a resumed run) the MLflow run of ``folder``; returns where to log, or
    None when the store cannot be written (said in one line)."""
    try:
        client = _client(target.uri)
        record_path = folder / record_dir / RECORD if record_dir else folder / RECORD
        run_id = _recorded_run(client, record_path, target.uri)
        if run_id is None:
            all_tags = {"mlflow.runName": name, **tags}
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id  # how MLflow nests a child run
            run_id = client.create_run(_experiment_id(client, target), run_name=name, tags=all_tags).info.run_id
        else:
            client.update_run(run_id, status="RUNNING")
        changed = _log_params(client, run_id, params)
        if changed:
            client.set_tag(run_id, "config_changed_on_resume", ", ".join(changed)[:PARAM_VALUE_MAX])
        record_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(record_path, json.dumps({"tracking_uri": target.uri, "run_id": run_id,
                                                   "experiment": target.experiment}))
        return replace(target, run_id=run_id)
    except Exception as e:
        print(f"[mlflow] tracking is off for this run: could not open a run in {target.uri}: "
              f"{' '.join(str(e).split())[:300]}", flush=True)
        return None


def metrics_of(record: Mapping[str, Any]) -> dict[str, float]:
    """The numbers of one ``metrics.jsonl`` record, under their MLflow names."""
    return {metric_name(k): float(v) for k, v in record.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("step", "time")}


def log_epoch(target: MlflowTarget, record: Mapping[str, Any], step: int) -> bool:
    """Log one epoch's record at ``step`` (the epoch number); False when the store refused it."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    try:
        metrics = [Metric(k, v, now, step) for k, v in metrics_of(record).items()]
        _client(target.uri).log_batch(target.run_id, metrics=metrics)
        return True
    except Exception as e:
        print(f"[mlflow] epoch {step} not logged to {target.uri}: {' '.join(str(e).split())[:300]}", flush=True)
        return False


def close_run(target: MlflowTarget, status: str, artifacts: Iterable[tuple[Path, Optional[str]]] = (),
              metrics: Optional[Mapping[str, float]] = None) -> None:
    """Attach ``(file, artifact folder)`` pairs that exist, log final ``metrics``, and end the run
    with MLflow's ``status`` (FINISHED, FAILED, KILLED)."""
    try:
        client = _client(target.uri)
        for path, folder in artifacts:
            if Path(path).is_file():
                client.log_artifact(target.run_id, str(path), artifact_path=folder)
        if metrics:
            for k, v in metrics.items():
                client.log_metric(target.run_id, metric_name(k), float(v))
        client.set_terminated(target.run_id, status=status)
    except Exception as e:
        print(f"[mlflow] could not close run {target.run_id} in {target.uri}: {' '.join(str(e).split())[:300]}",
              flush=True)
