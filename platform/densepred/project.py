"""Where the project's shipped data lives: the repository holding the ``platform/`` source root
(configs, tasks, tuning). Dataset metadata (keypoint and class info files) is data read from
``configs/datasets/``, so adding a data set is a YAML file."""
from __future__ import annotations

from pathlib import Path

#: the repository root (this file is platform/densepred/project.py)
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def shipped(kind: str, name: str) -> Path:
    """``configs/datasets/<kind>/<name>`` of the project (``kind``: keypoints, classes)."""
    return PROJECT_ROOT / "configs" / "datasets" / kind / name
