"""Whether a reduced-precision inference path (bf16 on a native-bf16 CPU, fp16 or bf16 on a GPU)
gives the answers the task cares about: on a calibration set from the task's validation split, the
decoded outputs must agree with fp32 (keypoints within ``keypoint_tolerance_px`` heatmap pixels for
``keypoint_agreement`` of the joints fp32 sees, the same argmax class for ``pixel_agreement`` of the
pixels). Raw outputs need not match to 1e-4: a heatmap's peak can move by a rounding error without
moving the keypoint a user would see.

Tasks supply the calibration (``Task.calibration``); ``inference.optimize`` runs it once per
checkpoint and machine and caches the verdict with the plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from .config import setting

PRECISIONS = ("auto", "fp32")


@dataclass
class PrecisionSettings:
    """The precision part of the ``inference`` section (every task reads it)."""

    precision: str = setting("auto", choices=PRECISIONS,
                             hint="auto: reduced precision where the calibration agrees; fp32: never")
    calibration_samples: int = setting(32, ge=1, le=100000, hint="validation samples the check runs on")
    keypoint_tolerance_px: float = setting(0.25, gt=0, hint="heatmap pixels a keypoint may move")
    keypoint_agreement: float = setting(0.99, gt=0, le=1, hint="fraction of visible joints that must agree")
    pixel_agreement: float = setting(0.995, gt=0, le=1, hint="fraction of pixels whose class must agree")


@dataclass
class Agreement:
    """How far a candidate's decoded outputs agree with fp32's."""

    fraction: float         # of the compared items that agree
    required: float
    what: str               # e.g. "of 1,034 visible joints within 0.25 heatmap px"

    @property
    def ok(self) -> bool:
        return self.fraction >= self.required

    def describe(self) -> str:
        return f"{self.fraction:.2%} {self.what} (needs {self.required:.1%})"

    def as_dict(self) -> dict[str, Any]:
        return {"fraction": round(self.fraction, 6), "required": self.required, "what": self.what, "ok": self.ok}


@dataclass
class Calibration:
    """Inputs from the validation split and the task's comparison of decoded outputs."""

    batches: list[torch.Tensor]                                # network inputs, as the task feeds them
    compare: Callable[[Sequence[Any], Sequence[Any]], Agreement]  # fp32 outputs, candidate outputs
    key: dict[str, Any] = field(default_factory=dict)          # what the verdict depends on (cached with it)

    def describe(self) -> str:
        n = sum(int(b.shape[0]) for b in self.batches)
        return f"{n} validation sample(s) of {self.key.get('task', 'the task')}"


def run_all(run: Callable[[torch.Tensor], Any], batches: Sequence[torch.Tensor]) -> list[Any]:
    """``run`` on every calibration batch, without autograd."""
    with torch.no_grad():
        return [run(b) for b in batches]


def check(calibration: Calibration, reference: Sequence[Any], run: Callable[[torch.Tensor], Any]) -> Agreement:
    """The agreement of ``run``'s outputs with the fp32 ``reference`` outputs on the calibration set."""
    return calibration.compare(reference, run_all(run, calibration.batches))


def keypoint_agreement(ref_heatmaps: Sequence[torch.Tensor], heatmaps: Sequence[torch.Tensor],
                       decode: Callable[[Any], tuple[Any, Any]], tolerance_px: float, required: float,
                       visible_thr: float) -> Agreement:
    """Keypoints decoded from both heatmap sets agree when they lie within ``tolerance_px`` heatmap
    pixels; counted over the joints fp32 sees (confidence >= ``visible_thr``), or over every joint
    when fp32 sees none (an untrained model: no evidence is not agreement)."""
    import numpy as np

    dists, seen = [], []
    for ref, out in zip(ref_heatmaps, heatmaps):
        ref_xy, ref_conf = decode(ref.float())
        xy, _ = decode(out.float())
        dists.append(np.linalg.norm(np.asarray(xy) - np.asarray(ref_xy), axis=-1).reshape(-1))
        seen.append((np.asarray(ref_conf)[..., 0] >= visible_thr).reshape(-1))
    dist = np.concatenate(dists) if dists else np.zeros(0)
    visible = np.concatenate(seen) if seen else np.zeros(0, bool)
    which = "visible joints"
    if not visible.any():
        visible, which = np.ones_like(visible), f"joints (none reaches confidence {visible_thr:g})"
    total = int(visible.sum())
    fraction = float((dist[visible] <= tolerance_px).sum()) / total if total else 1.0
    return Agreement(fraction, required, f"of {total:,} {which} within {tolerance_px:g} heatmap px")


def class_agreement(ref_logits: Sequence[torch.Tensor], logits: Sequence[torch.Tensor], required: float,
                    what: str = "pixels") -> Agreement:
    """The share of pixels whose argmax class is the same (logits ``(N, C, H, W)``)."""
    same = total = 0
    for ref, out in zip(ref_logits, logits):
        a, b = ref.float().argmax(1), out.float().argmax(1)
        same += int((a == b).sum())
        total += a.numel()
    fraction = same / total if total else 1.0
    return Agreement(fraction, required, f"of {total:,} {what} with the same class")


def weakest(agreements: Sequence[Agreement]) -> Optional[Agreement]:
    """The agreement furthest below (or closest to) its requirement: a multi-head model passes only
    when every head does."""
    return min(agreements, key=lambda a: a.fraction - a.required, default=None)


def precision_settings(cfg: Any) -> PrecisionSettings:
    """The precision keys of ``cfg``'s ``inference`` section (tasks own its other keys)."""
    from dataclasses import fields

    from .config import parse_section

    raw = (cfg.get("inference") or {}) if hasattr(cfg, "get") else {}
    known = {f.name for f in fields(PrecisionSettings)}
    mine = {k: v for k, v in raw.items() if k in known} if isinstance(raw, dict) else {}
    return parse_section({"inference": mine}, "inference", PrecisionSettings)
