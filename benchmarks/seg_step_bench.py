"""Segmentation training step: what each of three equivalent reformulations saves, in one run.

    python benchmarks/seg_step_bench.py [--config tasks/seg_demo.yaml] [--batch 4] [--rounds 6]

Times forward + loss + backward + optimizer step of the config's model on random images in a tight
loop (no data loading, no Ray), interleaving five variants round by round so that a noisy machine
affects all of them alike, and prints the median ms/step and the ratio to the old step:
- ``old``: the concatenated HRNetV2 features, torch's default (per-tensor) AdamW on the CPU, and the
  4-D cross-entropy call on the channels-last logits;
- ``fold``: the heads fold their first 1x1 conv in before the upsampling (``conv1x1_of_branches``);
- ``fused``: the fused optimizer kernel (``build_optimizer``'s default);
- ``rows``: the loss over a (pixels, classes) view of the channels-last logits (``SegCrossEntropy``);
- ``new``: all three, as `platform train` runs it.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "platform"))

from densepred.config import load_config  # noqa: E402
from densepred.engine.optim import build_optimizer  # noqa: E402
from densepred.model import build_model  # noqa: E402
from densepred.tasks.segmentation.loss import SegCrossEntropy  # noqa: E402

VARIANTS = {"old": (False, False, False), "fold": (True, False, False), "fused": (False, True, False),
            "rows": (False, False, True), "new": (True, True, True)}


def _old_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    up = F.interpolate(logits.float(), size=label.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, label, ignore_index=255)


def build(cfg: dict, fold: bool, fused: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = build_model(cfg).train().to(memory_format=torch.channels_last)
    if not fold:
        model._heads_fold_concat = lambda: False
    optim_cfg = dict(cfg.get("optimizer") or {"type": "AdamW", "lr": 1e-3})
    if not fused:
        optim_cfg["foreach"] = False
    return model, build_optimizer(list(model.parameters()), optim_cfg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "tasks" / "seg_demo.yaml"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per variant and round")
    args = ap.parse_args()
    cfg = load_config(args.config)
    w, h = cfg["data"]["augment"]["crop_size"]
    x = torch.randn(args.batch, 3, h, w).contiguous(memory_format=torch.channels_last)
    label = torch.randint(0, 19, (args.batch, h, w))
    new_loss = SegCrossEntropy()
    built = {k: build(cfg, fold, fused) for k, (fold, fused, _) in VARIANTS.items()}
    times: dict[str, list[float]] = {k: [] for k in VARIANTS}

    def step(name: str) -> None:
        model, opt = built[name]
        loss_fn = new_loss if VARIANTS[name][2] else _old_loss
        loss = loss_fn(model(x)["seg"], label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.rounds):
        for name in VARIANTS:
            for _ in range(2):
                step(name)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(name)
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
    old = statistics.median(times["old"])
    print(f"{Path(args.config).name}, batch {args.batch} of {w}x{h}, {torch.get_num_threads()} threads")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:6s} {med:7.1f} ms/step  {args.batch / med * 1e3:6.1f} img/s  {old / med:5.2f}x the old step")


if __name__ == "__main__":
    main()
