"""What a run keeps on disk between attempts: epoch checkpoints, the record of the latest complete
one, retention, and choosing where to resume from.

Layout of a run folder (``<storage>/<run_name>``, shared by all nodes on a cluster)::

    checkpoints/epoch_0003/model.pth   one per saved epoch (the newest ``keep`` are kept)
    unregistered.json                  epoch checkpoints Ray never registered (retention is ours)
    latest.json                        the platform's record of the newest complete checkpoint
    stopped.json                       why the last attempt stopped early, if it did
    status.json                        running / finished / failed / interrupted / stopped, and times
    best.pth                           the best weights by the task's metric (never pruned)
    logs/                              train.log, metrics.jsonl, faults.txt, tensorboard/

Checkpoints are written by rank 0 straight into the run folder (temp file + rename) and then
registered with Ray without a copy. ``latest.json`` is replaced only after the checkpoint file is
complete, so a worker or driver killed at any moment leaves either the old or the new record, and a
checkpoint that Ray had no time to register before a hard crash is still found.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from ..atomicfile import write_text_atomic
from ..checkpoint import read_checkpoint
from ..errors import CheckpointError

CKPT_FILE = "model.pth"
LATEST = "latest.json"
CHECKPOINTS = "checkpoints"
UNREGISTERED = "unregistered.json"  # checkpoints Ray never registered (for retention)
STOPPED = "stopped.json"  # why the workers ended the run early (non-finite loss, too many faults)
STATUS = "status.json"    # the driver's record of the run's state, for `platform runs`
#: a run's states: "stopped" is a sweep trial ended early by its scheduler
STATES = ("running", "finished", "failed", "interrupted", "stopped")


def epoch_dir_name(epoch: int) -> str:
    """Folder name of the checkpoint written after ``epoch`` (1-based) completed."""
    return f"epoch_{epoch:04d}"


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON so that readers see the old or the new file, never half."""
    write_text_atomic(path, json.dumps(data, indent=1))


def record_latest(run_dir: Path, ckpt_dir: Path, epoch: int, global_step: int) -> None:
    """Point ``latest.json`` at a complete checkpoint (its file carries its own checksum)."""
    write_json_atomic(run_dir / LATEST, {"path": str(ckpt_dir.relative_to(run_dir)), "epoch": epoch,
                                         "global_step": global_step,
                                         "time": time.strftime("%Y-%m-%d %H:%M:%S")})


def _read_record(path: Path, key: str) -> Optional[dict]:
    try:
        rec = json.loads(path.read_text())
        return rec if isinstance(rec, dict) and key in rec else None
    except (OSError, ValueError):
        return None


def read_latest(run_dir: Path) -> Optional[dict]:
    """The platform record of the newest complete checkpoint, or None."""
    return _read_record(run_dir / LATEST, "path")


def read_stopped(run_dir: Path) -> Optional[dict]:
    """``{"epoch", "reason"}`` if the workers stopped the run early, else None."""
    return _read_record(run_dir / STOPPED, "reason")


def note_unregistered(run_dir: Path, ray_dir: Optional[Path]) -> list[str]:
    """Remember the epoch checkpoints Ray never registered: those newer than the newest one it did
    (written just before a crash, or in a copied run folder). Returns the full list."""
    ray_epoch = (_completed_epochs(ray_dir) or 0) if ray_dir is not None else 0
    path = run_dir / UNREGISTERED
    known = set((_read_record(path, "dirs") or {}).get("dirs", []))
    folder = run_dir / CHECKPOINTS
    if folder.is_dir():
        known |= {d.name for d in folder.glob("epoch_*") if (_completed_epochs(d) or 0) > ray_epoch}
    if known:
        write_json_atomic(path, {"dirs": sorted(known)})
    return sorted(known)


def prune_checkpoints(run_dir: Path, keep: int) -> list[Path]:
    """Retention for the checkpoints Ray does not know about (see ``note_unregistered``): delete
    those that are not among the newest ``keep``. Ray deletes the ones it registered
    (``CheckpointConfig.num_to_keep``); deleting those here would make Ray refuse the run folder."""
    folder = run_dir / CHECKPOINTS
    path = run_dir / UNREGISTERED
    record = _read_record(path, "dirs")
    if keep < 1 or not folder.is_dir() or not record:
        return []
    newest = {d.name for d in sorted(folder.glob("epoch_*"))[-keep:]}
    latest = read_latest(run_dir)
    if latest:
        newest.add(Path(latest["path"]).name)
    removed, left = [], []
    for name in record["dirs"]:
        if name in newest:
            left.append(name)
        else:
            shutil.rmtree(folder / name, ignore_errors=True)
            removed.append(folder / name)
    write_json_atomic(path, {"dirs": left})
    return removed


def count_attempt(run_dir: Path, fit_id: str, world: int = 0) -> tuple[int, int]:
    """Count worker-group starts of one ``platform train`` call (Ray starts a new group after a
    failure, or an elastic resize); returns this start's number (1 for the first) and the previous
    group's size (0 for the first)."""
    path = run_dir / "logs" / "attempts.json"
    record = _read_record(path, fit_id) or {}
    attempt = int(record.get(fit_id, 0)) + 1
    previous = int(record.get("world", 0)) if attempt > 1 else 0
    write_json_atomic(path, {fit_id: attempt, "world": int(world)})  # only the current call matters
    return attempt, previous


@dataclass
class ResumePoint:
    """A checkpoint to continue from and where it was found."""

    state: dict
    path: Path
    source: str


def _completed_epochs(folder: Path) -> Optional[int]:
    name = folder.name
    return int(name[len("epoch_"):]) if name.startswith("epoch_") and name[len("epoch_"):].isdigit() else None


def _candidates(run_dir: Path, ray_dir: Optional[Path]) -> list[tuple[int, str, Path]]:
    """(completed epochs, source, file), newest first, without reading the (large) files."""
    found: list[tuple[int, str, Path]] = []
    latest = read_latest(run_dir)
    if latest:
        found.append((int(latest.get("epoch", 0)), "the platform record latest.json",
                      run_dir / latest["path"] / CKPT_FILE))
    if ray_dir is not None:
        epochs = _completed_epochs(ray_dir)
        if epochs is None:  # a folder named by Ray (older runs): its epoch is inside the file
            try:
                epochs = int(read_checkpoint(ray_dir / CKPT_FILE)["meta"]["epoch"]) + 1
            except (CheckpointError, KeyError, TypeError, ValueError):
                epochs = 0
        found.append((epochs, "the checkpoint Ray registered", ray_dir / CKPT_FILE))
    folder = run_dir / CHECKPOINTS
    if folder.is_dir():
        for d in folder.glob("epoch_*"):
            if _completed_epochs(d) is not None:
                found.append((_completed_epochs(d), "the checkpoint folder", d / CKPT_FILE))
    found.sort(key=lambda c: -c[0])  # stable: the record wins ties
    return found


def find_resume_point(run_dir: Path, ray_dir: Optional[Path],
                      warn: Callable[[str], None] = print) -> Optional[ResumePoint]:
    """The newest readable checkpoint among the platform record, the one Ray registered and the
    checkpoint folder; a damaged file (bad checksum, truncated) is reported and an older one used."""
    seen: set[Path] = set()
    for _, source, path in _candidates(run_dir, ray_dir):
        key = path.resolve()
        if key in seen or not path.is_file():
            continue
        seen.add(key)
        try:
            return ResumePoint(read_checkpoint(path), path, source)
        except CheckpointError as e:
            warn(f"[resume] skipping a damaged checkpoint: {e}")
    return None


def write_status(run_dir: Path, status: str, reason: Optional[str] = None, metric: Optional[str] = None) -> None:
    """Record the run's state. ``running`` starts a clock (which process, since when); the other
    states stop it and add the time to ``elapsed_s`` (summed over every start of the run).
    ``metric`` names the task's metric (the one ``best`` in metrics.jsonl follows)."""
    assert status in STATES, status
    rec = _read_record(run_dir / STATUS, "status") or {}
    now = time.time()
    if metric:
        rec["metric"] = metric
    if status == "running":
        rec.update(status=status, started=now, host=socket.gethostname(), pid=os.getpid(), reason=None,
                   first_started=rec.get("first_started", now))
    else:
        if rec.get("status") == "running":
            started = float(rec.get("started", now))
            mine = rec.get("pid") == os.getpid() and rec.get("host") == socket.gethostname()
            # another process ends it (a sweep ending a stopped trial): it ran until its last log line
            end = now if mine else min(now, max(started, _last_activity(run_dir)))
            rec["elapsed_s"] = float(rec.get("elapsed_s", 0.0)) + max(0.0, end - started)
        rec.update(status=status, ended=now, reason=reason)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / STATUS, rec)


def read_status(run_dir: Path) -> Optional[dict]:
    """The run's recorded state; a ``running`` run whose process on this machine is gone (killed
    hard) reads as ``interrupted``."""
    rec = _read_record(run_dir / STATUS, "status")
    if rec and rec["status"] == "running" and not _owner_alive(rec):
        rec = {**rec, "status": "interrupted", "reason": "its process ended without a word (killed)"}
    return rec


def _owner_alive(rec: dict) -> bool:
    """Whether the process that marked a run as running still runs (assumed so on another machine)."""
    return rec.get("host") != socket.gethostname() or _alive(int(rec.get("pid", 0)))


def _last_activity(run_dir: Path) -> float:
    """When the run last wrote a log line or metric (the end of a run whose process was killed)."""
    times = [p.stat().st_mtime for p in (run_dir / "logs" / "train.log", run_dir / "logs" / "metrics.jsonl")
             if p.is_file()]
    return max(times, default=0.0)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
