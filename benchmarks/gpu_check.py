"""GPU path check for a CUDA machine, in under 5 minutes (run through ``benchmarks/gpu_check.sh``).

Sections, each timed and recorded even when another one fails:

* ``machine``  GPU, driver-side versions, memory.
* ``peak``     bf16 / fp16 / fp32 matrix-product rate measured in the same run (the reference for
               "fraction of peak").
* ``train``    pose HRNet-W32 256x192, batch 32, channels_last: fp32, fp16 AMP with GradScaler (the
               engine's default on CUDA) and bf16 autocast; img/s over timed steps after warm-up,
               training FLOPs = 3 x forward FLOPs counted from the model.
* ``infer``    batch-1 latency and batch-32 throughput, eager fp32 against
               ``densepred.inference.optimize`` on the GPU (BN folding, channels_last, fp16, CUDA graph).
* ``onnxruntime``  whether ONNX Runtime has its CUDA provider here, and if so the exported W32's
               largest difference to PyTorch and its batch-1 latency.
* ``ray_train`` ``platform train tasks/pose_demo.yaml --gpu --workers 2`` with
               ``ray.gpus_per_worker=0.5`` (two Ray Train workers sharing one GPU) on the demo set.

Writes ``gpu_check.json`` into the output folder and prints one line per figure.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "configs" / "models"


def timed_cuda(fn: Callable[[], Any], iters: int, warmup: int) -> float:
    """Seconds per call of ``fn`` over ``iters`` calls after ``warmup`` ones (CUDA-synchronised)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters


def section_machine() -> dict[str, Any]:
    props = torch.cuda.get_device_properties(0)
    return {"gpu": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def section_peak() -> dict[str, Any]:
    """Dense matrix-product TFLOP/s at 8192^3 (fp32 with TF32 off: the true fp32 rate)."""
    out = {}
    n = 8192
    torch.backends.cuda.matmul.allow_tf32 = False
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
        s = timed_cuda(lambda: a @ b, iters=10 if dtype != torch.float32 else 3, warmup=2)
        out[f"{name}_tflops"] = round(2 * n ** 3 / s / 1e12, 1)
        del a, b
    return out


def build(name: str) -> torch.nn.Module:
    from densepred.model import build_model

    return build_model(str(MODELS / f"{name}.yaml"))


def calibrate_bn(model: torch.nn.Module, hw: tuple[int, int], batches: int = 4) -> torch.nn.Module:
    """Give a freshly built model a trained model's activation scale: BatchNorm statistics from a
    few random batches. Untouched, its outputs are ~1e-10, below fp16's smallest number, and
    every fp16 path would be rejected by the accuracy check for a reason no real model has."""
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    with torch.no_grad():
        for _ in range(batches):
            model(torch.randn(8, 3, *hw, device=next(model.parameters()).device))
    return model.eval()


def section_train(peak: dict[str, Any], steps: int) -> dict[str, Any]:
    """Training-step throughput of pose W32 256x192 at three precisions (batch 32, as the official
    recipe per GPU), then the engine's default (fp16) at larger batches: a step time that hardly
    grows with the batch is bound by the host launching kernels, not by the GPU."""
    from densepred.cost import count_gflops
    from densepred.tasks.pose.task import JointsMSELoss

    torch.backends.cudnn.benchmark = True  # as the engine does on CUDA
    hw = (256, 192)
    fwd = count_gflops(build("pose_hrnet_w32"), hw, "meta")
    crit = JointsMSELoss(use_target_weight=True)
    rows = []
    for precision, batch in (("fp32", 32), ("fp16", 32), ("bf16", 32), ("fp16", 64), ("fp16", 128)):
        x = torch.randn(batch, 3, *hw, device="cuda").contiguous(memory_format=torch.channels_last)
        target = torch.rand(batch, 17, hw[0] // 4, hw[1] // 4, device="cuda")
        weight = torch.ones(batch, 17, 1, device="cuda")
        model = build("pose_hrnet_w32").cuda().train().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

        def step() -> None:
            with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                loss = crit(model(x)["pose"].float(), target, weight)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            opt.zero_grad(set_to_none=True)

        n = steps if (precision, batch) == ("fp16", 32) else max(10, steps // 3)
        s = timed_cuda(step, iters=n, warmup=5)
        achieved = 3 * fwd * batch / s / 1e3  # TFLOP/s
        ref = peak.get(f"{precision}_tflops")
        rows.append({"precision": precision, "steps": n, "batch": batch, "step_ms": round(s * 1e3, 2),
                     "img_per_s": round(batch / s, 1), "achieved_tflops": round(achieved, 2),
                     "fraction_of_matmul_peak": round(achieved / ref, 3) if ref else None,
                     "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)})
        print(f"  train W32 256x192 b{batch} {precision}: {batch / s:.0f} img/s, {achieved:.1f} TFLOP/s", flush=True)
        del model, opt
        torch.cuda.reset_peak_memory_stats()
    base = rows[0]["img_per_s"]
    for r in rows:
        r["speedup_vs_fp32_b32"] = round(r["img_per_s"] / base, 2)
    return {"model": "pose_hrnet_w32", "input_hw": list(hw), "channels_last": True,
            "forward_gflop_per_img": round(fwd, 2), "rows": rows}


def section_infer(budget_s: float) -> dict[str, Any]:
    """Eager fp32 against the optimised GPU path for pose W32 and seg W18-small-v2."""
    from densepred.inference import optimize

    os.environ["DENSEPRED_INFERENCE_BUDGET_S"] = str(budget_s)
    entries = []
    for name, hw, batch in (("pose_hrnet_w32", (256, 192), 32), ("seg_hrnetv2_w18_small_v2", (512, 1024), 8)):
        model = calibrate_bn(build(name).cuda(), hw)
        one = torch.randn(1, 3, *hw, device="cuda")
        many = torch.randn(batch, 3, *hw, device="cuda")
        entry: dict[str, Any] = {"model": name, "input_hw": list(hw), "batch": batch}
        with torch.no_grad():
            entry["eager_fp32_ms_b1"] = round(1e3 * timed_cuda(lambda: model(one), 30, 5), 3)
            entry["eager_fp32_img_per_s"] = round(batch / timed_cuda(lambda: model(many), 10, 2), 1)
            t0 = time.perf_counter()
            fast = optimize(model, one, cache=False)
            entry["optimise_s"] = round(time.perf_counter() - t0, 1)
            entry["plan"] = fast.describe()
            entry["candidates_ms"] = fast.plan.get("ms")
            entry["candidates_failed"] = fast.plan.get("failed")
            entry["candidates_rel_diff"] = fast.plan.get("rel_diff")
            entry["optimised_ms_b1"] = round(1e3 * timed_cuda(lambda: fast(one), 30, 5), 3)
            entry["optimised_img_per_s"] = round(batch / timed_cuda(lambda: fast(many), 10, 2), 1)
            ref, got = model(one), fast(one)
            key = next(iter(ref))
            entry["max_rel_diff"] = float((ref[key] - got[key]).abs().max() / ref[key].abs().max())
        entry["latency_speedup"] = round(entry["eager_fp32_ms_b1"] / entry["optimised_ms_b1"], 2)
        entry["throughput_speedup"] = round(entry["optimised_img_per_s"] / entry["eager_fp32_img_per_s"], 2)
        print(f"  infer {name}: eager {entry['eager_fp32_ms_b1']} ms b1 / {entry['eager_fp32_img_per_s']} img/s; "
              f"optimised {entry['optimised_ms_b1']} ms / {entry['optimised_img_per_s']} img/s "
              f"[{fast.plan['path']}]", flush=True)
        entries.append(entry)
    return {"models": entries}


def section_onnxruntime() -> dict[str, Any]:
    """ONNX Runtime's CUDA provider on the exported W32, when this ONNX Runtime has one."""
    import io

    import onnxruntime as ort

    providers = ort.get_available_providers()
    info: dict[str, Any] = {"onnxruntime": ort.__version__, "providers": providers}
    if "CUDAExecutionProvider" not in providers:
        info["cuda_provider"] = "absent: this onnxruntime build is CPU-only (onnxruntime-gpu would add it)"
        return info
    from densepred.bnfold import fold_batchnorm
    from densepred.export import export_onnx

    model = build("pose_hrnet_w32").eval()
    folded, _ = fold_batchnorm(model)
    x = torch.randn(1, 3, 256, 192)
    buf = io.BytesIO()
    export_onnx(folded, x, buf, dynamic_batch=True)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CUDAExecutionProvider"])
    name = sess.get_inputs()[0].name
    got = sess.run(None, {name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)["pose"].numpy()
    t0 = time.perf_counter()
    for _ in range(30):
        sess.run(None, {name: x.numpy()})
    info.update(cuda_provider="present", max_abs_diff=float(abs(got - ref).max()),
                latency_ms_b1=round((time.perf_counter() - t0) / 30 * 1e3, 3))
    return info


def section_ray_train(timeout_s: int) -> dict[str, Any]:
    """Two Ray Train workers sharing the GPU train the pose demo for a few epochs."""
    import ray  # noqa: F401 - absent Ray is reported by the caller

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    env = dict(os.environ, PYTHONUNBUFFERED="1", RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
    cli = [sys.executable, "-m", "densepred.cli"]
    t0 = time.perf_counter()
    subprocess.run(cli + ["data", "demo", "--task", "pose", "--out", str(work / "demo")], env=env, check=True,
                   capture_output=True, timeout=120)
    demo_s = time.perf_counter() - t0
    cmd = cli + ["train", str(ROOT / "tasks" / "pose_demo.yaml"), "--gpu", "--workers", "2",
                 "--set", "ray.gpus_per_worker=0.5", "train.epochs=3", "evaluation.interval=3",
                 f"data_root={work / 'demo' / 'coco'}", f"work_dir={work / 'runs'}"]
    t0 = time.perf_counter()
    log_path = work / "train.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # keep what it printed: that says where it stood
            proc.kill()
            code = f"timed out after {timeout_s} s"
    lines = log_path.read_text(errors="replace").splitlines()
    return {"command": " ".join(cmd[2:]), "returncode": code, "demo_data_s": round(demo_s, 1),
            "wall_s": round(time.perf_counter() - t0, 1),
            "epoch_lines": [ln for ln in lines if "epoch" in ln.lower()][-8:], "tail": lines[-40:]}


def run_section(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    print(f"[gpu_check] {name}", flush=True)
    t0 = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as e:  # noqa: BLE001 - one failing section must not lose the others
        results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        print(f"  {name} failed: {type(e).__name__}: {e}", flush=True)
    results[name]["section_s"] = round(time.perf_counter() - t0, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for gpu_check.json")
    ap.add_argument("--steps", type=int, default=50, help="timed training steps per precision")
    ap.add_argument("--ray-timeout", type=int, default=150, help="seconds allowed for the Ray Train run")
    ap.add_argument("--skip", nargs="*", default=[], help="sections to leave out")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("[gpu_check] no CUDA device visible to this PyTorch; nothing to check", file=sys.stderr)
        return 2
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M:%S")}
    sections = [("machine", section_machine), ("peak", section_peak),
                ("train", lambda: section_train(results.get("peak", {}), args.steps)),
                ("infer", lambda: section_infer(5.0)), ("onnxruntime", section_onnxruntime),
                ("ray_train", lambda: section_ray_train(args.ray_timeout))]
    for name, fn in sections:
        if name not in args.skip:
            run_section(results, name, fn)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    print(f"[gpu_check] wrote {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
