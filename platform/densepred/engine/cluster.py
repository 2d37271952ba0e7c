"""Joining a Ray cluster with bounded waits: every address problem is one line, never a hang."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from ..errors import PlatformError

DEFAULT_CONNECT_TIMEOUT_S = 30.0


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_ray(kwargs: dict[str, Any]) -> None:
    """``ray.init(**kwargs)`` for a local instance that this job's processes alone talk to.

    Ray's State API, which Ray Train's placement-group cleaner and controller call from inside the
    cluster, finds "its" cluster by scanning the machine when no address is set; with a second Ray
    instance on the machine (another `platform` job, a test suite) it fails with "Found multiple
    active Ray instances", the cleaner dies and its placement group leaks (Ray Train V2, 2.60).
    So the instance gets a dashboard port of its own, and every process of the job (driver,
    controller, cleaner, Tune trials, workers) is told its API server address through
    ``RAY_API_SERVER_ADDRESS``, which the State API reads before it scans."""
    import ray

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = dict((kwargs.get("runtime_env") or {}).get("env_vars") or {}, RAY_API_SERVER_ADDRESS=api)
    kwargs = {**kwargs, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port,
              "runtime_env": {**(kwargs.get("runtime_env") or {}), "env_vars": env}}
    ray.init(**kwargs)
    os.environ["RAY_API_SERVER_ADDRESS"] = api


def resolve_auto(address: str) -> str:
    """``auto`` -> the cluster this machine joined with ``ray start`` (or ``RAY_ADDRESS``). Unlike
    Ray's own ``auto`` it does not fall back to any Ray process it can find on the machine: another
    user's (or a test's) private instance is not a cluster to train on."""
    from ray._private.utils import read_ray_address

    found = os.environ.get("RAY_ADDRESS") or read_ray_address(None)
    if not found or found == "auto":
        raise PlatformError("--address auto: no running Ray cluster found on this machine; start one with "
                            "`ray start --head`, or leave out --address to train on a local Ray instance")
    return found


def split_address(address: str) -> tuple[str, int]:
    """``[ray://]host:port`` -> (host, port); PlatformError for anything else."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise PlatformError(f"--address {address!r}: expected HOST:PORT of the Ray head node "
                            "(e.g. 10.0.0.1:6379), or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout: float) -> None:
    """The head node's host resolves and its port accepts a TCP connection within ``timeout``."""
    host, port = split_address(address)
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror:
        raise PlatformError(f"--address {address}: cannot resolve the host name {host!r}; check the name, "
                            "or give the head node's IP address") from None
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        why = "timed out" if isinstance(e, (socket.timeout, TimeoutError)) else (e.strerror or str(e))
        raise PlatformError(f"--address {address}: nothing answers at {host}:{port} ({why}, waited up to "
                            f"{timeout:g}s); check that `ray start --head` runs there, the port "
                            "(default 6379) and the firewall") from None


def init_with_timeout(kwargs: dict[str, Any], timeout: float, address: str) -> None:
    """``ray.init(**kwargs)`` that gives up after ``timeout`` s (Ray itself retries for minutes)."""
    import ray

    box: dict[str, BaseException] = {}

    def connect() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    # ray.init off the main thread warns that it cannot install its SIGTERM handler; the platform
    # installs its own (see cli._sigterm_as_interrupt), so the warning is only noise.
    logging.getLogger("ray._private.worker").addFilter(lambda r: "SIGTERM handler is not set" not in r.getMessage())
    thread = threading.Thread(target=connect, name="ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise PlatformError(f"--address {address}: the port answers but no Ray cluster responded within "
                            f"{timeout:g}s (is it the GCS port of `ray start --head`, same Ray version?); "
                            "raise ray.connect_timeout_s if the cluster is just slow")
    if "error" in box:
        first = (str(box["error"]).strip().splitlines() or [type(box["error"]).__name__])[0]
        raise PlatformError(f"--address {address}: cannot join the Ray cluster: {first}")


def wait_for_cpus(needed: int, timeout: float, what: str) -> None:
    """Wait (bounded) until the cluster has ``needed`` CPUs free; other jobs may hold them."""
    import ray

    deadline = time.time() + timeout
    while True:
        free = float(ray.available_resources().get("CPU", 0.0))
        if free >= needed:
            return
        if time.time() >= deadline:
            total = int(ray.cluster_resources().get("CPU", 0))
            raise PlatformError(f"the Ray cluster has {free:g} of {total} CPUs free but {what} needs {needed}; "
                                "other jobs hold the rest. Wait for them, use fewer --workers, or lower "
                                "ray.cpus_per_worker")
        time.sleep(0.5)


def color_env() -> None:
    """No ANSI colour codes from Ray's worker-log prefixes when the output is not a terminal."""
    import sys

    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
