"""`platform bench --quick`: runs within its time budget and writes complete, sane results."""
from __future__ import annotations

import json

import pytest

from densepred.cli import main


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and x > 0


@pytest.mark.slow  # about 80-90 s on 2 cores: kept out of the default suite's budget
def test_bench_quick_writes_table_json_and_chart(tmp_path, capsys):
    out = tmp_path / "x.json"
    assert main(["bench", "--quick", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "peak GFLOP/s" in printed and "train step" in printed

    result = json.loads(out.read_text())
    assert result["quick"] is True and result["errors"] == {}
    machine = result["machine"]
    for key in ("cpu_model", "cpu_flags", "threads", "torch", "onednn", "gpus", "default_precision"):
        assert key in machine
    assert machine["threads"] >= 1

    peak = result["peak"]["rows"]
    assert {(r["op"], r["precision"]) for r in peak} >= {("matmul", "fp32"), ("conv3x3", "fp32")}
    assert all(_positive(r["gflops_per_s"]) for r in peak)

    train = result["train"]["rows"]
    assert {r["model"] for r in train} == {"pose_hrnet_w32", "seg_hrnetv2_w48"}
    for r in train:
        assert _positive(r["img_per_s"]) and _positive(r["train_gflop_per_img"])
        assert 0 < r["fraction_of_peak"] <= 1.5

    infer = result["infer"]["models"]
    assert {e["model"] for e in infer} == {"pose_hrnet_w32", "seg_hrnetv2_w18_small_v2"}
    for e in infer:
        paths = [e["eager_fp32"]] + ([e["optimised"]] if e["optimised"] else [])
        assert e["optimised"] is not None or e["optimised_error"]
        for p in paths:
            assert _positive(p["latency_ms_batch1"]) and _positive(p["img_per_s"])
            assert 0 < p["fraction_of_peak"] <= 1.5

    for r in result["data"]["rows"]:
        assert _positive(r["samples_per_s_per_core"]) and _positive(r["decode_samples_per_s_per_core"])
        assert _positive(r["pipeline_over_decode"])

    oks, miou = result["eval"]["oks"], result["eval"]["miou"]
    assert oks["persons"] == 6352 and _positive(oks["total_s"]) and 0 < oks["AP"] <= 1
    if "faster_cocoeval_s" in oks:  # faster-coco-eval installed (the fast-eval extra): same stats
        assert oks["faster_max_stat_diff"] <= 1e-12 and _positive(oks["pycocotools_over_faster"])
    assert _positive(miou["ms_per_image_1_thread"]) and _positive(miou["decode_ms_per_image"])

    assert "skipped" in result["startup"]  # quick mode does not start Ray
    assert out.with_suffix(".png").stat().st_size > 0
