"""`platform bench --official-repo`: a missing or wrong checkout of the official HRNet code is one
`error:` line and exit status 2, before anything is measured (no model runs here; the timing itself
is exercised by `platform bench --official-repo PATH`)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from densepred.cli import main

ENV = "DENSEPRED_OFFICIAL_HRNET"


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_missing_path_through_python_m(tmp_path):
    out = tmp_path / "bench.json"
    env = {k: v for k, v in os.environ.items() if k != ENV}
    proc = subprocess.run([sys.executable, "-m", "densepred.cli", "bench", "--official-repo", "/nonexistent",
                           "--only", "train", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert "/nonexistent" in line and "is not a folder" in line and "lib/models/pose_hrnet.py" in line
    assert not out.exists()


@pytest.mark.parametrize("via_env", [False, True], ids=["flag", "env"])
def test_folder_without_the_official_files(tmp_path, monkeypatch, capsys, via_env):
    wrong = tmp_path / "not-hrnet"
    (wrong / "lib" / "models").mkdir(parents=True)
    (wrong / "lib" / "models" / "pose_hrnet.py").write_text("")
    out = tmp_path / "bench.json"
    argv = ["bench", "--only", "train", "--out", str(out)]
    if via_env:
        monkeypatch.setenv(ENV, str(wrong))
    else:
        monkeypatch.delenv(ENV, raising=False)
        argv += ["--official-repo", str(wrong)]
    assert main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(wrong) in line and "lib/core/loss.py" in line and "w32_256x192_adam_lr1e-3.yaml" in line
    assert "lib/models/pose_hrnet.py" not in line  # only what is missing is named
    assert not out.exists()
