"""Load and save checkpoints in every format users bring, without unpickling arbitrary objects.

Recognised formats (detected from the keys, no flag needed):

* ``densepred``  — the platform's own files (``save_checkpoint``), platform key names.
* ``official``   — official HRNet pose / segmentation checkpoints: a bare state dict, a dict with
  ``state_dict``, keys optionally prefixed ``module.`` (DataParallel) or ``model.`` (the
  segmentation code's ``FullModel``; its ``loss.*`` buffers are skipped).
* ``imagenet``   — ImageNet-pretrained HRNet classification checkpoints: the backbone loads,
  classification-only modules (``incre_modules``, ``downsamp_modules``, ``final_layer``,
  ``classifier``) are reported and skipped.
* ``mmpose`` / ``mmseg`` — OpenMMLab checkpoints: ``backbone.*`` always; the heatmap head from
  ``head.final_layer`` / ``keypoint_head.final_layer`` where the model has one that fits; other
  head weights are reported and skipped.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import nn

from .atomicfile import write_atomic
from .errors import CheckpointError
from .model import official_key

FORMAT_NAME = "densepred"
FORMAT_VERSION = 2  # 2: adds the "checksum" entry (version 1 files still load, unverified)

_BACKBONE_ROOTS = ("conv1.", "bn1.", "conv2.", "bn2.", "layer1.", "transition", "stage")
_IMAGENET_ONLY = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.", "fc.")
# Metadata objects OpenMMLab and numpy put next to the weights; replaced by inert stand-ins.
_STUB_MODULE_PREFIXES = ("mmengine.", "mmcv.", "mmpose.", "mmseg.", "mmdet.", "numpy.", "_codecs.")
# mmengine's pickled metadata also references getattr; the stub replaces it, so nothing is looked up.
_STUB_NAMES = {"builtins.getattr"}


class _Stub:
    """Inert stand-in for a metadata object: accepts any construction and state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Stub":
        return object.__new__(cls)

    def __setstate__(self, state: Any) -> None:
        pass


def _stub_for(name: str) -> tuple[Any, str]:
    return (type(name.rsplit(".", 1)[-1], (_Stub,), {}), name)


# torch.save writes a zip archive; files from torch < 1.6 start with this pickle header.
_TORCH_MAGICS = (b"PK\x03\x04", b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19")


def _looks_like_torch_file(p: Path) -> bool:
    with open(p, "rb") as f:
        head = f.read(16)
    return head.startswith(_TORCH_MAGICS)


def _describe_foreign(head: bytes) -> Optional[str]:
    """What a file that is not a PyTorch checkpoint looks like, from its first bytes."""
    kinds = [(b"\xff\xd8", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"\x93NUMPY", "a numpy .npy array"),
             (b"\x1f\x8b", "a gzip archive"), (b"PK", "a zip archive"), (b"\x89HDF", "an HDF5 file")]
    for magic, kind in kinds:
        if head.startswith(magic):
            return kind
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype", b"<html", b"<?xml", b"<")):
        return "an HTML/XML page (a failed download?)"
    if text.startswith((b"{", b"[")):
        return "a JSON file"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return "a text file"
    return None


def _check_checkpoint_file(p: Path) -> None:
    """Errors about the file itself (missing, a folder, unreadable, empty, foreign) before torch sees it."""
    if p.is_dir():
        inside = next((q for q in (p / "model.pth", p / "best.pth") if q.is_file()), None)
        raise CheckpointError(f"checkpoint {p} is a folder, not a file; "
                              + (f"did you mean {inside}?" if inside else "give the .pth file inside it"))
    if not p.exists():
        raise CheckpointError(f"checkpoint file {p} not found")
    try:
        with open(p, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p}: {e.strerror or e}; check its permissions") from None
    if not head:
        raise CheckpointError(f"checkpoint file {p} is empty (0 bytes): re-download or re-save it")
    if not head.startswith(_TORCH_MAGICS) and not zipfile.is_zipfile(p):
        kind = _describe_foreign(head)
        if kind:
            raise CheckpointError(f"{p} is not a PyTorch checkpoint (it is {kind}); give a .pth/.pt file "
                                  "saved with torch.save")


def read_checkpoint(path: str | os.PathLike) -> Any:
    """``torch.load`` with ``weights_only=True``, the checksum of platform files verified, and
    user-facing errors.

    Known metadata classes of OpenMMLab/numpy are replaced by inert stubs so that mmpose/mmseg
    files load; any other Python object in the file is refused.
    """
    p = Path(path)
    _check_checkpoint_file(p)
    stubs: list[Any] = []
    try:
        if zipfile.is_zipfile(p):
            unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(p))
            refused = [g for g in unsafe if not g.startswith(_STUB_MODULE_PREFIXES) and g not in _STUB_NAMES]
            if refused:
                raise CheckpointError(
                    f"checkpoint {p} contains Python objects that are not loaded for safety "
                    f"({', '.join(refused[:3])}); save only tensors, e.g. torch.save(model.state_dict(), ...)")
            stubs = [_stub_for(g) for g in unsafe]
        with torch.serialization.safe_globals(stubs):
            raw = torch.load(str(p), map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # torch/pickle raise many types for damaged or foreign files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "weights_only" in msg or "Weights only" in msg:  # never repeat torch's unsafe advice
            msg = "unpickling failed"
        if ("Weights only load failed" in str(e) or "Unsupported global" in str(e)) and _looks_like_torch_file(p):
            raise CheckpointError(f"checkpoint {p} contains Python objects that are not loaded for "
                                  f"safety; save only tensors (model.state_dict())") from None
        raise CheckpointError(f"checkpoint {p} is truncated or not a PyTorch checkpoint ({msg}); "
                              "re-download or re-save it") from None
    verify_checksum(raw, p)
    return raw


def content_checksum(payload: Mapping[str, Any]) -> str:
    """sha256 over every tensor (name, dtype, shape, bytes) and plain value of a platform checkpoint,
    in order, leaving out the ``checksum`` entry itself. Computed on the loaded objects, so it is
    independent of how torch lays out the file."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(x, Mapping):
            h.update(b"{")
            for k, v in x.items():
                h.update(repr(k).encode())
                feed(v)
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    feed({k: v for k, v in payload.items() if k != "checksum"})
    return h.hexdigest()


def verify_checksum(raw: Any, path: str | os.PathLike) -> None:
    """Raise ``CheckpointError`` if a platform checkpoint's content differs from its stored checksum."""
    if not (isinstance(raw, Mapping) and raw.get("format") == FORMAT_NAME and "checksum" in raw):
        return
    actual = content_checksum(raw)
    if actual != raw["checksum"]:
        raise CheckpointError(
            f"checkpoint {path} fails its checksum (stored {str(raw['checksum'])[:12]}..., content "
            f"{actual[:12]}...): the file was damaged or edited after saving; use an earlier checkpoint")


def _is_tensor_dict(d: Any) -> bool:
    return isinstance(d, Mapping) and bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _strip(sd: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def extract_state_dict(raw: Any, path: str = "checkpoint") -> tuple[str, dict[str, torch.Tensor]]:
    """Return ``(format, state_dict)`` with wrapper prefixes removed (see module docstring)."""
    if isinstance(raw, Mapping) and raw.get("format") == FORMAT_NAME:
        return FORMAT_NAME, dict(raw["state_dict"])
    sd: Any = raw
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model", "model_state"):
            if key in raw and _is_tensor_dict(raw[key]):
                sd = raw[key]
                break
    if not _is_tensor_dict(sd):
        found = ", ".join(list(raw)[:6]) if isinstance(raw, Mapping) else type(raw).__name__
        raise CheckpointError(f"{path}: no state dict of tensors found (top-level keys: {found})")
    sd = _strip(sd, "module.")
    if any(k.startswith("backbone.") for k in sd):
        heads = {k.split(".", 1)[0] for k in sd if not k.startswith("backbone.")}
        fmt = "mmseg" if heads & {"decode_head", "auxiliary_head"} else "mmpose"
        return fmt, sd
    if any(k.startswith("model.") for k in sd):  # official segmentation FullModel
        sd = {k[len("model."):] if k.startswith("model.") else k: v for k, v in sd.items()}
        sd = _strip(sd, "module.")  # Stacked Hourglass port: Trainer(DataParallel(PoseNet))
    if any(k.startswith(("incre_modules.", "classifier.")) for k in sd):
        return "imagenet", sd
    if "fc.weight" in sd and not any(k.startswith("final_layer.") for k in sd):
        return "imagenet", sd  # torchvision-layout ImageNet ResNet: the backbone, fc skipped
    return "official", sd


@dataclass
class LoadReport:
    """What ``load_checkpoint`` did: counts plus every key it could not use."""

    path: str
    format: str
    loaded: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    #: heads of the model of which the checkpoint holds nothing: they keep their fresh initialisation
    fresh_heads: list[str] = field(default_factory=list)
    #: what a task's transform did (e.g. pose head rows transferred by joint name)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"loaded {self.loaded} tensors from {self.path} ({self.format} format)"]
        if self.fresh_heads:
            parts.append(f"head(s) {', '.join(self.fresh_heads)} not in the checkpoint: trained from their "
                         "fresh initialisation")
        if self.skipped:
            reasons = sorted(set(self.skipped.values()))
            parts.append(f"skipped {len(self.skipped)} ({'; '.join(reasons)})")
        if self.missing:
            parts.append(f"{len(self.missing)} missing")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected")
        if self.mismatched:
            parts.append(f"{len(self.mismatched)} shape mismatches")
        return "; ".join([", ".join(parts)] + self.notes)


def _short(items: list[str], n: int = 4) -> str:
    more = f", ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def map_to_model(fmt: str, sd: Mapping[str, torch.Tensor], model: nn.Module,
                 report: LoadReport) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Rename checkpoint keys to the model's keys; return them and the model keys that must load."""
    own = model.state_dict()
    if fmt == FORMAT_NAME:
        mapped = {}
        for k, v in sd.items():
            (mapped.__setitem__(k, v) if k in own else report.unexpected.append(k))
        return mapped, set(own)

    # official name -> model key; names shared by several heads are ambiguous
    index: dict[str, Optional[str]] = {}
    for k in own:
        name = official_key(k)
        index[name] = None if name in index else k
    backbone_keys = {k for k in own if k.startswith("backbone.")}
    mapped: dict[str, torch.Tensor] = {}
    required = set(own)

    def put(name: str, value: torch.Tensor, original: str) -> None:
        target = index.get(name)
        if target is None:
            report.unexpected.append(original)
        else:
            mapped[target] = value

    for k, v in sd.items():
        if fmt in ("official", "imagenet"):
            if k.startswith("loss."):
                report.skipped[k] = "training loss buffers"
            elif fmt == "imagenet" and k.startswith(_IMAGENET_ONLY):
                report.skipped[k] = "classification-only"
            else:
                put(k, v, k)
        else:  # mmpose / mmseg
            if k.startswith("backbone."):
                put(k[len("backbone."):], v, k)
                continue
            head_name = None
            for prefix in ("head.", "keypoint_head."):
                if k.startswith(prefix + "final_layer."):
                    head_name = k[len(prefix):]
            target = index.get(head_name) if head_name else None
            if target is not None:  # a head of another size is skipped after the task's transforms
                mapped[target] = v
            else:
                report.skipped[k] = f"{fmt} head without a matching head in this model"
    if fmt in ("imagenet", "mmseg", "mmpose"):
        # Only the backbone is guaranteed; heads are fine-tuned from scratch when absent.
        required = backbone_keys | set(mapped)
    return mapped, required


#: ``transform(mapped, own, report, meta)``: adapt the checkpoint's tensors (already renamed to the
#: model's keys) to the model, e.g. rows of a pose head by joint name; ``meta`` is the checkpoint's
#: own metadata (platform checkpoints: ``meta`` with ``keypoints``; other formats: empty)
Transform = Callable[[dict, Mapping[str, torch.Tensor], "LoadReport", Mapping[str, Any]], dict]


def load_checkpoint(model: nn.Module, path: str | os.PathLike, strict: bool = True,
                    transforms: Sequence[Transform] = ()) -> LoadReport:
    """Load a checkpoint of any supported format into ``model`` (see the module docstring).

    With ``strict`` (default) every required model key must be present with the right shape and no
    checkpoint weight may be left unused; otherwise a ``CheckpointError`` lists missing, unexpected
    and shape-mismatched keys. ``transforms`` (a task's, ``Task.weight_transforms``) adapt tensors
    first. Returns a ``LoadReport``.
    """
    raw = read_checkpoint(path)
    fmt, sd = extract_state_dict(raw, str(path))
    report = LoadReport(str(path), fmt)
    mapped, required = map_to_model(fmt, sd, model, report)
    own = model.state_dict()
    meta = raw.get("meta") if isinstance(raw, Mapping) and isinstance(raw.get("meta"), Mapping) else {}
    for transform in transforms:
        mapped = transform(mapped, own, report, meta)
    for k, v in list(mapped.items()):
        if own[k].shape != v.shape:
            if fmt in ("mmpose", "mmseg") and not k.startswith("backbone."):
                report.skipped[k] = f"{fmt} head without a matching head in this model"
            else:
                report.mismatched.append((k, tuple(v.shape), tuple(own[k].shape)))
            del mapped[k]
    report.missing = [k for k in own if k in required and k not in mapped
                      and not k.endswith("num_batches_tracked")
                      and k not in {m[0] for m in report.mismatched}]
    if strict and (report.missing or report.unexpected or report.mismatched):
        details = []
        if report.missing:
            details.append(f"{len(report.missing)} missing: {_short(report.missing)}")
        if report.unexpected:
            details.append(f"{len(report.unexpected)} unexpected: {_short(report.unexpected)}")
        if report.mismatched:
            shown = [f"{k} checkpoint {list(a)} vs model {list(b)}" for k, a, b in report.mismatched]
            details.append(f"{len(report.mismatched)} shape mismatches: {_short(shown, 3)}")
        raise CheckpointError(
            f"checkpoint {path} ({fmt} format) does not fit this model: {'; '.join(details)}. "
            "Check that the config matches the checkpoint (e.g. width, number of keypoints/classes)")
    model.load_state_dict(mapped, strict=False)
    report.loaded = len(mapped)
    report.fresh_heads = fresh_heads(own, mapped)
    return report


def fresh_heads(own: Mapping[str, torch.Tensor], loaded: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the model's heads (``heads.<name>.*``) of which no tensor was loaded."""
    heads = {k.split(".")[1] for k in own if k.startswith("heads.")}
    hit = {k.split(".")[1] for k in loaded if k.startswith("heads.")}
    return sorted(heads - hit)


def head_state_dict(state: Mapping[str, torch.Tensor], head: str) -> dict[str, torch.Tensor]:
    """The single-task part of a multi-head state dict: the backbone (and neck) plus one head.
    Raises CheckpointError naming the heads there are when ``head`` is not one of them."""
    heads = sorted({k.split(".")[1] for k in state if k.startswith("heads.")})
    if head not in heads:
        raise CheckpointError(f"--head {head}: the model has no head of that name; its heads: "
                              f"{', '.join(heads) or 'none'}")
    return {k: v for k, v in state.items()
            if not k.startswith("heads.") or k.split(".")[1] == head}


def save_checkpoint(path: str | os.PathLike, model: nn.Module | Mapping[str, torch.Tensor],
                    meta: Optional[Mapping[str, Any]] = None, **extra: Any) -> Path:
    """Write a platform checkpoint atomically (temp file + rename) with a content checksum that
    ``read_checkpoint`` verifies; values must be tensors or plain Python data so the file loads with
    ``weights_only=True``."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict() if isinstance(model, nn.Module) else dict(model)
    payload = {"format": FORMAT_NAME, "version": FORMAT_VERSION,
               "state_dict": {k: v.detach().cpu() for k, v in sd.items()},
               "meta": dict(meta or {}), **extra}
    payload["checksum"] = content_checksum(payload)
    write_atomic(p, lambda tmp: torch.save(payload, tmp))
    return p
