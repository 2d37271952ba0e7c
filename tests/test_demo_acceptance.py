"""The demo recipes reach their targets (slow: ~8 and ~12 minutes on 2 CPU cores).

Run with `bash scripts/test.sh --slow`. These are the acceptance runs behind the README's figures:
the pose demo reaches COCO keypoint AP >= 0.5 and the segmentation demo mIoU >= 0.6 on their val
splits, through exactly the commands a user runs.
"""
from __future__ import annotations

import json

import pytest

from conftest import REPO
from densepred.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["data", "demo", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("task,data,metric,target", [
    ("pose_demo", "coco", "AP", 0.5),
    ("seg_demo", "cityscapes", "mIoU", 0.6),
])
def test_demo_recipe_reaches_target(ray_local, demo_data, tmp_path, task, data, metric, target):
    recipe = str(REPO / "tasks" / f"{task}.yaml")
    sets = ["--set", f"data_root={demo_data / data}", "--set", f"work_dir={tmp_path}"]
    assert main(["train", recipe, *sets]) == 0
    assert main(["eval", recipe, *sets, "--checkpoint", str(tmp_path / task / "best.pth"),
                 "--out", str(tmp_path / "eval")]) == 0
    stats = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert stats[metric] >= target, stats
