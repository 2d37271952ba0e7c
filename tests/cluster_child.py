"""Running a multi-node ``ray.cluster_utils.Cluster`` test in a child process of its own (Ray temp
folder, session) so that the test session's shared Ray instance, and any other Ray instance on the
machine, are left alone; a hard timeout ends the child and everything it started.

``PREAMBLE`` is the start of every child script: it reads the parameters (``params``) and gives
``note(event, text)`` (timestamps in ``out["events"]``), ``log_text()`` / ``log_lines()`` (the run's
train.log) and ``wait_for(predicate, timeout, what)``. The script records what it saw in ``out``
and writes it to ``params["out"]`` as JSON.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conftest import REPO

PREAMBLE = r'''
import json, os, sys, threading, time, traceback
from pathlib import Path

params = json.loads(Path(sys.argv[1]).read_text())
run_dir = Path(params["run_dir"])
train_log = run_dir / "logs" / "train.log"
out = {"events": {}}
box = {}


def note(event, text):
    out["events"][event] = time.time()
    print(f"[{params['tag']}] {text}", flush=True)


def log_text():
    return train_log.read_text() if train_log.exists() else ""


def log_lines():
    return log_text().splitlines()


def wait_for(predicate, timeout, what):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        if "summary" in box or "error" in box:
            raise RuntimeError(f"training ended while waiting for {what}: {box.get('error')}")
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
'''


def session_members(sid: int) -> list[str]:
    """Live processes of session ``sid`` (the child and everything Ray started under it)."""
    found = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[3]) == sid and stat[0] != "Z":
                found.append(f"{pid} {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r}")
        except (OSError, ValueError, IndexError):
            pass
    return found


def run_cluster_child(tmp_path: Path, script: str, params: dict, hard_timeout_s: float) -> dict:
    """Run ``PREAMBLE + script`` in a child process; returns ``{returncode, hung, elapsed, tail,
    left, observed}`` (``observed``: what the script wrote to ``params["out"]``, or None)."""
    params = {**params, "out": str(tmp_path / "observed.json")}
    (tmp_path / "params.json").write_text(json.dumps(params))
    (tmp_path / "child.py").write_text(PREAMBLE + script)
    # A private Ray temp folder (short: Ray's socket paths must stay under 108 bytes): the cluster's
    # address file goes there, so no other `ray.init()` on this machine connects to this cluster.
    ray_tmp = tempfile.mkdtemp(prefix="rcc-")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")}
    env.update(PYTHONPATH=str(REPO / "platform"), RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp)
    t0, hung = time.time(), False
    with open(tmp_path / "child.out", "w") as out_file:
        proc = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(tmp_path / "params.json")],
                                cwd=tmp_path, env=env, stdout=out_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            proc.wait(timeout=hard_timeout_s)
        except subprocess.TimeoutExpired:  # end the child and every process of its session
            hung = True
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    elapsed = time.time() - t0
    tail = "\n".join((tmp_path / "child.out").read_text(errors="replace").splitlines()[-60:])
    deadline = time.time() + 30
    while session_members(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    left = session_members(proc.pid)
    for pid in left:
        os.kill(int(pid.split()[0]), signal.SIGKILL)
    shutil.rmtree(ray_tmp, ignore_errors=True)
    observed = json.loads((tmp_path / "observed.json").read_text()) if (tmp_path / "observed.json").is_file() else None
    return {"returncode": proc.returncode, "hung": hung, "elapsed": elapsed, "tail": tail, "left": left,
            "observed": observed}
