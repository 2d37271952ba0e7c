"""Small user-reported fixes: `platform info` columns, bench ratios and fractions of peak, and what
`platform eval --predictions` says about a folder given for a file (and the reverse)."""
from __future__ import annotations

import re

import pytest

from densepred.errors import DataError


# ------------------------------------------------------------------------------ platform info

def test_info_package_column_is_aligned_and_lists_the_runtimes():
    from densepred.sysinfo import PACKAGES, describe_system

    lines = describe_system()
    block = lines[1:1 + len(PACKAGES)]  # right after the python line
    assert [line.split()[0] for line in block] == list(PACKAGES)
    by_name = dict(zip(PACKAGES, block))
    for name in ("onnx", "onnxruntime", "faster-coco-eval", "optuna", "matplotlib"):
        assert name in by_name
    for name, line in by_name.items():
        # the longest name (opencv-contrib-python-headless) must not run into its version
        assert re.match(rf"^{re.escape(name)} {{2,}}\S", line), line
        assert line.rstrip().endswith("not installed") or re.search(r"\d", line[len(name):]), line
    starts = {len(line) - len(line[len(name):].lstrip()) for name, line in by_name.items()}
    assert len(starts) == 1  # one version column


# ------------------------------------------------------------------------------ platform bench

def _peak(fp32: float, bf16: float) -> dict:
    rows = [{"op": "matmul", "precision": p, "threads": t, "shape": "1x1x1", "gflops_per_s": v, "emulated": False}
            for p, v in (("fp32", fp32), ("bf16", bf16)) for t in (1, 2)]
    return {"rows": rows, "thread_counts": [1, 2]}


def test_data_ratio_is_pipeline_over_decode_as_in_the_readme():
    from densepred.bench.data import data_row
    from densepred.bench.report import data_lines

    row = data_row("pose", 6, 100, 204.0, 406.0, {"image_wh": [640, 480], "format": "JPEG"})
    assert row["pipeline_over_decode"] == pytest.approx(204 / 406, rel=1e-2)  # 0.50x, not 1.99x
    lines = data_lines({"rows": [row]})
    assert "pipeline/decode" in lines[0] and lines[1].rstrip().endswith("0.502x")
    assert "pipeline samples/s / decode-only samples/s" in "\n".join(lines)


def test_fraction_of_peak_uses_the_peak_of_the_same_precision():
    from densepred.bench.infer import path_figures
    from densepred.bench.peak import against_peak
    from densepred.bench.report import infer_lines

    peak = _peak(fp32=100.0, bf16=400.0)
    # 10 img/s of 20 GFLOP each = 200 GFLOP/s: half the bf16 peak, twice the fp32 one
    bf16 = path_figures(0.05, 1.0, 10, 20.0, peak, "bf16", 2)
    assert bf16["fraction_of_peak"] == pytest.approx(0.5) and bf16["peak_gflops_per_s"] == 400.0
    fp32 = path_figures(0.05, 2.0, 10, 10.0, peak, "fp32", 2)
    assert fp32["fraction_of_peak"] == pytest.approx(0.5) and fp32["precision"] == "fp32"
    assert against_peak(300.0, peak, "bf16", 1)["fraction_of_peak"] == pytest.approx(0.75)
    assert against_peak(50.0, peak, "fp16", 2)["fraction_of_peak"] is None  # no fp16 peak: no comparison
    entry = {"model": "m", "input_hw": [8, 8], "eager_fp32": fp32, "optimised": {**bf16, "plan": "fold+cl+bf16"},
             "optimised_error": None}
    lines = infer_lines({"models": [entry], "threads": 2, "thread_probe": {"probe_ms": {1: 1.0}}})
    assert "50% | 50%" in lines[1] and "of the bf16 peak" in lines[2]


# ------------------------------------------------------------------------------ eval --predictions

def _one_line(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_pose_predictions_folder_says_what_file_to_give(tmp_path):
    from densepred.tasks.pose.evaluation import load_results

    with pytest.raises(DataError) as e:
        load_results(tmp_path)
    message = _one_line(e)
    assert "is a folder" in message and "COCO keypoint results JSON" in message and "not found" not in message
    (tmp_path / "keypoints_results.json").write_text("[]")
    with pytest.raises(DataError, match=r"this folder has .*keypoints_results\.json"):
        load_results(tmp_path)
    with pytest.raises(DataError, match="file not found"):
        load_results(tmp_path / "missing.json")


def test_mpii_predictions_folder_says_what_file_to_give(tmp_path):
    from densepred.tasks.pose.pckh import load_predictions

    with pytest.raises(DataError) as e:
        load_predictions(tmp_path, 5)
    message = _one_line(e)
    assert "is a folder" in message and "pred.mat" in message and "JSON" in message


def test_segmentation_predictions_file_says_a_folder_is_needed(tmp_path):
    from densepred.tasks.segmentation.metric import evaluate_prediction_folder

    gt = tmp_path / "gtFine" / "val"
    gt.mkdir(parents=True)
    single = tmp_path / "frankfurt_000000_000294_leftImg8bit.png"
    single.write_bytes(b"not needed")
    with pytest.raises(DataError) as e:
        evaluate_prediction_folder(single, gt_dir=gt)
    message = _one_line(e)
    assert "is a file, not a folder" in message and "labelId PNGs" in message
    # the user's argument is checked before the dataset's ground truth
    with pytest.raises(DataError, match="is a file, not a folder"):
        evaluate_prediction_folder(single, data_root=tmp_path / "nowhere")
