"""Optimised inference: BN folding, the measured choice and its cache, tolerances, `--eager`."""
from __future__ import annotations

import json
import re
import time

import pytest
import torch
from torch import nn

from conftest import REPO, TINY_POSE_MODEL, as_sets, pose_demo_stride4
from densepred import inference
from densepred.bnfold import count_batchnorm, fold_batchnorm
from densepred.errors import PlatformError
from densepred.model import build_model

MODELS = REPO / "configs" / "models"
POSE_TASK = str(REPO / "tasks" / "pose_demo.yaml")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, tmp_path):
    """One thread (the cores are shared), a short measurement and a cache of this test's own."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setenv(inference.BUDGET_ENV, "0.5")
    monkeypatch.setenv("DENSEPRED_CACHE", str(tmp_path / "cache"))
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_ort(monkeypatch):
    """As if onnxruntime were not installed: tests of other things skip its export (seconds)."""
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN statistics and affine parameters far from identity, so folding is really exercised."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model.eval()


def rel_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max() / a[k].abs().max()) for k in a)


def tiny_pose() -> nn.Module:
    return randomize_bn(build_model({"model": TINY_POSE_MODEL}))


FOLD_CASES = [
    ("hrnet-pose", tiny_pose, (64, 48)),
    ("hrnet-seg", lambda: randomize_bn(build_model(MODELS / "seg_hrnetv2_w18_small_v2.yaml")), (64, 128)),
    ("resnet50", lambda: randomize_bn(build_model(MODELS / "pose_resnet50.yaml")), (64, 48)),
]


@pytest.mark.parametrize("name,make,hw", FOLD_CASES, ids=[c[0] for c in FOLD_CASES])
def test_folded_model_equals_eager_and_has_no_batchnorm(name, make, hw):
    model = make()
    folded, report = fold_batchnorm(model)
    assert count_batchnorm(folded) == 0 and report.remaining == 0 and report.how == "fx"
    assert report.folded == count_batchnorm(model) > 0   # the original is untouched
    x = torch.randn(2, 3, *hw, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert rel_diff(model(x), folded(x)) <= inference.TOLERANCE["fp32"]


def test_untraceable_model_is_folded_per_submodule():
    """The hourglass checks its input size in forward (no fx trace): its parts are folded instead."""
    cfg = {"backbone": {"type": "StackedHourglass", "nstack": 2, "inp_dim": 16, "oup_dim": 16, "bn": True,
                        "increase": 0},
           "heads": {"pose": {"type": "StackedHeatmapHead"}}}
    model = randomize_bn(build_model({"model": cfg}))
    folded, report = fold_batchnorm(model)
    assert report.how == "fx-per-submodule" and report.folded > 0 and "did not trace" in report.describe()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert rel_diff(model(x), folded(x)) <= inference.TOLERANCE["fp32"]


def test_optimized_model_matches_eager_at_any_batch_and_ignores_mode_changes(no_ort):
    model = tiny_pose()
    model.train()
    opt = inference.optimize(model, torch.randn(2, 3, 64, 48), cache=False)
    assert model.training, "optimize must not change the model it was given"
    plan = opt.plan
    assert plan["path"] in plan["ms"] and plan["bn_folded"] == count_batchnorm(model)
    for name, diff in plan["rel_diff"].items():   # every candidate measured was checked
        assert diff <= inference.TOLERANCE[inference.PRECISION.get(name, "fp32")] or name in plan["failed"]
    assert opt.describe().startswith(f"inference: {plan['path']} ") and "\n" not in opt.describe()
    assert opt.train() is opt and opt.eval() is opt and opt.to("cpu") is opt and opt.to(torch.float32) is opt
    with pytest.raises(PlatformError, match="--eager"):
        opt.to(torch.float16)
    model.eval()
    tol = inference.TOLERANCE[plan["precision"]]  # a native-bf16 CPU may choose a bf16 path
    for n in (1, 3, 5):
        x = torch.randn(n, 3, 64, 48)
        with torch.no_grad():
            assert rel_diff(model(x), opt(x)) <= tol
    with torch.no_grad():   # another input size (e.g. segmentation whole-image mode) still works
        x = torch.randn(1, 3, 96, 64)
        assert rel_diff(model(x), opt(x)) <= tol


def test_onnx_runtime_path_matches_eager_at_any_batch_and_size(monkeypatch):
    pytest.importorskip("onnxruntime")
    monkeypatch.setattr(inference, "choose", lambda ms, order=inference.ORDER: "ort")
    model = tiny_pose()
    opt = inference.optimize(model, torch.randn(2, 3, 64, 48), cache=False)
    assert opt.plan["runtime"] == "onnxruntime" and opt.plan["rel_diff"]["ort"] <= inference.TOLERANCE["fp32"]
    for shape in ((1, 3, 64, 48), (3, 3, 64, 48), (1, 3, 96, 64)):  # the last one runs the folded model
        x = torch.randn(*shape)
        with torch.no_grad():
            assert rel_diff(model(x), opt(x)) <= inference.TOLERANCE["fp32"]


def test_plan_is_cached_and_reused_without_measuring(monkeypatch, tmp_path, no_ort):
    calls = []
    real = inference.time_candidates
    monkeypatch.setattr(inference, "time_candidates", lambda *a, **k: calls.append(1) or real(*a, **k))
    model, x = tiny_pose(), torch.randn(1, 3, 64, 48)
    first = inference.optimize(model, x)
    assert first.plan["source"] == "measured" and len(calls) == 1
    files = list((tmp_path / "cache" / "inference").glob("*.json"))
    assert [str(f) for f in files] == [first.plan["cache_file"]]
    saved = json.loads(files[0].read_text())
    assert saved["path"] == first.plan["path"] and saved["key"]["input"] == [1, 3, 64, 48]
    second = inference.optimize(model, x)
    assert second.plan["source"] == "cache" and len(calls) == 1       # no second measurement
    assert second.plan["path"] == first.plan["path"] and "plan from" in second.describe()
    # a cached figure says it is one, and when it was measured; a fresh one does not
    assert re.search(r"x, cached plan measured \d{4}-\d\d-\d\d \d\d:\d\d\)", second.describe())
    assert "cached plan" not in first.describe() and saved["measured_at"] == first.plan["measured_at"]
    inference.optimize(model, torch.randn(2, 3, 64, 48))               # another shape: measured
    assert len(calls) == 2
    inference.optimize(model, x, cache=False)
    assert len(calls) == 3


def test_avx2_machine_never_picks_bf16(monkeypatch, no_ort):
    from densepred.engine import loop

    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: False)
    plan = inference.optimize(tiny_pose(), torch.randn(1, 3, 64, 48), cache=False).plan
    assert plan["precision"] == "fp32" and "fold+cl+bf16" not in plan["ms"]
    assert "no native bf16" in plan["skipped"]["fold+cl+bf16"]


def test_bf16_candidate_on_native_bf16_cpu_is_within_its_tolerance(monkeypatch, no_ort):
    from densepred.engine import loop

    monkeypatch.setattr(loop, "cpu_has_fast_bf16", lambda: True)
    plan = inference.optimize(tiny_pose(), torch.randn(1, 3, 64, 48), cache=False).plan
    assert "fold+cl+bf16" in plan["ms"] and plan["rel_diff"]["fold+cl+bf16"] <= inference.TOLERANCE["bf16"]


def test_bad_budget_variable_is_a_one_line_config_error(monkeypatch):
    from densepred.errors import ConfigError

    monkeypatch.setenv(inference.BUDGET_ENV, "ten")
    with pytest.raises(ConfigError, match=r"^DENSEPRED_INFERENCE_BUDGET_S='ten' is not a number of seconds"):
        inference.optimize(tiny_pose(), torch.randn(1, 3, 64, 48), cache=False)


def test_choice_needs_a_clear_gain():
    ms = {"eager": 10.0, "fold": 9.9, "fold+cl": 9.6, "fold+cl+bf16": 5.0, "ort": 8.0}
    assert inference.choose(ms) == "fold+cl+bf16"
    assert inference.choose({k: v for k, v in ms.items() if k != "fold+cl+bf16"}) == "ort"
    assert inference.choose({"eager": 10.0, "fold": 9.9, "fold+cl": 9.6}) == "fold"    # 3%: noise
    assert inference.choose({"eager": 10.0, "fold": 10.2}) == "eager"


def test_missing_runtimes_and_broken_compile_fall_back_and_say_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)   # as if not installed
    monkeypatch.setattr(inference, "_has_cxx", lambda: True)

    def broken_compile(module, **_):
        def run(*_args):
            raise RuntimeError("Compiler: cc not found")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    opt = inference.optimize(tiny_pose(), torch.randn(1, 3, 64, 48), cache=False, compile=True)
    assert "not installed" in opt.plan["skipped"]["ort"]
    assert "cc not found" in opt.plan["failed"]["compile"] and opt.plan["path"] != "compile"
    monkeypatch.setattr(inference, "_has_cxx", lambda: False)
    plan = inference.optimize(tiny_pose(), torch.randn(1, 3, 64, 48), cache=False, compile=True).plan
    assert "no C++ compiler" in plan["skipped"]["compile"]


def test_eval_with_and_without_eager_agree(tiny_pose_demo, tmp_path, capsys):
    from densepred import load_config, save_checkpoint
    from densepred.cli import main

    # The stride-4 demo model: an untrained model's near-flat stride-2 heatmaps (the current recipe)
    # have so many near-ties that ONNX Runtime's fp32 rounding moved 12 % of the keypoints.
    stride4 = as_sets(pose_demo_stride4([24, 32]))
    sets = ["--set", f"data_root={tiny_pose_demo}", "--set", "data.loader_workers=0"]
    sets += [item for s in stride4 for item in ("--set", s)]
    model = randomize_bn(build_model(load_config(POSE_TASK, [f"data_root={tiny_pose_demo}", *stride4])))
    ckpt = save_checkpoint(tmp_path / "pose.pth", model)
    results, plan = {}, ""
    for flag in ("optimised", "--eager"):
        out = tmp_path / flag.strip("-")
        extra = [flag] if flag.startswith("--") else []
        assert main(["eval", POSE_TASK, *sets, "--checkpoint", str(ckpt), "--out", str(out), *extra]) == 0
        printed = capsys.readouterr().out
        assert ("inference: " in printed) == (flag == "optimised")
        plan = plan or next((line for line in printed.splitlines() if "inference: " in line), "")
        results[flag] = (json.loads((out / "metrics.json").read_text()),
                         json.loads((out / "keypoints_results.json").read_text()))
    (m_opt, k_opt), (m_eager, k_eager) = results["optimised"], results["--eager"]
    assert abs(m_opt["AP"] - m_eager["AP"]) <= 0.005
    # An untrained model's heatmaps have near-ties that fp32 rounding may break either way: most
    # keypoints, not all, must land on the same pixel.
    pts = torch.tensor([r["keypoints"] for r in k_opt]) - torch.tensor([r["keypoints"] for r in k_eager])
    same = (pts.view(len(k_opt), -1, 3)[..., :2].abs().amax(-1) < 0.5).float().mean()
    assert len(k_opt) == len(k_eager) > 0 and float(same) >= 0.9, (float(same), plan)


def _sleeper(base_s: float, slow_calls: set, extra_s: float, counter: list):
    """A runner taking ``base_s``, plus ``extra_s`` on the calls (counted across runners, from 1)
    listed in ``slow_calls``: a neighbour's burst of load."""
    def run(x):
        counter.append(1)
        time.sleep(base_s + (extra_s if len(counter) in slow_calls else 0.0))
        return {"out": x.clone()}
    return run


def test_measurement_ignores_slow_warm_up_and_a_busy_round():
    """Equal candidates stay equal when the budget is gone after the warm-ups and the first timed
    round is slowed for one of them: no invented speed-up (a cached 14x came from such a run)."""
    counter: list = []
    # calls 1-2: warm-ups (eager's slowed, as its first call was); call 3: eager in round 1, slowed
    runners = {"eager": _sleeper(0.01, {1, 3}, 0.25, counter), "fold": _sleeper(0.01, set(), 0.0, counter)}
    timing = inference.measure_candidates(runners, torch.zeros(1, 3, 4, 4), budget_s=0.0)
    assert timing.rounds >= inference.MIN_ROUNDS and set(timing.outputs) == {"eager", "fold"}
    assert timing.ms["eager"] / timing.ms["fold"] < 1.5
    assert inference.choose(timing.ms, ("eager", "fold")) in ("eager", "fold")


def test_measurement_records_a_failing_candidate_and_times_the_rest():
    def broken(x):
        raise RuntimeError("no kernel")
    counter: list = []
    timing = inference.measure_candidates({"eager": _sleeper(0.001, set(), 0.0, counter), "ort": broken},
                                          torch.zeros(1, 3, 4, 4), budget_s=0.0)
    assert "no kernel" in timing.failed["ort"] and set(timing.ms) == {"eager"}


def test_cached_plan_without_a_date_says_so():
    plan = {"path": "fold", "runtime": "torch", "precision": "fp32", "ms": {"eager": 20.0, "fold": 10.0},
            "measured_batch": 1, "input_shape": [1, 3, 8, 8], "source": "cache", "cache_file": "/c/p.json"}
    assert "(2.00x, cached plan measured at an unknown time)" in inference.describe_plan(plan)
    plan["measured_at"] = "2026-11-29T14:03+00:00"
    assert "(2.00x, cached plan measured 2026-11-29 14:03)" in inference.describe_plan(plan)
    plan["source"] = "measured"
    assert "cached plan" not in inference.describe_plan(plan)
