"""Person mask task: the foreground/background mask of the target person in a top-down crop.

It reads the pose task's crops (same ``data``, ``data.augment`` and ``evaluation`` sections, same
COCO layout) with the mask of each person's annotation as an extra crop target, so it can run on
its own or share one dataset and one forward pass with pose (same-input multi-task).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, PlatformError
from ...registry import LOSSES, TASKS, build
from ..base import Task
from ..pose.crop_targets import CropTarget
from ..pose.dataset import CocoPoseDataset
from ..pose.task import PoseTask
from .metric import METRIC_NAMES, PersonMaskIoU, format_table
from .target import PersonMaskTarget

PICTURES = 8  # overlay pictures written by an evaluation


@LOSSES.register_module()
class PersonMaskBCE(nn.Module):
    """Binary cross-entropy with logits, per pixel, each sample scaled by its ``mask_weight``; the
    mean over batch and pixels (as JointsMSELoss: a zero-weight sample still counts in the mean)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"mask logits {tuple(logits.shape)} and targets {tuple(target.shape)} differ; "
                             "the mask head must output (N, 1, h, w) at data.heatmap_size")
        # float32 even under autocast: BCE of large logits loses its precision in half floats
        bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
        return (bce.flatten(1).mean(1) * weight.float().reshape(-1)).mean()


@TASKS.register_module()
class PersonMaskTask(PoseTask):
    """Top-down person masks: one logit map per crop (head ``mask``), scored by mask IoU."""

    primary_metric = "mIoU"
    metric_names = METRIC_NAMES
    head_names = ("mask",)

    def validate(self) -> None:
        self.validate_crops()
        task = self.task_section(allowed=("type", "loss"))
        self.criterion = build(LOSSES, task.get("loss") or {"type": "PersonMaskBCE"}, "task.loss")
        self.stack_weights = None  # PoseTask's per-stack loss weights do not apply

    def head_defaults(self) -> dict[str, dict[str, Any]]:
        return {}  # the mask head does not depend on the joints

    def calibration(self, settings: Any) -> Any:
        """Validation crops and mask-pixel agreement (``pose.calibration.mask_calibration``)."""
        from ..pose.calibration import mask_calibration

        return mask_calibration(self, settings)

    def build_model(self) -> nn.Module:
        model = Task.build_model(self)
        heads = getattr(model, "heads", None)
        if heads is not None and "mask" not in heads:
            raise ConfigError(f"{self._where('model.heads')}: PersonMaskTask needs a head named 'mask' "
                              f"(e.g. mask: {{type: MaskHead}}); the model has {sorted(heads)}")
        return model

    # ------------------------------------------------------------------ data
    def val_bbox_file(self) -> Optional[str]:
        """Always ground-truth boxes: a detected box has no mask to score against."""
        return None

    def ann_file(self, split: str) -> Path:
        """The annotation file of ``split`` (``train`` or ``val``), where the masks come from."""
        from ..pose import sources

        return sources.annotation_file(Path(self.data_root), self.data, split)

    def extra_targets(self, split: str) -> Sequence[CropTarget]:
        return (PersonMaskTarget(self.ann_file(split), self.data.heatmap_size),)

    def build_dataset(self, split: str, strict_images: bool = False,
                      extra_targets: Sequence[CropTarget] = ()) -> CocoPoseDataset:
        """The crops of ``split`` with the mask target, plus ``extra_targets``."""
        targets = (*self.extra_targets(split), *extra_targets)
        return super().build_dataset(split, strict_images=strict_images, extra_targets=targets)

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        return self.criterion(outputs["mask"], batch["mask"], batch["mask_weight"])

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer_masks(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Foreground probabilities ``(N, 1, h, w)`` of normalised crops, averaged with the flipped
        input's (flipped back) when flip test is on."""
        probs = torch.sigmoid(model(images)["mask"].float())
        if self.eval_cfg.flip_test:
            flipped = torch.sigmoid(model(images.flip(3))["mask"].float()).flip(3)
            probs = (probs + flipped) * 0.5
        return probs

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None,
                 autocast: Optional[Callable[[], Any]] = None) -> dict[str, float]:
        """Mask IoU of ``model`` on the validation persons (ground-truth boxes); writes
        ``metrics.json`` and a few overlay pictures into ``out_dir`` if given."""
        ds = self.val_dataset()
        metric = PersonMaskIoU()
        was_training = model.training
        model.eval()
        faults: list[str] = []
        shown: list[tuple[int, np.ndarray, float]] = []
        loader = self.loader(ds, self.data.val_batch_size)
        for step, batch in enumerate(loader):
            ok = torch.tensor([not f for f in batch["fault"]], dtype=torch.float32)
            faults += [f for f in batch["fault"] if f]
            with (autocast() if autocast is not None else contextlib.nullcontext()):
                probs = self.infer_masks(model, batch["image"].to(device)).float().cpu().numpy()
            ious = metric.process(probs, batch["mask"].numpy(), (batch["mask_weight"][:, 0] * ok).numpy())
            for i in np.flatnonzero(~np.isnan(ious))[:PICTURES - len(shown)]:
                shown.append((int(batch["index"][i]), probs[i, 0], float(ious[i])))
            if progress:
                progress(step + 1, len(loader))
        model.train(was_training)
        stats = metric.compute()
        if faults:
            stats["faults"] = float(len(faults))
        if out_dir is not None:
            self._write_evaluation(Path(out_dir), stats, ds, shown)
        return stats

    def _write_evaluation(self, out_dir: Path, stats: Mapping[str, float], ds: CocoPoseDataset,
                          shown: list[tuple[int, np.ndarray, float]]) -> None:
        """``metrics.json`` and ``vis/<index>.jpg`` pictures: crop | target | prediction."""
        from ..pose.visualize import save_panel
        from .visualize import mask_panel

        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps(dict(stats), indent=1))
        if not shown:
            return
        vis = out_dir / "vis"
        vis.mkdir(exist_ok=True)
        for index, prob, iou in shown:
            s = ds.load(index)
            target = s["extras"]["mask"]
            panel = mask_panel(s["patch"], target if target is not None else np.zeros(prob.shape), prob)
            save_panel(vis / f"{index:05d}_iou{iou:.2f}.jpg", panel)

    def evaluate_file(self, results_file: str | Path, out_dir: Optional[Path] = None) -> dict[str, float]:
        raise PlatformError(f"{results_file}: scoring a mask predictions file is not supported for "
                            "PersonMaskTask; evaluate a model with --checkpoint instead")

    def format_metrics(self, stats: Mapping[str, float]) -> str:
        return format_table(stats, title="Person mask evaluation (per-person crops, mask grid)")

    # ------------------------------------------------------------------ inspection / prediction
    def browse(self, split: str, out_dir: Path, limit: int = 20) -> int:
        """Per sample: a picture (crop | crop with the mask target) and an .npz with the network
        input crop ``image`` (uint8 RGB), ``mask`` (uint8 0..255 at the crop's size), the encoded
        ``mask_target`` / ``mask_weight``, center, scale and rotation."""
        from ..pose.visualize import save_panel
        from .visualize import mask_panel

        ds = self.build_dataset(split, strict_images=True)
        target = ds.extra_targets[0]
        out_dir.mkdir(parents=True, exist_ok=True)
        n = min(limit, len(ds))
        for i in range(n):
            s = ds.load(i)
            warped = s["extras"]["mask"]
            encoded = target.empty() if warped is None else target.encode(warped)
            mask = np.zeros(s["patch"].shape[:2], np.uint8) if warped is None else warped
            r = ds.records[i]
            stem = f"{i:05d}_img{r.image_id}"
            np.savez_compressed(out_dir / f"{stem}.npz", image=s["patch"], mask=mask,
                                mask_target=encoded["mask"], mask_weight=encoded["mask_weight"],
                                center=np.asarray(s["center"], np.float32), scale=np.asarray(s["scale"], np.float32),
                                rotation=np.float32(s["rotation"]), image_file=r.image_file)
            save_panel(out_dir / f"{stem}.jpg", mask_panel(s["patch"], mask.astype(np.float32) / 255.0))
        return n

    def predict(self, model: nn.Module | Callable[[], nn.Module], source: str, out_dir: Path,
                boxes: Optional[str] = None, device: torch.device = torch.device("cpu"),
                det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
        """Person masks on an image, a folder of images or a video, with person boxes as for pose
        (``boxes`` file, else ``detector`` ``hog`` or ``whole``): results.json (masks as COCO RLE),
        images.json, boxes.json and pictures."""
        from .predict import run_mask_prediction

        if kpt_thr is not None:
            raise ConfigError("--kpt-thr applies to pose tasks only")
        return run_mask_prediction(self, model, Path(source), out_dir, boxes, device, det_thr=det_thr,
                                   max_megapixels=max_megapixels, detector=detector)
