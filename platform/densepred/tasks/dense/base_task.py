"""``DenseTask``: what depth, normals and boundary tasks share around their own loss, metric and
pictures: the layout and target they read, the dataset (alone, or carrying other members' targets
in a same-input multi-task run), whole-image inference at full resolution, the evaluation loop,
the data check, browse, predict and scoring a folder of predictions.

A subclass sets ``kind`` (the layout target kind it reads), ``default_head``, ``out_channels``,
``default_loss``, the metric names and directions, and implements ``activate`` (raw head output
to prediction), ``new_metric``, ``visualize`` and the prediction file format.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ...config import parse_section
from ...errors import ConfigError, DataError
from ...imageio import loader_worker_init, read_rgb
from ...registry import LOSSES, build
from ..base import Task
from .augment import DenseAugment
from .common import check_head_value, dense_input_key, resolve_target
from .dataset import DenseDataset
from .layout import load_layout
from .panels import side_by_side
from .samples import DenseSample, find_dense_samples
from .settings import DenseData, DenseEval, DenseInference
from .targets import DenseTarget


def target_array(tensor: torch.Tensor, kind: str) -> np.ndarray:
    """One sample's target tensor back to its array (normals ``(H, W, 3)``, depth ``(H, W)``)."""
    a = tensor.numpy()
    if kind == "normals":
        return a.transpose(1, 2, 0)
    return a[0] if kind == "depth" else a


class DenseTask(Task):
    """Base of the dense regression-like tasks (see the module docstring)."""

    kind = ""                    # depth | normals | boundary: the target kind and the layout's default key
    default_head = ""
    out_channels = 1
    default_loss: Mapping[str, Any] = {}
    eval_section: type = DenseEval
    task_keys: tuple[str, ...] = ("type", "loss", "head")
    pred_folder, pred_suffix = "", ""

    def validate(self) -> None:
        cfg = self.cfg
        self.data = parse_section(cfg, "data", DenseData)
        self.augment = parse_section(cfg, "data.augment", DenseAugment)
        self.eval_cfg = parse_section(cfg, "evaluation", self.eval_section)
        self.infer_cfg = parse_section(cfg, "inference", DenseInference)
        section = self.task_section(allowed=self.task_keys)
        self.head = str(section.get("head") or self.default_head)
        self.layout = load_layout(self.data.format)
        spec = resolve_target(self.layout, self.data.target, self.kind, self.kind, self._where)
        self.target = self.make_target(spec, section)
        self.criterion = build(LOSSES, dict(section.get("loss") or self.default_loss), "task.loss")
        check_head_value(cfg, self.head, "out_channels", self.out_channels, type(self).__name__)
        self._check_head_exists()

    def _check_head_exists(self) -> None:
        """The model of a single-task config has this task's head (a multi-task run checks its own)."""
        heads = (self.cfg.get("model") or {}).get("heads")
        if isinstance(heads, Mapping) and self.head not in heads:
            raise ConfigError(f"{self._where('model.heads')}: model.heads has no '{self.head}' head, which "
                              f"{type(self).__name__} trains (task.head); add {self.head}: {{type: DenseHead}} "
                              f"or set task.head to one of {', '.join(heads)}")

    def make_target(self, spec: Any, section: Mapping[str, Any]) -> DenseTarget:
        return DenseTarget(spec.name, spec)

    def _where(self, key: str) -> str:
        return getattr(self.cfg, "where", lambda _k: "config")(key)

    @property
    def head_names(self) -> tuple[str, ...]:
        return (self.head,)

    def head_defaults(self) -> dict[str, dict[str, Any]]:
        return {self.head: {"out_channels": self.out_channels}}

    def cost_input_size(self) -> tuple[int, int]:
        w, h = self.augment.crop_size
        return int(h), int(w)

    # ------------------------------------------------------------------ data
    def samples(self, split: str, targets: Optional[Sequence[DenseTarget]] = None) -> list[DenseSample]:
        specs = [t.spec for t in (targets if targets is not None else [self.target])]
        return find_dense_samples(Path(self.data_root), self.layout, split, specs, self.data.split_name(split))

    def preflight(self) -> None:
        super().preflight()
        for split in ("train", "val"):
            self.samples(split)

    def check_data(self, report: Any, full: bool = False) -> None:
        from .checks import check_dense_split

        for split in ("train", "val"):
            check_dense_split(self, split, report, full, [self.target])

    def build_dataset(self, split: str, strict_images: bool = False,
                      extra_targets: Sequence[DenseTarget] = ()) -> DenseDataset:
        """The split with this task's target and ``extra_targets`` (other members'), read together."""
        targets = [self.target, *extra_targets]
        return DenseDataset(self.samples(split, targets), targets, train=split == "train", augment_cfg=self.augment,
                            seed=int(self.cfg.get("seed", 0)), strict_images=strict_images)

    def extra_targets(self, split: str) -> Sequence[DenseTarget]:
        return (self.target,)

    def shared_input_key(self) -> tuple:
        return dense_input_key(self.data.format, self.data_root, self.data.train_split, self.augment,
                               int(self.cfg.get("seed", 0)))

    def loss(self, outputs: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        return self.criterion(outputs[self.head], batch[self.target.key])

    # ------------------------------------------------------------------ inference
    def activate(self, out: torch.Tensor) -> torch.Tensor:
        """Raw head output (upsampled, float) -> the predicted quantity, same layout."""
        raise NotImplementedError

    def unflip(self, out: torch.Tensor) -> torch.Tensor:
        """The activated output of the mirrored image, mirrored back."""
        return out.flip(3)

    def to_prediction(self, out: torch.Tensor) -> np.ndarray:
        """(1, C, H, W) activated output -> the prediction array (the target's layout)."""
        a = out[0].float().cpu().numpy()
        return a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]

    @torch.no_grad()
    def predict_map(self, model: nn.Module, image: torch.Tensor) -> np.ndarray:
        """The prediction for a normalised (1, 3, H, W) image at its full size (flip-averaged if set)."""
        size, ac = image.shape[-2:], self.infer_cfg.align_corners

        def run(x: torch.Tensor) -> torch.Tensor:
            raw = model(x)[self.head].float()
            return self.activate(F.interpolate(raw, size=size, mode="bilinear", align_corners=ac))

        out = run(image)
        if self.infer_cfg.flip:
            out = (out + self.unflip(run(image.flip(3)))) * 0.5
        return self.to_prediction(out)

    # ------------------------------------------------------------------ evaluation
    def new_metric(self) -> Any:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, out_dir: Optional[Path], device: torch.device,
                 progress: Optional[Callable[[int, int], None]] = None,
                 autocast: Optional[Callable[[], Any]] = None) -> dict[str, float]:
        """The metric over the validation split at full label resolution; ``out_dir`` gets
        ``metrics.json`` and a few pictures (image | ground truth | prediction)."""
        ds = self.build_dataset("val")
        loader = DataLoader(ds, batch_size=1, num_workers=self.data.loader_workers, worker_init_fn=loader_worker_init)
        metric, shown = self.new_metric(), []
        was_training = model.training
        model.eval()
        for i, batch in enumerate(loader):
            with (autocast() if autocast else contextlib.nullcontext()):
                pred = self.predict_map(model, batch["image"].to(device))
            gt = target_array(batch[self.target.key][0], self.target.kind)
            metric.update(pred, gt)
            if len(shown) < self.eval_cfg.pictures:
                shown.append((i, pred, gt))
            if progress:
                progress(i + 1, len(loader))
        model.train(was_training)
        stats = metric.summary()
        if out_dir is not None:
            self._write_evaluation(Path(out_dir), stats, ds, shown)
        return stats

    def _write_evaluation(self, out_dir: Path, stats: Mapping[str, float], ds: DenseDataset,
                          shown: list[tuple[int, np.ndarray, np.ndarray]]) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "metrics.json").write_text(json.dumps({k: float(v) for k, v in stats.items()}, indent=2))
        if shown:
            (out_dir / "vis").mkdir(exist_ok=True)
        for i, pred, gt in shown:
            image = read_rgb(ds.samples[i].image)
            truth, predicted = self.visualize_pair(image, gt, pred)
            panel = side_by_side([("image", image), ("ground truth", truth), ("prediction", predicted)])
            cv2.imwrite(str(out_dir / "vis" / f"{Path(ds.samples[i].stem).name}.jpg"), panel[:, :, ::-1])

    def format_metrics(self, stats: Mapping[str, float]) -> str:
        title = f"{self.kind.capitalize()}: target '{self.target.key}' of the {self.layout.name} layout, val split"
        lines = [title, f"{'metric':16s} {'value':>9s}", "-" * 36]
        for name in self.metric_names:
            v = stats.get(name)
            shown = "      nan" if v is None or v != v else f"{v:9.4f}"
            lines.append(f"{name:16s} {shown}  ({'higher' if self.higher_is_better(name) else 'lower'} better)")
        return "\n".join(lines + self.metric_notes())

    def metric_notes(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ pictures and files
    def visualize(self, image: np.ndarray, array: np.ndarray) -> np.ndarray:
        """An RGB picture of a target or prediction array (the image's size)."""
        raise NotImplementedError

    def visualize_pair(self, image: np.ndarray, gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pictures of a ground truth and its prediction (in the same colour scale where it matters)."""
        return self.visualize(image, gt), self.visualize(image, pred)

    def write_prediction(self, path: Path, pred: np.ndarray) -> None:
        raise NotImplementedError

    def read_prediction(self, path: Path) -> np.ndarray:
        raise NotImplementedError

    def browse(self, split: str, out_dir: Path, limit: int = 20) -> int:
        """Per sample: a picture (image | target as the network is fed it) and an .npz with the
        ``image`` (uint8 RGB) and the target array under its key (full resolution for val)."""
        ds = self.build_dataset(split, strict_images=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        n = min(limit, len(ds))
        for i in range(n):
            image, arrays = ds.load(i)
            stem = ds.samples[i].stem.replace("/", "_")
            np.savez_compressed(out_dir / f"{stem}.npz", image=image, **arrays)
            panel = side_by_side([("image", image), (self.target.key, self.visualize(image, arrays[self.target.key]))])
            cv2.imwrite(str(out_dir / f"{stem}.jpg"), panel[:, :, ::-1])
        return n

    def predict(self, model: nn.Module | Callable[[], nn.Module], source: str, out_dir: Path,
                boxes: Optional[str] = None, device: torch.device = torch.device("cpu"),
                det_thr: Optional[float] = None, kpt_thr: Optional[float] = None,
                max_megapixels: Optional[float] = None, detector: Optional[str] = None) -> dict[str, Any]:
        """Prediction files (``<pred_folder>/<stem><pred_suffix>``) and pictures (``vis/<stem>.jpg``),
        or one picture video for a video."""
        from .predict_loop import run_dense_prediction

        pose_only = [n for n, v in (("--boxes", boxes), ("--det-thr", det_thr), ("--kpt-thr", kpt_thr),
                                    ("--detector", detector)) if v is not None]
        if pose_only:
            raise ConfigError(f"{', '.join(pose_only)} appl{'ies' if len(pose_only) == 1 else 'y'} to pose tasks only")
        return run_dense_prediction(self, model, Path(source), out_dir, device, max_megapixels)

    draws_panel = True   # a multi-task predict shows dense outputs as panels beside the picture

    def member_predictor(self, name: str, out_dir: Path, is_video: bool) -> Any:
        """This member's share of a multi-task ``predict``: a panel beside the combined picture."""
        from .member_predictor import DensePanelPredictor

        return DensePanelPredictor(name, self, out_dir, is_video)

    def evaluate_file(self, predictions: str | Path, out_dir: Optional[Path] = None) -> dict[str, float]:
        """Score a folder of prediction files named ``<stem><pred_suffix>`` (as `platform predict`
        writes them) against the validation split."""
        folder = Path(predictions)
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder; give the folder of {self.pred_suffix} predictions "
                            f"(`platform predict` writes them to <out>/{self.pred_folder})")
        metric = self.new_metric()
        samples = self.samples("val")
        for sample in samples:
            path = folder / f"{Path(sample.stem).name}{self.pred_suffix}"
            if not path.is_file():
                raise DataError(f"{folder}: no prediction {path.name} for the validation image {sample.stem}")
            pred, hw = self.read_prediction(path), read_rgb(sample.image).shape[:2]
            if tuple(pred.shape[:2]) != tuple(hw):
                raise DataError(f"{path}: prediction is {pred.shape[1]}x{pred.shape[0]} but its image "
                                f"{sample.image.name} is {hw[1]}x{hw[0]} (WxH)")
            gt = self.target.read(sample, hw)
            metric.update(pred, gt)
        stats = metric.summary()
        stats["num_images"] = float(len(samples))
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "metrics.json").write_text(json.dumps(stats, indent=2))
        return stats
