"""What the benchmark ran on: CPU model and the flags that decide precision, threads, versions, GPUs."""
from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
from typing import Any

import torch

# The flags that matter for the numbers: AVX2-only CPUs emulate bf16 (~30x slower than fp32),
# AVX-512 BF16 and AMX run it natively.
BENCH_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "amx_int8")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and which of ``BENCH_CPU_FLAGS`` it reports (Linux /proc/cpuinfo)."""
    from ..sysinfo import cpu_description

    return cpu_description(BENCH_CPU_FLAGS)


def onednn_version() -> str:
    """oneDNN (MKL-DNN) version torch was built with, read from its build summary."""
    m = re.search(r"MKL-DNN v([0-9][0-9.]*)", torch.__config__.show())
    return m.group(1) if m else "unknown"


def short_machine_id() -> str:
    """8 hex digits naming this machine in result file names: a hash of /etc/machine-id (or the
    host name), so results of different machines do not overwrite each other."""
    try:
        with open("/etc/machine-id") as f:
            raw = f.read().strip()
    except OSError:
        raw = ""
    return hashlib.sha1((raw or socket.gethostname()).encode()).hexdigest()[:8]


def gpus() -> list[str]:
    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def machine_info() -> dict[str, Any]:
    """JSON-ready description of the machine and the software the numbers were measured with."""
    from ..engine.loop import amp_mode, cpu_has_fast_bf16
    from .timing import usable_threads

    model, flags = cpu_model_and_flags()
    return {
        "id": short_machine_id(),
        "cpu_model": model,
        "cpu_flags": flags,
        "amx": any(f.startswith("amx") for f in flags),
        "logical_cpus": os.cpu_count(),
        "threads": usable_threads(),
        "fast_bf16": cpu_has_fast_bf16(),
        "default_precision": amp_mode(torch.device("cpu"), True),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "onednn": onednn_version(),
        "python": sys.version.split()[0],
        "gpus": gpus(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
