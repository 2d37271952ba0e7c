"""`platform info`: what the platform runs on and what it would choose there."""
from __future__ import annotations

import platform as std_platform
import sys
from importlib import metadata
from typing import Optional

PACKAGES = ("densepred", "torch", "ray", "mmengine-lite", "opencv-contrib-python-headless", "numpy", "pycocotools",
            "faster-coco-eval", "cityscapesscripts", "onnx", "onnxruntime", "optuna", "matplotlib")
# Gap between the longest package name and its version, so no name runs into its version.
COLUMN_GAP = 2
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def package_lines(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    """One ``name  version`` line per package (``not installed`` when absent), the version column
    aligned past the longest name."""
    width = max(len(name) for name in packages) + COLUMN_GAP
    return [f"{name:{width}s}{_version(name)}" for name in packages]


def cpu_description(flags_of_interest: tuple[str, ...] = CPU_FLAGS) -> tuple[str, list[str]]:
    """The CPU's model name and which of ``flags_of_interest`` (by default the flags that matter for
    precision) it reports (Linux /proc/cpuinfo)."""
    model, flags = std_platform.processor() or "unknown CPU", set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, [f for f in flags_of_interest if f in flags]


def describe_system(address: Optional[str] = None) -> list[str]:
    """Lines for versions, CPU and precision, GPUs and (with ``address``) a Ray cluster."""
    import os

    import torch

    from .engine.loop import amp_mode

    lines = [f"python  {sys.version.split()[0]} ({sys.executable})"]
    lines += package_lines()
    model, flags = cpu_description()
    lines.append(f"cpu     {model}; {os.cpu_count()} logical CPU(s); flags: {', '.join(flags) or 'none of ' + ', '.join(CPU_FLAGS)}")
    precision = amp_mode(torch.device("cpu"), True)
    why = "native bf16" if precision == "bf16" else "no native bf16: bf16 would be far slower than fp32"
    lines.append(f"cpu training precision with train.amp=true: {precision} ({why}); torch threads {torch.get_num_threads()}")
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    lines.append(f"gpus    {', '.join(gpus) if gpus else 'none (CUDA not available)'}")
    if address:
        import ray

        from .engine.launch import ensure_ray

        ensure_ray(address)
        total, free = ray.cluster_resources(), ray.available_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        lines.append(f"ray cluster {address}: {len(nodes)} node(s); "
                     + ", ".join(f"{k} {free.get(k, 0):g}/{v:g} free" for k, v in sorted(total.items())
                                 if k in ("CPU", "GPU", "memory", "object_store_memory")))
        ray.shutdown()
    else:
        lines.append("ray     a local instance would be started by `platform train` (use --address to inspect a cluster)")
    return lines
