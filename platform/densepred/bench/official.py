"""The official HRNet pose code's training step, timed next to ours (``platform bench --official-repo``).

The official repository (https://github.com/leoxiaobin/deep-high-resolution-net.pytorch) is used
from a local copy and never imported as a package: ``lib/models/pose_hrnet.py`` and
``lib/core/loss.py`` are loaded by file path, and the model is configured from
``experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml`` read as plain dicts (the model indexes its
config with ``cfg['MODEL'][...]`` only, so ``yacs`` is not needed). Its step is the official
training loop's: fp32, NCHW (the official code sets no memory format), Adam at the config's
``TRAIN.LR``, the official ``JointsMSELoss`` with target weights.
"""
from __future__ import annotations

import importlib.util
import os
import time
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import torch

from ..errors import ConfigError
from .timing import median, rounded, torch_threads

ENV_VAR = "DENSEPRED_OFFICIAL_HRNET"
MODEL_FILE = "lib/models/pose_hrnet.py"
LOSS_FILE = "lib/core/loss.py"
W32_CONFIG = "experiments/coco/hrnet/w32_256x192_adam_lr1e-3.yaml"
REQUIRED = (MODEL_FILE, LOSS_FILE, W32_CONFIG)
CLONE = "git clone https://github.com/leoxiaobin/deep-high-resolution-net.pytorch"


def official_repo(path: Optional[str | os.PathLike]) -> Optional[Path]:
    """``path``, else ``$DENSEPRED_OFFICIAL_HRNET``, checked (``check_official_repo``); None when
    neither is given."""
    value = path if path not in (None, "") else os.environ.get(ENV_VAR) or None
    return None if value is None else check_official_repo(value)


def check_official_repo(path: str | os.PathLike) -> Path:
    """The resolved checkout; a one-line ``ConfigError`` naming the files it lacks."""
    repo = Path(path).expanduser()
    if not repo.is_dir():
        raise ConfigError(f"official HRNet repository {repo} is not a folder; it must be a checkout of "
                          f"deep-high-resolution-net.pytorch containing {', '.join(REQUIRED)} ({CLONE})")
    missing = [f for f in REQUIRED if not (repo / f).is_file()]
    if missing:
        raise ConfigError(f"official HRNet repository {repo} lacks {', '.join(missing)}; it must be a checkout "
                          f"of deep-high-resolution-net.pytorch ({CLONE})")
    return repo.resolve()


def _load(repo: Path, relative: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, repo / relative)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():  # pose_hrnet.py compares a string with `is` (a SyntaxWarning)
        warnings.simplefilter("ignore", SyntaxWarning)
        spec.loader.exec_module(module)
    return module


def official_config(repo: Path) -> dict[str, Any]:
    """The W32 256x192 experiment as nested dicts; ``MODEL.PRETRAINED`` emptied, so the model
    starts from the official normal init instead of needing the ImageNet file (timing is the same)."""
    import yaml

    cfg = yaml.safe_load((repo / W32_CONFIG).read_text())
    cfg["MODEL"]["PRETRAINED"] = ""
    return cfg


def build_official_w32(repo: Path, is_train: bool = True) -> torch.nn.Module:
    """``get_pose_net(cfg, is_train)`` of the official code, W32 256x192."""
    module = _load(repo, MODEL_FILE, "official_hrnet_pose_hrnet")
    return module.get_pose_net(official_config(repo), is_train)


def official_w32_step(repo: Path, batch: int, steps: int, threads: int,
                      input_hw: tuple[int, int] = (256, 192)) -> dict[str, Any]:
    """img/s and median seconds of ``steps`` official fp32 training steps after one warm-up step."""
    cfg = official_config(repo)
    model = build_official_w32(repo).train()
    criterion = _load(repo, LOSS_FILE, "official_hrnet_loss").JointsMSELoss(
        use_target_weight=cfg["LOSS"]["USE_TARGET_WEIGHT"])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["TRAIN"]["LR"])
    h, w = input_hw
    joints = cfg["MODEL"]["NUM_JOINTS"]
    images = torch.randn(batch, 3, h, w)
    target, weight = torch.rand(batch, joints, h // 4, w // 4), torch.ones(batch, joints, 1)
    times = []
    with torch_threads(threads):
        for i in range(steps + 1):
            t0 = time.perf_counter()
            loss = criterion(model(images), target, weight)  # the order of the official train()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if i > 0:  # the first step creates kernels and optimizer state
                times.append(time.perf_counter() - t0)
    step_s = median(times)
    return {"repo": str(repo), "model": "official pose_hrnet W32", "input_hw": [h, w], "batch": batch,
            "steps": steps, "precision": "fp32", "channels_last": False, "threads": threads,
            "step_s": rounded(step_s), "img_per_s": rounded(batch / step_s),
            "note": f"official lib/models/pose_hrnet.py + lib/core/loss.py JointsMSELoss, {W32_CONFIG}: "
                    "fp32, NCHW, Adam lr TRAIN.LR, random inputs and targets, median after one warm-up step"}


def parity_max_abs_diff(repo: Path, input_hw: tuple[int, int] = (128, 96)) -> dict[str, float]:
    """Our ``pose_hrnet_w32`` with the official model's weights (PyTorch default init, random BN
    statistics) against the official model, eval mode, one small input: max |difference| and
    max |output| for scale."""
    from ..model import build_model, official_key
    from .models import MODEL_CONFIGS

    torch.manual_seed(0)
    official = build_official_w32(repo, is_train=False).eval()
    for name, buf in official.named_buffers():
        if name.endswith("running_mean"):
            buf.normal_(0, 0.1)
        elif name.endswith("running_var"):
            buf.uniform_(0.5, 1.5)
    ours = build_model(str(MODEL_CONFIGS / "pose_hrnet_w32.yaml")).eval()
    sd = official.state_dict()
    ours.load_state_dict({k: sd[official_key(k)] for k in ours.state_dict()})
    x = torch.randn(1, 3, *input_hw)
    with torch.no_grad():
        ref, got = official(x), ours(x)["pose"]
    return {"parity_max_abs_diff": float((ref - got).abs().max()), "parity_output_max_abs": float(ref.abs().max())}
