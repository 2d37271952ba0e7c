"""The `platform` command: help on every subcommand, models listing, convert, one-line errors."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import REPO
from densepred.cli import build_parser, main

SEG_SMALL = REPO / "configs" / "models" / "seg_hrnetv2_w18_small_v1.yaml"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "densepred.cli", *args], capture_output=True, text=True, cwd=REPO)


def test_every_subcommand_has_help():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"models", "convert", "info"} <= set(commands)
    for name in commands:
        assert main([name, "--help"]) == 0


def test_version_and_info(capsys):
    from densepred import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"densepred {__version__}"
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "ray" in out and "cpu training precision with train.amp=true:" in out
    assert any(p in out for p in (": bf16 (", ": fp32 ("))


def test_set_does_not_swallow_the_task_path(tmp_path, capsys):
    """`train --set a=1 TASK` means the task TASK, not a --set item without '='."""
    rc = main(["data", "browse", "--set", "data_root=/nowhere", "--split", "val", "--out", str(tmp_path),
               "--set", "seed=1", str(REPO / "tasks" / "pose_demo.yaml")])
    assert rc == 2
    assert "data_root /nowhere does not exist" in capsys.readouterr().err


def test_models_lists_configs_with_parameter_counts(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "HRNet" in out and "HeatmapHead" in out and "HRNetV2SegHead" in out
    assert "pose_hrnet_w32" in out and "28,536,113" in out
    assert "seg_hrnetv2_w48" in out and "65,859,379" in out
    assert "pose_hourglass_8x256" in out and "32,819,328" in out and "pose_resnet50" in out and "33,999,697" in out
    w32 = next(line for line in out.splitlines() if "pose_hrnet_w32" in line).split()
    assert float(w32[2]) == pytest.approx(15.29, abs=0.01) and w32[3] == "256x192"  # GFLOPs counted, not typed in


def test_convert_official_segmentation_checkpoint(tmp_path, reference_dir):
    src = tmp_path / "official.pth"
    torch.save({"model." + k: v for k, v in torch.load(reference_dir / "seg_hrnetv2_w18_small_v1.pt")["state_dict"].items()}, src)
    out = tmp_path / "converted.pth"
    assert main(["convert", str(SEG_SMALL), str(src), str(out)]) == 0
    raw = torch.load(out, weights_only=True)
    assert raw["format"] == "densepred" and raw["meta"]["source_format"] == "official"
    assert "heads.seg.last_layer.3.weight" in raw["state_dict"]


def test_errors_are_one_line_with_status_2(tmp_path, reference_dir):
    res = run_cli("convert", str(SEG_SMALL), str(reference_dir / "pose_hrnet_tiny.pt"), str(tmp_path / "o.pth"))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint") and "does not fit" in lines[0]
    res = run_cli("convert", str(tmp_path / "missing.yaml"), "x.pth", "y.pth")
    assert res.returncode == 2 and res.stderr.strip().startswith("error: config file")
