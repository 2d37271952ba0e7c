"""`platform export --format onnx`: the file, its ONNX Runtime check, dynamic batch, one-line errors."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from conftest import REPO, TINY_POSE_MODEL
from densepred import build_model, load_config, save_checkpoint
from densepred.cli import main
from densepred.export import MISSING, OPSET, export_and_check

POSE_TASK = str(REPO / "tasks" / "pose_demo.yaml")
SETS = ["--set", "data_root=/not/needed/for/export"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def pose_ckpt(tmp_path_factory):
    """A checkpoint of the pose demo model (input 128x96) with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    model = build_model(load_config(POSE_TASK, SETS[1:]))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(tmp_path_factory.mktemp("export") / "pose_demo.pth", model), model.eval()


def ort_run(path, x: torch.Tensor) -> dict[str, np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {"image": x.numpy()})))


def test_tiny_pose_model_exports_and_onnx_runtime_matches(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = build_model({"model": TINY_POSE_MODEL}).eval()
    check = export_and_check(model, (64, 48), tmp_path / "tiny.onnx")
    graph = onnx.load(str(check.path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= OPSET
    assert [o.name for o in graph.graph.output] == ["pose"] and check.size_bytes > 0
    x = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)["pose"].numpy()
    assert np.abs(ort_run(check.path, x)["pose"] - expected).max() < 1e-4
    assert check.max_abs_diff < 1e-4 and "max abs diff" in check.describe()


def test_cli_export_dynamic_batch_accepts_batch_3(pose_ckpt, tmp_path, capsys):
    ckpt, model = pose_ckpt
    out = tmp_path / "pose_dyn.onnx"
    assert main(["export", POSE_TASK, *SETS, "--checkpoint", str(ckpt), "--format", "onnx", "--out", str(out),
                 "--dynamic-batch"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "MB" in printed and "max abs diff" in printed
    x = torch.randn(3, 3, 128, 96)
    with torch.no_grad():
        expected = model(x)["pose"].numpy()
    got = ort_run(out, x)["pose"]
    assert got.shape == (3, 17, 64, 48) and np.abs(got - expected).max() < 1e-4


def test_cli_export_default_out_is_next_to_the_checkpoint_with_fixed_batch(pose_ckpt, capsys):
    ckpt, _ = pose_ckpt
    assert main(["export", POSE_TASK, *SETS, "--checkpoint", str(ckpt)]) == 0
    out = ckpt.with_suffix(".onnx")
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out
    with pytest.raises(Exception, match="invalid dimensions for input: image"):   # batch fixed to 1
        ort_run(out, torch.randn(3, 3, 128, 96))


def test_cli_export_refuses_a_folder_as_out(pose_ckpt, tmp_path, capsys):
    ckpt, _ = pose_ckpt
    assert main(["export", POSE_TASK, *SETS, "--checkpoint", str(ckpt), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --out {tmp_path} is a folder")


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_cli_export_without_onnx_packages_says_how_to_get_them(monkeypatch, pose_ckpt, tmp_path, capsys, missing):
    monkeypatch.setitem(sys.modules, missing, None)   # `import <missing>` now raises ImportError
    ckpt, _ = pose_ckpt
    assert main(["export", POSE_TASK, *SETS, "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {MISSING}"
    assert MISSING == "platform export needs onnx and onnxruntime: pip install '.[export]'"
    assert not (tmp_path / "m.onnx").exists()
