"""A dense-prediction model: one backbone, an optional neck, and named task heads."""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import torch
from torch import nn

from .errors import ConfigError
from .registry import BACKBONES, HEADS, NECKS, build


class DensePredictor(nn.Module):
    """``forward(x)`` returns ``{head_name: raw_output}`` (heatmaps or logits at 1/4 resolution).

    State-dict keys are ``backbone.<official name>`` and ``heads.<head name>.<official name>``;
    ``official_state_dict`` gives the official names for single-head models.
    """

    def __init__(self, backbone: nn.Module, heads: Mapping[str, nn.Module],
                 neck: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.heads = nn.ModuleDict(dict(heads))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(x, aggregate=False) if self._heads_fold_concat() else self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        return {name: head(feats) for name, head in self.heads.items()}

    def _heads_fold_concat(self) -> bool:
        """Whether the backbone's HRNetV2 concatenation is left to the heads: in training, when
        every head computes concat-then-1x1-conv itself with the conv folded in first
        (``folds_branches``, same upsampling), which gives the same outputs with less work
        (``conv1x1_of_branches``). In eval mode the model keeps the plain conv -> BN chain that
        BatchNorm folding (``bnfold``) and export trace."""
        backbone = self.backbone
        if not self.training or self.neck is not None or getattr(backbone, "aggregation", None) != "v2":
            return False
        return all(getattr(h, "folds_branches", False) and h.align_corners == backbone.align_corners
                   for h in self.heads.values())

    def official_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict under the official HRNet names (backbone keys bare, head keys bare)."""
        out: dict[str, torch.Tensor] = {}
        for key, value in self.state_dict().items():
            name = official_key(key)
            if name in out:
                raise ValueError(f"two heads share the official key {name!r}; "
                                 "official names are only defined for single-head models")
            out[name] = value
        return out


#: ``model.init`` values: how ``build_model`` initialises the weights of a new model.
INITS = {
    "official": "conv weights N(0, 0.001), biases 0 (the official HRNet code; checkpoint parity)",
    "kaiming": "conv weights Kaiming-normal (fan_out, ReLU), biases 0: faster training from scratch",
}


def init_weights(module: nn.Module, scheme: str = "official") -> None:
    """Initialise convolutions by ``scheme`` (see ``INITS``); BatchNorm weight 1 / bias 0.

    ``official`` is the HRNet code's N(0, 0.001) (PyTorch's default init makes the heatmap head
    start far from the ~0 targets and slows training). ``kaiming`` suits short runs from scratch
    with Adam: with weights of 0.001 behind BatchNorm, each early Adam step changes a weight by
    more than its size, and the first few hundred steps are spent settling the scale (segmentation
    demo, 500 iterations: mIoU 0.49 -> 0.56, README "Results").
    """
    if scheme not in INITS:
        raise ConfigError(f"model.init must be one of {', '.join(INITS)}, got {scheme!r}")
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=0.001)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def official_key(platform_key: str) -> str:
    """``backbone.conv1.weight`` -> ``conv1.weight``; ``heads.pose.final_layer.w`` -> ``final_layer.w``."""
    if platform_key.startswith("backbone."):
        return platform_key[len("backbone."):]
    if platform_key.startswith("heads."):
        return platform_key.split(".", 2)[2]
    return platform_key


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _load(config_or_path: Any, overrides: Any = ()) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(config, model section)``; the config is kept to name the file behind a bad key."""
    from .config import LoadedConfig, load_config

    if isinstance(config_or_path, (str, os.PathLike)):
        cfg: Mapping[str, Any] = load_config(config_or_path, overrides)
    else:
        cfg = config_or_path
        if overrides:
            raise ConfigError("overrides can only be applied when build_model is given a config path")
    if isinstance(cfg, LoadedConfig) or "model" in cfg:
        if "model" not in cfg:
            raise ConfigError(f"{getattr(cfg, 'source', 'config')}: no 'model' section")
        return cfg, cfg["model"]
    return cfg, cfg


def _where(cfg: Mapping[str, Any], key: str) -> str:
    return f"{cfg.where(key)}: " if hasattr(cfg, "where") else ""


def _build_backbone(cfg: Mapping[str, Any], m: Mapping[str, Any]) -> nn.Module:
    """Build ``model.backbone``; a backbone error about one of its keys (``err.key``) is re-worded
    with the key's full path and the file (or ``--set``) that set it."""
    try:
        return build(BACKBONES, m["backbone"], "model.backbone")
    except ConfigError as e:
        key, template = getattr(e, "key", None), getattr(e, "template", None)
        if key is None or template is None:
            raise
        path = f"model.backbone.{key}"
        raise ConfigError(_where(cfg, path) + template.replace("{key}", path)) from None


def _check_in_channels(cfg: Mapping[str, Any], name: str, head: Mapping[str, Any], channels: list[int]) -> None:
    """Heads take their input channels from the backbone; an explicit value must agree with it."""
    given = head.get("in_channels") if isinstance(head, Mapping) else None
    if given is None:
        return
    as_list = list(given) if isinstance(given, (list, tuple)) else [given]
    if as_list != list(channels):
        key = f"model.heads.{name}.in_channels"
        raise ConfigError(f"{_where(cfg, key)}{key} is {given!r} but the backbone outputs {list(channels)} "
                          "channels; remove it (heads take their input channels from the backbone)")


def _with_defaults(head: Any, defaults: Optional[Mapping[str, Any]]) -> Any:
    """``head`` with each ``defaults`` key that it leaves out or sets to null filled in."""
    if not defaults or not isinstance(head, Mapping):
        return head
    return {**head, **{k: v for k, v in defaults.items() if head.get(k) is None}}


def build_model(config_or_path: Any, overrides: Any = (),
                head_defaults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> DensePredictor:
    """Build a model from a YAML path, a loaded config (with a ``model`` key) or a model mapping.

    Heads get ``in_channels`` from the backbone's (or neck's) ``out_channels``: one entry per
    feature they receive, so any width, stage count or aggregation fits any head.
    ``head_defaults`` (from the task: ``Task.head_defaults``) fill head arguments that the config
    leaves out or sets to ``null`` (the pose head's ``num_keypoints``: the data set's joints).

    >>> model = build_model("configs/models/pose_hrnet_w32.yaml")
    >>> model(torch.zeros(1, 3, 256, 192))["pose"].shape
    torch.Size([1, 17, 64, 48])
    """
    # Importing the packages registers their components.
    from . import backbones, heads  # noqa: F401

    cfg, m = _load(config_or_path, overrides)
    backbone = _build_backbone(cfg, m)
    channels = backbone.out_channels
    neck = None
    if m.get("neck"):
        neck = build(NECKS, m["neck"], "model.neck", in_channels=channels)
        channels = neck.out_channels
    head_cfgs = m.get("heads") or {}
    if not head_cfgs:
        raise ConfigError("model.heads is empty: add at least one head, e.g. {pose: {type: HeatmapHead}}")
    head_cfgs = {name: _with_defaults(h, (head_defaults or {}).get(name)) for name, h in head_cfgs.items()}
    for name, h in head_cfgs.items():
        _check_in_channels(cfg, name, h, channels)
    built = {name: build(HEADS, h, f"model.heads.{name}", in_channels=channels)
             for name, h in head_cfgs.items()}
    model = DensePredictor(backbone, built, neck)
    init_weights(model, m.get("init") or "official")
    return model
