"""Semantic segmentation task (HRNetV2 on Cityscapes): cross-entropy / OHEM loss, whole, sliding
window and multi-scale inference, confusion-matrix mIoU, labelId submissions and pictures."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...config import parse_section, setting
from ...errors import ConfigError
from ...imageio import loader_worker_init
from ...registry import LOSSES, TASKS, build
from ..base import Task
from .dataset import CityscapesDataset, find_samples
from .labels import CLASS_NAMES, IGNORE_INDEX, NUM_CLASSES
from .metric import ConfusionMatrix, evaluate_prediction_folder
from .metric import _write_metrics as write_metrics
from .transforms import SegAugment

# Class weights of the official HRNet-Semantic-Segmentation Cityscapes loader (trainId order).
OFFICIAL_CLASS_WEIGHTS = [0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
                          0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507]


@LOSSES.register_module()
class SegCrossEntropy(nn.Module):
    """Cross-entropy on logits upsampled (bilinear) to the label size, ignoring 255.

    ``class_weights: official`` uses the official Cityscapes weights. With ``ohem`` only the hard
    pixels are kept, as the official ``OhemCrossEntropy``: pixels whose probability of the true class
    is below ``max(ohem_thresh, p_k)``, where p_k is the ``ohem_min_kept``-th smallest probability.
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX, class_weights: Optional[str | list[float]] = None,
                 ohem: bool = False, ohem_thresh: float = 0.9, ohem_min_kept: int = 131072,
                 align_corners: bool = False):
        super().__init__()
        if class_weights == "official":
            class_weights = OFFICIAL_CLASS_WEIGHTS
        elif isinstance(class_weights, str):
            raise ConfigError(f"task.loss.class_weights must be 'official', a list or null, got {class_weights!r}")
        self.register_buffer("weight", torch.tensor(class_weights, dtype=torch.float32) if class_weights else None,
                             persistent=False)
        self.ignore_index = ignore_index
        self.ohem, self.thresh, self.min_kept = ohem, ohem_thresh, max(1, ohem_min_kept)
        self.align_corners = align_corners

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(logits.float(), size=label.shape[-2:], mode="bilinear",
                               align_corners=self.align_corners)
        if not self.ohem:
            return F.cross_entropy(logits, label, weight=self.weight, ignore_index=self.ignore_index)
        losses = F.cross_entropy(logits, label, weight=self.weight, ignore_index=self.ignore_index,
                                 reduction="none").reshape(-1)
        valid = label.reshape(-1) != self.ignore_index
        if not valid.any():
            return losses.sum() * 0.0
        with torch.no_grad():
            target = label.clone()
            target[target == self.ignore_index] = 0
            prob = logits.softmax(1).gather(1, target.unsqueeze(1)).reshape(-1)[valid]
            order = prob.argsort()
            k = min(self.min_kept, prob.numel() - 1)
            threshold = max(float(prob[order[k]]), self.thresh)
        hard = losses[valid][order][prob[order] < threshold]
        return hard.mean() if hard.numel() else losses[valid].mean() * 0.0


@dataclass
class SegData:
    """``data`` section of a segmentation task YAML."""

    train_split: str = "train"
    val_split: str = "val"
    batch_size: int = setting(3, ge=1, hint="samples per worker and step")  # official: 12 in total on 4 GPUs
    loader_workers: int = setting(2, ge=0, le=64)
    augment: dict = field(default_factory=dict)


@dataclass
class SegEval:
    interval: int = setting(10, ge=1)  # evaluate every N epochs (and after the last)


@dataclass
class SegInference:
    """``inference`` section: how a full image is predicted."""

    mode: str = setting("whole", choices=("whole", "slide", "multiscale"))
    crop_size: list[int] = setting(factory=lambda: [1024, 512], ge=16, le=8192)  # [W, H] window for slide
    stride_ratio: float = setting(2 / 3, gt=0, le=1)  # window stride as a fraction of the crop (official 2/3)
    scales: list[float] = setting(factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], gt=0, le=8)
    flip: bool = False             # also average the horizontally flipped image
    align_corners: bool = False    # upsampling of logits to the image size


#: labels read per split by the quick data check before a run (`platform data check` reads all)
QUICK_LABELS = 8


@TASKS.register_module()
class SegmentationTask(Task):
    primary_metric = "mIoU"
    head_names = ("seg",)
    metric_names = ("mIoU", "aAcc") + tuple(f"IoU.{name}" for name in CLASS_NAMES)

    def validate(self) -> None:
        cfg = self.cfg
        self.data = parse_section(cfg, "data", SegData)
        self.eval_cfg = parse_section(cfg, "evaluation", SegEval)
        self.infer_cfg = parse_section(cfg, "inference", SegInference)
        self.augment = parse_section(cfg, "data.augment", SegAugment)
        task = self.task_section()
        self.criterion = build(LOSSES, task.get("loss") or {"type": "SegCrossEntropy"}, "task.loss")

    def cost_input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the training crop (``data.augment.crop_size`` is [W, H])."""
        w, h = self.augment.crop_size
        return int(h), int(w)

    def preflight(self) -> None:
        """Both splits pair every image with its label (a file listing, no decoding)."""
        super().preflight()
        for split in (self.data.train_split, self.data.val_split):
            find_samples(Path(self.data_root), split)

    def check_data(self, report: Any, full: bool = False) -> None:
        """Every image has its label; the labels (a few per split, or all when ``full``) hold only
        known ids and have their image's size."""
        from ...imageio import read_rgb
        from .dataset import read_label

        for split in (self.data.train_split, self.data.val_split):
            with report.catching():
                samples = find_samples(Path(self.data_root), split)
                report.say(f"{split}: {len(samples)} images with labels")
                for sample in samples if full else samples[:QUICK_LABELS]:
                    with report.catching():
                        read_label(sample, read_rgb(sample.image).shape)

    def build_dataset(self, split: str, strict_images: bool = False) -> CityscapesDataset:
        train = split == "train"
        return CityscapesDataset(self.data_root, self.data.train_split if train else self.data.val_split,
                                 train=train, augment_cfg=self.augment, seed=int(self.cfg.get("seed", 0)),
                                 strict_images=strict_images)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        logits = outputs["seg"]
        return self.criterion.to(logits.device)(logits, batch["label"])

    # ------------------------------------------------------------------ inference
    def _logits(self, model: nn.Module, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Class probabilities of one (1,3,h,w) image, upsampled to ``size``, flip-averaged if set."""
        ac = self.infer_cfg.align_corners
        out = F.interpolate(model(image)["seg"].float(), size=size, mode="bilinear", align_corners=ac).softmax(1)
        if self.infer_cfg.flip:
            flipped = model(image.flip(3))["seg"].float().flip(3)
            out = (out + F.interpolate(flipped, size=size, mode="bilinear", align_corners=ac).softmax(1)) * 0.5
        return out

    def _slide(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """Sliding-window probabilities at the image's size (windows of crop_size, 2/3 overlap)."""
        _, _, h, w = image.shape
        cw, ch = self.infer_cfg.crop_size
        if h <= ch and w <= cw:
            return self._logits(model, image, (h, w))
        sw = max(1, int(cw * self.infer_cfg.stride_ratio))
        sh = max(1, int(ch * self.infer_cfg.stride_ratio))
        ph, pw = max(ch - h, 0), max(cw - w, 0)
        padded = F.pad(image, (0, pw, 0, ph))
        H, W = padded.shape[-2:]
        probs = torch.zeros(1, NUM_CLASSES, H, W)
        count = torch.zeros(1, 1, H, W)
        ys = sorted({min(y, H - ch) for y in range(0, max(H - ch, 0) + sh, sh)})
        xs = sorted({min(x, W - cw) for x in range(0, max(W - cw, 0) + sw, sw)})
        for y in ys:
            for x in xs:
                window = padded[:, :, y:y + ch, x:x + cw]
                probs[:, :, y:y + ch, x:x + cw] += self._logits(model, window, (ch, cw)).cpu()
                count[:, :, y:y + ch, x:x + cw] += 1
        return (probs / count)[:, :, :h, :w]

    @torch.no_grad()
    def predict_probs(self, model: nn.Module, image: torch.Tensor) -> torch.Tensor:
        """(1, 19, H, W) class probabilities for a normalised (1, 3, H, W) image."""
        mode = self.infer_cfg.mode
        h, w = image.shape[-2:]
        if mode == "whole":
            return self._logits(model, image, (h, w)).cpu()
        if mode == "slide":
            return self._slide(model, image)
        total = torch.zeros(1, NUM_CLASSES, h, w)
        for s in self.infer_cfg.scales:
            scaled = F.interpolate(image, scale_factor=s, mode="bilinear", align_corners=self.infer_cfg.align_corners)
            p = self._slide(model, scaled)
            total += F.interpolate(p, size=(h, w), mode="bilinear", align_corners=self.infer_cfg.align_corners)
        return total / len(self.infer_cfg.scales)

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None,
                 autocast: Optional[Callable[[], Any]] = None) -> dict[str, float]:
        """mIoU on the validation split at full resolution (bounded memory: a 19x20 count table)."""
        ds = self.build_dataset("val")
        loader = DataLoader(ds, batch_size=1, num_workers=self.data.loader_workers,
                            worker_init_fn=loader_worker_init)
        cm = ConfusionMatrix(NUM_CLASSES, IGNORE_INDEX, CLASS_NAMES)
        was_training = model.training
        model.eval()
        for i, batch in enumerate(loader):
            image = batch["image"].to(device)
            with (autocast() if autocast else contextlib.nullcontext()):
                probs = self.predict_probs(model, image)
            cm.update(probs.argmax(1).numpy(), batch["label"].numpy())
            if progress:
                progress(i + 1, len(loader))
        model.train(was_training)
        stats = cm.summary()
        if out_dir is not None:
            write_metrics(out_dir, stats)
        return stats

    def evaluate_file(self, predictions: str | Path, out_dir: Optional[Path] = None) -> dict[str, float]:
        """Score a folder of Cityscapes labelId PNG predictions (the benchmark submission format)."""
        return evaluate_prediction_folder(predictions, data_root=self.data_root, split=self.data.val_split,
                                          out_dir=out_dir)

    def format_metrics(self, stats: Mapping[str, float]) -> str:
        cm_lines = ["Cityscapes semantic segmentation (19 classes)", f"{'class':16s} {'IoU':>7s}", "-" * 24]
        for name in CLASS_NAMES:
            v = stats.get(f"IoU.{name}")
            cm_lines.append(f"{name:16s} {('   nan' if v is None or v != v else f'{v:7.4f}')}")
        cm_lines += ["-" * 24, f"{'mIoU':16s} {stats['mIoU']:7.4f}", f"{'aAcc':16s} {stats.get('aAcc', float('nan')):7.4f}"]
        return "\n".join(cm_lines)

    # ------------------------------------------------------------------ inspection / prediction
    def browse(self, split: str, out_dir: Path, limit: int = 20) -> int:
        """Per sample: an image/label overlay picture and an .npz with ``image`` (uint8 RGB) and
        ``label`` (uint8 trainIds, 255 = ignore) — full resolution when ``split`` is val."""
        import cv2

        from .visualize import overlay

        ds = self.build_dataset(split, strict_images=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        n = min(limit, len(ds))
        for i in range(n):
            image, label = ds.load(i)
            stem = ds.samples[i].image.name[: -len("_leftImg8bit.png")]
            np.savez_compressed(out_dir / f"{stem}.npz", image=image, label=label.astype(np.uint8))
            cv2.imwrite(str(out_dir / f"{stem}.jpg"), overlay(image, label)[:, :, ::-1])
        return n

    def predict(self, model: nn.Module | Callable[[], nn.Module], source: str, out_dir: Path,
                boxes: Optional[str] = None, device: torch.device = torch.device("cpu"),
                det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
        """Predict on an image, a folder of images or a video: labelId PNGs and overlays (an overlay
        video for a video). ``model`` may be a loader, called after the input is checked."""
        from .predict import run_prediction

        pose_only = [name for name, value in (("--boxes", boxes), ("--det-thr", det_thr),
                                              ("--kpt-thr", kpt_thr), ("--detector", detector)) if value is not None]
        if pose_only:
            raise ConfigError(f"{', '.join(pose_only)} appl{'ies' if len(pose_only) == 1 else 'y'} to pose tasks only")
        return run_prediction(self, model, Path(source), out_dir, device, max_megapixels=max_megapixels)

