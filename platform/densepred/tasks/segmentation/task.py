"""Semantic segmentation task (HRNetV2) on any class list: Cityscapes, an image/label folder set or a
label target of a multi-target layout (``data.format``), classes from a class_info file; cross-entropy / OHEM loss, whole, sliding window
and multi-scale inference (flip test swapping left/right classes), confusion-matrix mIoU, label
PNGs and pictures in the class list's colours."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...config import parse_section
from ...errors import ConfigError, PlatformError
from ...imageio import loader_worker_init
from ...registry import LOSSES, TASKS, build
from ..base import Task
from . import dense_source
from .class_info import ClassInfo, load_class_info, shipped_names
from .dataset import SegDataset, SegSample, find_samples
from .folders import check_layout, find_folder_samples
from .labels import CITYSCAPES, CLASS_NAMES
from .loss import OFFICIAL_CLASS_WEIGHTS, SegCrossEntropy  # noqa: F401  (registers the loss)
from .metric import ConfusionMatrix, evaluate_prediction_folder
from .metric import _write_metrics as write_metrics
from .settings import SegData, SegEval, SegInference
from .transforms import SegAugment

def is_cityscapes(info: ClassInfo) -> bool:
    """The Cityscapes class list and label table (the official class weights and the benchmark
    evaluation apply)."""
    return (info.names, info.label_ids, info.ignored_label_ids) == (
        CITYSCAPES.names, CITYSCAPES.label_ids, CITYSCAPES.ignored_label_ids)


#: keys of the ``task`` section
TASK_KEYS = ("type", "loss", "head")


@TASKS.register_module()
class SegmentationTask(Task):
    primary_metric = "mIoU"
    #: the model head it trains (``task.head``; several segmentation members need distinct heads)
    head = "seg"
    #: Cityscapes' until ``validate`` reads the configured class list
    metric_names = ("mIoU", "aAcc") + tuple(f"IoU.{name}" for name in CLASS_NAMES)

    def validate(self) -> None:
        cfg = self.cfg
        self.data = parse_section(cfg, "data", SegData)
        self.eval_cfg = parse_section(cfg, "evaluation", SegEval)
        self.infer_cfg = parse_section(cfg, "inference", SegInference)
        self.augment = parse_section(cfg, "data.augment", SegAugment)
        check_layout(self.data, self._where)
        self.head = str(self.task_section(allowed=TASK_KEYS).get("head") or "seg")
        self.layout = self.dense_spec = self.label_target = None
        if self.data.is_dense:
            self.layout, self.dense_spec = dense_source.label_spec(self.data.format, self.data.target, self._where)
        self.class_info = self._load_class_info()
        if self.data.is_dense:
            dense_source.check_stored_convention(self.dense_spec, self.class_info, self._where)
            self.label_target = dense_source.label_target(self.dense_spec, self.class_info)
        self.metric_names = ("mIoU", "aAcc") + tuple(f"IoU.{name}" for name in self.class_info.names)
        self._check_num_classes()
        self.criterion = self._build_loss()

    # ------------------------------------------------------------------ config
    def _where(self, key: str) -> str:
        return getattr(self.cfg, "where", lambda _k: "config")(key)

    @property
    def head_names(self) -> tuple[str, ...]:
        return (self.head,)

    @property
    def label_key(self) -> str:
        """The batch key of the label: ``label``, or the layout's target name for a dense format."""
        return self.label_target.key if self.label_target is not None else "label"

    @property
    def label_kind(self) -> str:
        """What the label PNGs hold, in words for messages."""
        return "labelIds" if self.data.format == "cityscapes" else "index"

    def _load_class_info(self) -> ClassInfo:
        key = "data.class_info"
        value = self.data.class_info
        if value is None:
            if self.data.is_dense:
                return dense_source.layout_class_info(self.layout, self.dense_spec, self._where)
            if self.data.format == "folders":
                raise ConfigError(f"{self._where(key)}: data.format=folders needs {key}: a shipped class list "
                                  f"({', '.join(shipped_names())}), the path of a class_info .yaml file, or a "
                                  "mapping with names (and palette, ignore_index, reduce_zero_label, ...)")
            return CITYSCAPES
        # An inline list changed with --set (data.class_info.palette=...) is blamed on --set.
        changed = any(k.startswith(f"{key}.") for k in getattr(self.cfg, "overrides", None) or {})
        where = "--set" if changed else self._where(key)
        info = load_class_info(value, f"{where}: {key}", inline_name=f"{key} of {self._where(key)}")
        if self.data.format == "cityscapes" and info.label_ids is None:
            raise ConfigError(f"{self._where(key)}: data.format=cityscapes reads gtFine labelIds, which needs a "
                              f"class list with a label_ids table ({info.source} has none); for label PNGs that "
                              "hold class ids use data.format=folders")
        return info

    def _model_section(self) -> tuple[Optional[Mapping[str, Any]], Callable[[str], str]]:
        """The model the head lives in: this config's, or the multi-task run's for a member."""
        if isinstance(self.cfg.get("model"), Mapping):
            return self.cfg["model"], self._where
        parent = getattr(self.cfg, "parent", None)
        if isinstance(parent, Mapping) and isinstance(parent.get("model"), Mapping):
            return parent["model"], getattr(parent, "where", lambda _k: "config")
        return None, self._where

    def _check_num_classes(self) -> None:
        """``model.heads.seg.num_classes`` is null (it follows the class list) or equals it."""
        model, where = self._model_section()
        head = ((model or {}).get("heads") or {}).get(self.head)
        if not isinstance(head, Mapping):
            return
        key, n, given = f"model.heads.{self.head}.num_classes", self.class_info.num_classes, head.get("num_classes")
        if given is not None and given != n:
            raise ConfigError(f"{where(key)}: {key} is {given} but the class list {self.class_info.display} has "
                              f"{n} classes; set it to null (it then follows data.class_info) or to {n}")

    def _build_loss(self) -> nn.Module:
        loss_cfg = dict(self.task_section(allowed=TASK_KEYS).get("loss") or {"type": "SegCrossEntropy"})
        if loss_cfg.get("type") != "SegCrossEntropy":
            return build(LOSSES, loss_cfg, "task.loss")
        n, info, key = self.class_info.num_classes, self.class_info, "task.loss.class_weights"
        weights = loss_cfg.get("class_weights")
        if weights == "official" and not is_cityscapes(info):
            raise ConfigError(f"{self._where(key)}: {key}=official are the Cityscapes class weights, but the "
                              f"class list is {info.display} ({n} classes); set {key}=null or give {n} weights")
        if isinstance(weights, (list, tuple)) and len(weights) != n:
            raise ConfigError(f"{self._where(key)}: {key} has {len(weights)} weights for the {n} classes of "
                              f"{info.display}; give one per class, or null")
        given = loss_cfg.get("ignore_index")
        if given is not None and given != info.ignore_index:
            raise ConfigError(f"{self._where('task.loss.ignore_index')}: task.loss.ignore_index is {given} but the "
                              f"class list ignores {info.ignore_index}; remove it (it follows data.class_info)")
        return build(LOSSES, loss_cfg, "task.loss", ignore_index=info.ignore_index)

    def head_defaults(self) -> dict[str, dict[str, Any]]:
        """The segmentation head's ``num_classes`` follows the class list where the config leaves it null."""
        return {self.head: {"num_classes": self.class_info.num_classes}}

    def cost_input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the training crop (``data.augment.crop_size`` is [W, H])."""
        w, h = self.augment.crop_size
        return int(h), int(w)

    def calibration(self, settings: Any) -> Any:
        """Validation images and per-pixel class agreement (``calibration.seg_calibration``)."""
        from .calibration import seg_calibration

        return seg_calibration(self, settings)

    # ------------------------------------------------------------------ data
    def samples(self, split: str, targets: Optional[list] = None) -> list:
        """The image/label pairs of ``split`` (``train``/``val``) in the configured layout (a dense
        layout: its samples with the files of the label and of ``targets``)."""
        root = Path(self.data_root)
        if self.data.is_dense:
            from ..dense.samples import find_dense_samples

            specs = [t.spec for t in (targets if targets is not None else [self.label_target])]
            return find_dense_samples(root, self.layout, split, specs, self.data.split_name(split))
        if self.data.format == "cityscapes":
            return find_samples(root, self.data.split_name(split))
        return find_folder_samples(root, self.data, split)

    def preflight(self) -> None:
        """Both splits pair every image with its label (a file listing, no decoding)."""
        super().preflight()
        for split in ("train", "val"):
            self.samples(split)

    def check_data(self, report: Any, full: bool = False) -> None:
        """Images and labels of both splits: files missing or unreadable, label values outside the
        class list, labels of another size; with ``full`` every file and the pixels per class."""
        from .checks import check_split

        for split in ("train", "val"):
            if self.data.is_dense:
                from ..dense.checks import check_dense_split

                check_dense_split(self, split, report, full, [self.label_target])
            else:
                check_split(self, split, report, full)

    def build_dataset(self, split: str, strict_images: bool = False, extra_targets: Sequence[Any] = ()) -> Any:
        """The split's dataset; a dense layout's also reads ``extra_targets`` (other members')."""
        if self.data.is_dense:
            from ..dense.dataset import DenseDataset

            targets = [self.label_target, *extra_targets]
            return DenseDataset(self.samples(split, targets), targets, train=split == "train",
                                augment_cfg=self.augment, seed=int(self.cfg.get("seed", 0)),
                                strict_images=strict_images)
        return SegDataset(self.samples(split), self.class_info, train=split == "train", augment_cfg=self.augment,
                          seed=int(self.cfg.get("seed", 0)), strict_images=strict_images, label_kind=self.label_kind)

    def extra_targets(self, split: str) -> Sequence[Any]:
        """A dense layout's label, for a dataset shared with other dense members."""
        return (self.label_target,) if self.label_target is not None else ()

    def shared_input_key(self) -> Optional[tuple]:
        if not self.data.is_dense:
            return None
        from ..dense.common import dense_input_key

        return dense_input_key(self.data.format, self.data_root, self.data.train_split, self.augment,
                               int(self.cfg.get("seed", 0)))

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        logits = outputs[self.head]
        return self.criterion.to(logits.device)(logits, batch[self.label_key])

    # ------------------------------------------------------------------ inference
    def _logits(self, model: nn.Module, image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Class probabilities of one (1,3,h,w) image, upsampled to ``size``, flip-averaged if set
        (the mirrored image's left/right classes swapped back first)."""
        ac = self.infer_cfg.align_corners
        out = F.interpolate(model(image)[self.head].float(), size=size, mode="bilinear", align_corners=ac).softmax(1)
        if self.infer_cfg.flip:
            flipped = model(image.flip(3))[self.head].float().flip(3)
            perm = self.class_info.flip_permutation
            if perm is not None:
                flipped = flipped[:, perm]
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
        probs = torch.zeros(1, self.class_info.num_classes, H, W)
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
        """(1, num_classes, H, W) class probabilities for a normalised (1, 3, H, W) image."""
        mode = self.infer_cfg.mode
        h, w = image.shape[-2:]
        if mode == "whole":
            return self._logits(model, image, (h, w)).cpu()
        if mode == "slide":
            return self._slide(model, image)
        total = torch.zeros(1, self.class_info.num_classes, h, w)
        for s in self.infer_cfg.scales:
            scaled = F.interpolate(image, scale_factor=s, mode="bilinear", align_corners=self.infer_cfg.align_corners)
            p = self._slide(model, scaled)
            total += F.interpolate(p, size=(h, w), mode="bilinear", align_corners=self.infer_cfg.align_corners)
        return total / len(self.infer_cfg.scales)

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None,
                 autocast: Optional[Callable[[], Any]] = None) -> dict[str, float]:
        """mIoU on the validation split at full resolution (bounded memory: an N x (N+1) count table)."""
        ds = self.build_dataset("val")
        loader = DataLoader(ds, batch_size=1, num_workers=self.data.loader_workers,
                            worker_init_fn=loader_worker_init)
        info = self.class_info
        cm = ConfusionMatrix(info.num_classes, info.ignore_index, info.names)
        was_training = model.training
        model.eval()
        for i, batch in enumerate(loader):
            image = batch["image"].to(device)
            with (autocast() if autocast else contextlib.nullcontext()):
                probs = self.predict_probs(model, image)
            cm.update(probs.argmax(1).numpy(), batch[self.label_key].numpy())
            if progress:
                progress(i + 1, len(loader))
        model.train(was_training)
        stats = cm.summary()
        if out_dir is not None:
            write_metrics(out_dir, stats)
        return stats

    def evaluate_file(self, predictions: str | Path, out_dir: Optional[Path] = None) -> dict[str, float]:
        """Score a folder of prediction PNGs: Cityscapes labelIds in the benchmark submission format,
        or index PNGs named like the validation labels (``<stem><label_suffix>``)."""
        if self.data.is_dense:
            raise PlatformError(f"--predictions: scoring a folder of label PNGs is not supported for the "
                                f"{self.data.format} layout; evaluate the model with --checkpoint")
        if self.data.format == "cityscapes" and is_cityscapes(self.class_info):
            return evaluate_prediction_folder(predictions, data_root=self.data_root,
                                              split=self.data.split_name("val"), out_dir=out_dir)
        from .folder_eval import evaluate_label_folder

        return evaluate_label_folder(predictions, lambda: self.samples("val"), self.class_info,
                                     self.prediction_suffix, out_dir=out_dir)

    @property
    def prediction_suffix(self) -> str:
        """How prediction PNGs end: Cityscapes ``_labelIds.png``, else the labels' suffix."""
        return "_labelIds.png" if self.data.format == "cityscapes" else self.data.label_suffix

    def format_metrics(self, stats: Mapping[str, float]) -> str:
        info = self.class_info
        width = max(16, max(len(n) for n in info.names))
        title = f"{info.dataset} semantic segmentation" if info.dataset else "Semantic segmentation"
        lines = [f"{title} ({info.num_classes} classes)", f"{'class':{width}s} {'IoU':>7s}", "-" * (width + 8)]
        for name in info.names:
            v = stats.get(f"IoU.{name}")
            lines.append(f"{name:{width}s} {('   nan' if v is None or v != v else f'{v:7.4f}')}")
        lines += ["-" * (width + 8), f"{'mIoU':{width}s} {stats['mIoU']:7.4f}",
                  f"{'aAcc':{width}s} {stats.get('aAcc', float('nan')):7.4f}"]
        return "\n".join(lines)

    # ------------------------------------------------------------------ inspection / prediction
    def browse(self, split: str, out_dir: Path, limit: int = 20) -> int:
        """Per sample: an image/label overlay picture and an .npz with ``image`` (uint8 RGB) and
        ``label`` (class ids, ignore_index = ignore) — full resolution when ``split`` is val."""
        import cv2

        from .visualize import overlay

        ds = self.build_dataset(split, strict_images=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        n = min(limit, len(ds))
        for i in range(n):
            image, label = dense_source.pair(ds, i, self.label_key) if self.data.is_dense else ds.load(i)
            stem = ds.samples[i].stem.replace("/", "_")
            np.savez_compressed(out_dir / f"{stem}.npz", image=image, label=label.astype(self.class_info.label_dtype))
            cv2.imwrite(str(out_dir / f"{stem}.jpg"), overlay(image, label, info=self.class_info)[:, :, ::-1])
        return n

    def predict(self, model: nn.Module | Callable[[], nn.Module], source: str, out_dir: Path,
                boxes: Optional[str] = None, device: torch.device = torch.device("cpu"),
                det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
        """Predict on an image, a folder of images or a video: label PNGs and overlays (an overlay
        video for a video). ``model`` may be a loader, called after the input is checked."""
        from .predict import run_prediction

        pose_only = [name for name, value in (("--boxes", boxes), ("--det-thr", det_thr),
                                              ("--kpt-thr", kpt_thr), ("--detector", detector)) if value is not None]
        if pose_only:
            raise ConfigError(f"{', '.join(pose_only)} appl{'ies' if len(pose_only) == 1 else 'y'} to pose tasks only")
        return run_prediction(self, model, Path(source), out_dir, device, max_megapixels=max_megapixels)
