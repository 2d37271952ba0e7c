"""Top-down pose task: COCO-format data of any skeleton or MPII data, heatmap codec, joints MSE loss,
flip-test inference, OKS AP with the data set's sigmas or MPII PCKh (``data.format``)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ...config import parse_section, setting
from ...errors import ConfigError, DataError
from ...precision_check import PrecisionSettings
from ...registry import LOSSES, TASKS, build
from ..base import Task
from .codec import HeatmapCodec
from .geometry import PIXEL_STD
from ...imageio import loader_worker_init
from .crop_targets import CropTarget
from .dataset import CocoPoseDataset, TopDownDataset
from .evaluation import (BACKEND_LABELS, EVAL_BACKENDS, STAT_NAMES, CocoKeypointMetric, evaluate_keypoints,
                         format_table, load_results, resolve_backend)
from .geometry import flip_back
from .keypoint_meta import DEFAULT_SIGMA, FORMATS, KeypointMeta
from . import sources
from . import mpii_dataset as mpii
from .pckh import PCKH_NAMES, evaluate_pckh, format_pckh_table, load_gt, load_predictions
from .transforms import AugmentConfig


@LOSSES.register_module()
class JointsMSELoss(nn.Module):
    """Official joints MSE: ``0.5 * mean((w * (pred - gt))^2)`` over batch, joints and pixels."""

    def __init__(self, use_target_weight: bool = True):
        super().__init__()
        self.use_target_weight = use_target_weight

    def forward(self, pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor) -> torch.Tensor:
        diff = pred.float() - target
        if self.use_target_weight:
            diff = diff * target_weight.unsqueeze(-1)
        return 0.5 * diff.pow(2).mean()


@dataclass
class PoseData:
    """``data`` section of a pose task YAML (see tasks/pose_coco.yaml and configs/datasets/mpii.yaml)."""

    format: str = setting("coco", choices=FORMATS, hint="keypoint data set layout and metric: coco (COCO-format "
                                                       "annotations, any skeleton, OKS AP) or mpii (PCKh)")
    train_split: str = "train2017"
    val_split: str = "val2017"
    train_ann: Optional[str] = None     # relative to data_root; default annotations/person_keypoints_<train_split>.json
    train_images: Optional[str] = None  # default images/<train_split>/ (or <train_split>/)
    val_ann: Optional[str] = None
    val_images: Optional[str] = None
    keypoint_info: Any = None           # shipped name | YAML file | mapping; null: the annotation file's category
    input_size: list[int] = setting(factory=lambda: [192, 256], ge=8, le=4096, hint="[W, H] of the network input crop")
    heatmap_size: list[int] = setting(factory=lambda: [48, 64], ge=1, le=1024, hint="[W, H]; input_size / 4 for HRNet")
    sigma: float = setting(2.0, gt=0)
    encoding: str = setting("msra", choices=("msra", "dark", "udp"))
    decoding: str = setting("argmax", choices=("argmax", "dark", "udp"))
    use_joint_weights: bool = False
    det_score_thr: float = setting(0.0, ge=0, le=1)
    batch_size: int = setting(32, ge=1, hint="samples per worker and step")
    val_batch_size: int = setting(64, ge=1)
    loader_workers: int = setting(2, ge=0, le=64, hint="DataLoader processes; 0 loads in the training process")
    augment: dict = field(default_factory=dict)


@dataclass
class PoseEval:
    """``evaluation`` section: flip test and the official rescoring + OKS NMS settings."""

    interval: int = setting(10, ge=1)
    flip_test: bool = True
    use_nms: bool = True
    soft_nms: bool = False
    oks_thre: float = setting(0.9, ge=0, le=1, hint="OKS above which NMS drops the weaker person")
    in_vis_thre: float = setting(0.2, ge=0, le=1)
    eval_backend: str = setting("auto", choices=EVAL_BACKENDS,
                                hint="COCOeval implementation, same numbers: auto (faster-coco-eval when "
                                     "installed, else pycocotools), pycocotools, faster")


def final_heatmaps(pred: torch.Tensor) -> torch.Tensor:
    """The final prediction of a pose head: ``(N, K, h, w)`` as given, or the last stack of a
    multi-stack output ``(N, S, K, h, w)`` (evaluation, flip test and pictures use it)."""
    if pred.ndim == 5:
        return pred[:, -1]
    if pred.ndim != 4:
        raise ValueError(f"pose head output must be (N, K, h, w) or (N, stacks, K, h, w), "
                         f"got shape {tuple(pred.shape)}")
    return pred


HEATMAP_STRIDE = 4  # input pixels per heatmap pixel of the usual pose heads (HRNet final_layer at 1/4)
BACKBONE_STRIDE = {"ResNet": 32}  # the feature stride a DeconvHead upsamples from (others: 4)


@TASKS.register_module()
class PoseTask(Task):
    """Top-down pose. ``data.format`` picks the keypoints (``meta``: COCO's 17 or MPII's 16 joints),
    the data set layout and the metric (COCO OKS AP or MPII PCKh); ``primary_metric`` and
    ``metric_names`` follow it once ``validate`` ran."""

    primary_metric = "AP"
    metric_names = STAT_NAMES
    head_names = ("pose",)  # overrides Task.head_names (a property there)

    def validate(self) -> None:
        self.validate_crops()
        mpii_format = self.data.format == "mpii"
        self.primary_metric = "PCKh" if mpii_format else "AP"
        self.metric_names = PCKH_NAMES if mpii_format else STAT_NAMES
        self._check_config_keypoints()
        task = self.task_section(allowed=("type", "loss", "stack_weights"))
        self.criterion = build(LOSSES, task.get("loss") or {"type": "JointsMSELoss"}, "task.loss")
        self.stack_weights = self._parse_stack_weights(task.get("stack_weights"))

    def validate_crops(self) -> None:
        """Parse what the top-down crop pipeline needs (``data``, ``data.augment``, ``evaluation``)
        and build the codec; tasks on the same crops (PersonMaskTask) share it."""
        cfg = self.cfg
        self.data = parse_section(cfg, "data", PoseData)
        self.eval_cfg = parse_section(cfg, "evaluation", PoseEval)
        if self.data.format == "coco":
            try:  # an explicit "faster" without the package fails on the driver, before any worker
                resolve_backend(self.eval_cfg.eval_backend)
            except ConfigError as e:
                raise ConfigError(f"{self._where('evaluation.eval_backend')}: {e}") from None
        self.augment = parse_section(cfg, "data.augment", AugmentConfig)
        self.precision_cfg = parse_section(cfg, "inference", PrecisionSettings)
        self._check_heatmap_size()
        try:  # a mistake in the keypoint info fails here; joints read from the data file come later
            self._meta: Optional[KeypointMeta] = sources.configured_meta(
                self.data, f"{self._where('data.keypoint_info')}: data.keypoint_info")
        except DataError as e:
            raise ConfigError(str(e)) from None
        self._codec: Optional[HeatmapCodec] = None
        if self.data.format == "mpii" and self.data.keypoint_info not in (None, "mpii"):
            raise ConfigError(f"{self._where('data.keypoint_info')}: data.format mpii has MPII's 16 joints; remove "
                              "data.keypoint_info, or convert the set to COCO format (data.format: coco)")
        if self.data.format == "mpii" and self.val_bbox_file():
            raise ConfigError(f"{self._where('bbox_file')}: bbox_file applies to COCO only; MPII is evaluated "
                              "on its annotated persons, so set bbox_file: null")
        self._val: Optional[TopDownDataset] = None

    def _where(self, key: str) -> str:
        return getattr(self.cfg, "where", lambda _k: "config")(key)

    @property
    def meta(self) -> KeypointMeta:
        """The data set's keypoints (names, flip pairs, skeleton, upper body, joint weights, OKS
        sigmas): ``data.keypoint_info``, else the annotation file's category (read on first use)."""
        if self._meta is None:
            self._meta = sources.meta_from_file(Path(self.data_root), self.data)
        return self._meta

    @property
    def codec(self) -> HeatmapCodec:
        if self._codec is None:
            self._codec = HeatmapCodec(self.data.input_size, self.data.heatmap_size, self.data.sigma,
                                       self.data.encoding, self.data.decoding, self.data.use_joint_weights,
                                       joint_weights=self.meta.joint_weights)
        return self._codec

    def head_defaults(self) -> dict[str, dict[str, Any]]:
        """The pose head predicts the data set's joints when ``num_keypoints`` is left null."""
        return {"pose": {"num_keypoints": self.meta.num_keypoints}}

    def weight_transforms(self) -> list:
        """Initial weights of another skeleton: the pose head's rows move by joint name."""
        from .transfer import joint_transfer

        return [joint_transfer("heads.pose.", self.meta.names)] if "pose" in self.head_names else []

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"keypoints": list(self.meta.names)} if "pose" in self.head_names else {}

    def _keypoint_mismatch(self, count: Any, key: str) -> ConfigError:
        n = self.meta.num_keypoints
        return ConfigError(f"{self._where(key)}: {key} is {count} but the data set has {n} keypoints "
                           f"({self.meta.source}); set model.heads.pose.num_keypoints=null to follow the data (or "
                           f"{n}; a Stacked Hourglass also model.backbone.oup_dim={n})")

    def _check_config_keypoints(self) -> None:
        """``model.heads.pose.num_keypoints``, when the config sets it, is the data set's joint count
        (caught before a model is built or a worker started). Joints read from the data file are
        checked in ``preflight``, once the files are known to exist."""
        if self._meta is not None:
            self.check_keypoint_count()

    def check_keypoint_count(self) -> None:
        heads = (self.cfg.get("model") or {}).get("heads") or {}
        pose = heads.get("pose") if isinstance(heads, Mapping) else None
        count = pose.get("num_keypoints") if isinstance(pose, Mapping) else None
        if count is not None and count != self.meta.num_keypoints:
            raise self._keypoint_mismatch(count, "model.heads.pose.num_keypoints")

    def _check_head_keypoints(self, head: nn.Module) -> None:
        """The built pose head's output count (its ``num_keypoints`` or final conv) fits ``meta``."""
        count = getattr(head, "num_keypoints", None)
        if count is None:
            count = getattr(getattr(head, "final_layer", None), "out_channels", None)
        if isinstance(count, int) and count != self.meta.num_keypoints:
            raise self._keypoint_mismatch(count, "model.heads.pose")

    def _parse_stack_weights(self, value: Any) -> Optional[list[float]]:
        """``task.stack_weights``: one loss weight per stack of a multi-stack model; null = 1.0 each."""
        if value is None:
            return None
        numbers = isinstance(value, (list, tuple)) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not numbers or not value:
            raise ConfigError(f"{self._where('task.stack_weights')}: task.stack_weights must be a list of "
                              f"numbers, one loss weight per stack (first stack first), or null for 1.0 each; "
                              f"got {value!r}")
        weights = [float(v) for v in value]
        if any(not np.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ConfigError(f"{self._where('task.stack_weights')}: task.stack_weights must be finite "
                              f"numbers >= 0 with a positive sum, got {value!r}")
        return weights

    def _weights_for(self, num_stacks: int) -> list[float]:
        """The loss weight of each of ``num_stacks`` predictions (1 for a single-output head)."""
        if self.stack_weights is None:
            return [1.0] * num_stacks
        if len(self.stack_weights) != num_stacks:
            what = (f"{num_stacks} predictions (one per stack)" if num_stacks > 1
                    else "a single prediction (no stacks)")
            raise ConfigError(f"{self._where('task.stack_weights')}: task.stack_weights has "
                              f"{len(self.stack_weights)} entries but the pose head returns {what}; give "
                              f"{num_stacks} weight(s) or set task.stack_weights=null for 1.0 each")
        return self.stack_weights

    def build_model(self) -> nn.Module:
        """The model; ``task.stack_weights`` must fit the pose head's number of predictions (a head
        that returns one prediction per stack says how many in ``num_outputs``)."""
        model = super().build_model()
        heads = getattr(model, "heads", None)
        if heads is not None and "pose" in heads:
            self._check_head_keypoints(heads["pose"])
            if self.stack_weights is not None:
                self._weights_for(int(getattr(heads["pose"], "num_outputs", 1)))
        return model

    def heatmap_stride(self) -> int:
        """Input pixels per heatmap pixel of the configured pose head: 4 (HRNet's and Hourglass's
        heads, SimpleBaseline's three deconvolutions on ResNet's stride 32), halved by each
        deconvolution of a ``DeconvHead`` on a stride-4 backbone (one: stride 2)."""
        model = self.cfg.get("model") or {}
        head = ((model.get("heads") or {}).get("pose") or {}) if isinstance(model, Mapping) else {}
        if not isinstance(head, Mapping) or head.get("type") != "DeconvHead":
            return HEATMAP_STRIDE
        backbone = str((model.get("backbone") or {}).get("type", ""))
        layers = head.get("num_deconv_layers", 3)
        layers = layers if isinstance(layers, int) and not isinstance(layers, bool) and layers >= 0 else 3
        return max(1, BACKBONE_STRIDE.get(backbone, HEATMAP_STRIDE) // 2 ** layers)

    def _check_heatmap_size(self) -> None:
        """The heads output heatmaps at 1/stride of the input (``heatmap_stride``): a heatmap_size
        that does not follow a changed input_size would silently train against mis-scaled targets."""
        (w_in, h_in), (w_hm, h_hm) = self.data.input_size, self.data.heatmap_size
        if len(self.data.input_size) != 2 or len(self.data.heatmap_size) != 2:
            raise ConfigError("data.input_size and data.heatmap_size must each be [W, H]")
        stride = self.heatmap_stride()
        if w_in != stride * w_hm or h_in != stride * h_hm:
            where = getattr(self.cfg, "where", lambda _k: "config")
            raise ConfigError(
                f"{where('data.heatmap_size')}: data.heatmap_size {list(self.data.heatmap_size)} does not fit "
                f"data.input_size {list(self.data.input_size)}: the model's heatmaps are 1/{stride} "
                f"of the input, so set data.heatmap_size=[{w_in // stride},{h_in // stride}]"
                + ("" if w_in % stride == 0 and h_in % stride == 0
                   else f" and make data.input_size a multiple of {stride}"))

    # ------------------------------------------------------------------ data
    def cost_input_size(self) -> tuple[int, int]:
        """``(H, W)`` of the person crop (``data.input_size`` is [W, H])."""
        w, h = self.data.input_size
        return int(h), int(w)

    def preflight(self) -> None:
        """The dataset files exist (annotations, image folders, detections): cheap checks on the
        driver, so that a wrong path never reaches a Ray worker."""
        super().preflight()
        if self.data.format == "mpii":
            self._preflight_mpii()
            return
        root = Path(self.data_root)
        if not root.is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root to your dataset folder "
                            "(--set data_root=...) or make the demo set with `platform data demo`")
        sources.check_files(root, self.data, self.val_bbox_file())
        self.check_keypoint_count()

    def _preflight_mpii(self) -> None:
        """The official MPII layout: annot/<split>.json for both splits, the PCKh ground truth of the
        validation split and the image folder."""
        root = Path(self.data_root)
        if not root.is_dir():
            raise DataError(f"data_root {root} does not exist; set data_root to your MPII folder "
                            "(--set data_root=...) or make the demo set with `platform data demo --task mpii`")
        for key in ("train_split", "val_split"):
            ann = mpii.annot_file(root, getattr(self.data, key))
            if not ann.is_file():
                raise DataError(f"{ann}: MPII annotation file not found; check data_root and data.{key}")
        gt = mpii.gt_file(root, self.data.val_split)
        if not gt.is_file():
            raise DataError(f"{gt}: PCKh ground truth not found (official annot/gt_<val_split>.mat); "
                            "check data_root and data.val_split")
        mpii.image_dir(root)

    def check_data(self, report: Any, full: bool = False) -> None:
        """Both splits index as training will (keypoint counts, fields, boxes), their image files
        exist; ``full``: also image headers, joints per split, boxes, metadata (``datacheck``)."""
        from .datacheck import check_pose_data

        check_pose_data(self, report, full)

    def val_bbox_file(self) -> Optional[str]:
        """The person detections the validation split uses (``bbox_file``); None: ground-truth boxes."""
        return self.cfg.get("bbox_file")

    def build_dataset(self, split: str, strict_images: bool = False,
                      extra_targets: Sequence[CropTarget] = ()) -> TopDownDataset:
        """The crops of ``split``; ``extra_targets`` (another task's image-aligned targets) get the
        same augmentation and crop as the image."""
        train = split == "train"
        name = self.data.train_split if train else self.data.val_split
        if self.data.format == "mpii":
            return mpii.MpiiPoseDataset(self.data_root, name, self.codec, train=train, augment_cfg=self.augment,
                                        seed=int(self.cfg.get("seed", 0)), strict_images=strict_images,
                                        extra_targets=extra_targets)
        which = "train" if train else "val"
        return CocoPoseDataset(self.data_root, name, self.codec, train=train,
                               ann_file=sources.annotation_file(Path(self.data_root), self.data, which),
                               image_dir=getattr(self.data, f"{which}_images"),
                               bbox_file=None if train else self.val_bbox_file(),
                               det_score_thr=self.data.det_score_thr, augment_cfg=self.augment,
                               seed=int(self.cfg.get("seed", 0)), strict_images=strict_images,
                               extra_targets=extra_targets, meta=self.meta)

    def extra_targets(self, split: str) -> Sequence[CropTarget]:
        """Pose targets come from the records themselves: nothing to add to a shared dataset."""
        return ()

    def shared_input_key(self) -> tuple:
        """Everything that fixes the training crops: the files, crop geometry, augmentation and seed
        (not the heatmap encoding, which only shapes the pose targets)."""
        return (f"{self.data.format}-topdown", str(Path(self.data_root).resolve()), self.data.train_split,
                self.data.train_ann, self.data.train_images, tuple(self.data.input_size), tuple(self.data.heatmap_size), self.codec.udp,
                tuple(sorted(vars(self.augment).items())), int(self.cfg.get("seed", 0)))

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """The criterion on the pose heatmaps. A multi-stack head (output ``(N, S, K, h, w)``, one
        prediction per stack) gets intermediate supervision: the criterion on every stack against
        the same targets, summed with ``task.stack_weights`` (1.0 each by default, as in Stacked
        Hourglass)."""
        pred, target, weight = outputs["pose"], batch["target"], batch["target_weight"]
        if pred.ndim == 4:
            scale = self._weights_for(1)[0]
            loss = self.criterion(pred, target, weight)
            return loss if scale == 1.0 else loss * scale
        if pred.ndim != 5:
            raise ValueError(f"pose head output must be (N, K, h, w) or (N, stacks, K, h, w), "
                             f"got shape {tuple(pred.shape)}")
        weights = self._weights_for(pred.shape[1])
        return sum(w * self.criterion(pred[:, s], target, weight) for s, w in enumerate(weights))

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer_heatmaps(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Heatmaps ``(N, K, h, w)`` for normalised crops, averaged with the flipped input when flip
        test is on; of a multi-stack model, the last stack's (the final prediction)."""
        heatmaps = final_heatmaps(model(images)["pose"]).float()
        if self.eval_cfg.flip_test:
            flipped = final_heatmaps(model(images.flip(3))["pose"]).float()
            heatmaps = (heatmaps + flip_back(flipped, self.meta.flip_pairs, shift=self.codec.flip_shift)) * 0.5
        return heatmaps

    def persons_from_batch(self, heatmaps: torch.Tensor, batch: Mapping[str, Any]) -> list[dict]:
        """Decode heatmaps to per-person dicts in original image pixels (metric/predict format)."""
        centers = batch["center"].numpy()
        scales = batch["scale"].numpy()
        preds, maxvals = self.codec.decode(heatmaps.cpu().numpy(), centers, scales)
        out = []
        for i in range(len(preds)):
            out.append({
                "image_id": int(batch["image_id"][i]),
                "keypoints": np.concatenate([preds[i], maxvals[i]], axis=1),
                "score": float(batch["score"][i]),
                "area": float(scales[i][0] * scales[i][1] * PIXEL_STD * PIXEL_STD),
                "category_id": int(batch["category_id"][i]) if "category_id" in batch else 1,
                "center": centers[i], "scale": scales[i],
            })
            if "index" in batch:  # position in the dataset (MPII scores predictions in val order)
                out[-1]["index"] = int(batch["index"][i])
        return out

    def precision_settings(self) -> PrecisionSettings:
        return self.precision_cfg

    def calibration(self, settings: PrecisionSettings) -> Any:
        """Validation crops and keypoint agreement (``calibration.pose_calibration``)."""
        from .calibration import pose_calibration

        return pose_calibration(self, settings)

    def val_dataset(self) -> TopDownDataset:
        if self._val is None:
            self._val = self.build_dataset("val")
        return self._val

    def loader(self, dataset: Any, batch_size: int, shuffle: bool = False, workers: Optional[int] = None) -> DataLoader:
        workers = self.data.loader_workers if workers is None else workers
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                          worker_init_fn=loader_worker_init, persistent_workers=False, collate_fn=self.collate)

    def _val_persons(self, model: nn.Module, ds: TopDownDataset, device: torch.device,
                     progress: Optional[Callable[[int, int], None]], autocast: Optional[Callable[[], Any]],
                     faults: list[str]) -> Iterator[list[dict]]:
        """Per validation batch, the decoded persons of the samples without a fault (each with its
        dataset ``index``); the messages of the faulty samples are appended to ``faults``."""
        was_training = model.training
        model.eval()
        try:
            loader = self.loader(ds, self.data.val_batch_size)
            for step, batch in enumerate(loader):
                with (autocast() if autocast is not None else contextlib.nullcontext()):
                    heatmaps = self.infer_heatmaps(model, batch["image"].to(device))
                persons = self.persons_from_batch(heatmaps, batch)
                faults += [f for f in batch["fault"] if f]
                yield [p for p, f in zip(persons, batch["fault"]) if not f]
                if progress:
                    progress(step + 1, len(loader))
        finally:
            model.train(was_training)

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None,
                 autocast: Optional[Callable[[], Any]] = None) -> dict[str, float]:
        """COCO keypoint AP (official rescoring + OKS NMS) or, for ``data.format: mpii``, PCKh of
        ``model`` on the validation split; ``faults`` counts samples whose image could not be read."""
        ds = self.val_dataset()
        faults: list[str] = []
        persons = self._val_persons(model, ds, device, progress, autocast, faults)
        if self.data.format == "mpii":
            stats = self._pckh(persons, ds, out_dir)
        else:
            metric = CocoKeypointMetric(str(ds.ann_file), use_nms=self.eval_cfg.use_nms,
                                        soft_nms=self.eval_cfg.soft_nms, oks_thre=self.eval_cfg.oks_thre,
                                        in_vis_thre=self.eval_cfg.in_vis_thre,
                                        backend=self.eval_cfg.eval_backend, sigmas=self.meta.oks_sigmas())
            for batch_persons in persons:
                metric.process(batch_persons)
            stats = metric.compute(out_dir)
        if faults:
            stats["faults"] = float(len(faults))
        return stats

    def _pckh(self, persons: Iterator[list[dict]], ds: TopDownDataset, out_dir: Optional[Path]) -> dict[str, float]:
        """PCKh of the predictions in val order; writes the official ``pred.mat`` into ``out_dir``.
        A faulty sample keeps a NaN prediction: its labelled joints count as misses."""
        gt = load_gt(ds.gt_file)  # before inference: a bad file fails fast
        preds = np.full((len(ds), self.meta.num_keypoints, 2), np.nan, np.float32)
        for batch_persons in persons:
            for p in batch_persons:
                preds[p["index"]] = p["keypoints"][:, :2]
        return evaluate_pckh(preds, gt, out_dir, gt_name=ds.gt_file)

    def evaluate_file(self, results_file: str | Path, out_dir: Optional[Path] = None) -> dict[str, float]:
        """Score a results file against the validation ground truth: a COCO keypoint results file (no
        NMS, as given), or for MPII the official ``pred.mat`` (1-based) or a JSON list of 16x2 / 16x3
        arrays in val order (0-based)."""
        if self.data.format == "mpii":
            gt_path = mpii.gt_file(self.data_root, self.data.val_split)
            gt = load_gt(gt_path)
            return evaluate_pckh(load_predictions(results_file, gt.num_persons), gt, out_dir, gt_name=gt_path)
        ann = sources.annotation_file(Path(self.data_root), self.data, "val")
        return evaluate_keypoints(str(ann), load_results(results_file, self.meta.num_keypoints),
                                  out_json=(out_dir / "metrics.json") if out_dir else None,
                                  backend=self.eval_cfg.eval_backend, sigmas=self.meta.oks_sigmas())

    def format_metrics(self, stats: Mapping[str, float]) -> str:
        if self.data.format == "mpii":
            return format_pckh_table(stats)
        backend = BACKEND_LABELS[resolve_backend(self.eval_cfg.eval_backend)]
        table = format_table(dict(stats), title=f"COCO keypoint evaluation, {self.meta.name} joints ({backend})")
        if self.meta.sigmas is None:
            table += (f"\nnote: {self.meta.source} gives no OKS sigmas; every joint used {DEFAULT_SIGMA} (give "
                      "data.keypoint_info with sigmas): this AP is not comparable to published figures")
        return table

    # ------------------------------------------------------------------ inspection
    def browse(self, split: str, out_dir: Path, limit: int = 20) -> int:
        """Per sample: a picture (crop | crop + target heatmaps, keypoints drawn) and an .npz with
        the network input crop (uint8 RGB), targets, weights, center and scale."""
        from .visualize import draw_skeleton, heatmap_panel, save_panel

        ds = self.build_dataset(split, strict_images=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        n = min(limit, len(ds))
        for i in range(n):
            s = ds.load(i)
            target, weight = self.codec.encode(s["joints"], s["joints_vis"])
            r = ds.records[i]
            stem = f"{i:05d}_img{r.image_id}"
            np.savez_compressed(out_dir / f"{stem}.npz", image=s["patch"], target=target.astype(np.float32),
                                target_weight=weight.astype(np.float32), joints=s["joints"].astype(np.float32),
                                joints_vis=s["joints_vis"].astype(np.float32),
                                center=np.asarray(s["center"], np.float32), scale=np.asarray(s["scale"], np.float32),
                                rotation=np.float32(s["rotation"]), image_file=r.image_file)
            kp = np.concatenate([s["joints"][:, :2], s["joints_vis"][:, :1]], axis=1)
            drawn = draw_skeleton(s["patch"], kp, thr=0.5, radius=2, thickness=1, meta=self.meta)
            save_panel(out_dir / f"{stem}.jpg", heatmap_panel(drawn, target))
        return n

    # ------------------------------------------------------------------ prediction
    def predict(self, model: nn.Module | Callable[[], nn.Module], source: str, out_dir: Path,
                boxes: Optional[str] = None, device: torch.device = torch.device("cpu"),
                det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
        """Predict on an image, a folder of images or a video; write results.json, images.json,
        boxes.json and pictures. ``model`` may be a loader, called after inputs and options are checked.
        Boxes come from ``boxes`` (a COCO results file), else from ``detector`` (``hog`` or ``whole``)."""
        from .predict import run_prediction

        return run_prediction(self, model, Path(source), out_dir, boxes, device, det_thr=det_thr,
                              kpt_thr=kpt_thr, max_megapixels=max_megapixels, detector=detector)
