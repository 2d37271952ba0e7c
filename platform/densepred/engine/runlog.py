"""What a run tells its user: progress lines on the console and in ``logs/train.log``, metrics in
``logs/metrics.jsonl`` and TensorBoard, skipped samples in ``logs/faults.txt``."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Optional


class RunLog:
    """Print a line and append it, time-stamped, to ``<run_dir>/logs/train.log``.

    The driver and rank 0 of every attempt append to the same file, so after worker restarts or a
    resumed run it tells the whole story in order."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.enabled = enabled
        self.path = run_dir / "logs" / "train.log"
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        print(text, flush=True)
        with open(self.path, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")

    def faults(self, epoch: int, entries: Iterable[str]) -> None:
        """Append the samples skipped in ``epoch`` to ``logs/faults.txt`` (one per line)."""
        entries = list(entries)
        if self.enabled and entries:
            with open(self.path.parent / "faults.txt", "a") as f:
                f.writelines(f"epoch {epoch}\t{e}\n" for e in entries)


class MetricsLog:
    """Metrics to a JSONL file, TensorBoard and, when tracking is on, the run's MLflow run (rank 0
    only; ``mlflow`` is the driver's ``MlflowTarget`` as a dict)."""

    def __init__(self, run_dir: Path, mlflow: Optional[dict] = None):
        self.mlflow = None
        if mlflow:
            from ..tracking.settings import MlflowTarget
            self.mlflow = MlflowTarget(**mlflow)
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
        if self.mlflow is not None and isinstance(record.get("epoch"), int):
            from ..tracking.mlflow_run import log_epoch
            log_epoch(self.mlflow, record, step=record["epoch"])
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self.tb.add_scalar(k, v, step)

    def scalars(self, step: int, values: dict) -> None:
        """TensorBoard points within an epoch (every ``train.log_interval`` iterations)."""
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        self.jsonl.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of ``logs/metrics.jsonl``, one per epoch (the last one written: an epoch that ran
    again after a restart replaces the earlier try), in epoch order. Unreadable lines are skipped."""
    by_epoch: dict[int, dict] = {}
    try:
        lines = (Path(run_dir) / "logs" / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:  # a line cut by a hard kill
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            by_epoch[record["epoch"]] = record
    return [by_epoch[e] for e in sorted(by_epoch)]
