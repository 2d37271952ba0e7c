"""The ``platform`` command line. Each subcommand is a small function; errors a user can fix are
printed as one line (``error: ...``) with exit status 2."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

from .errors import PlatformError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_model_configs() -> Path:
    return PROJECT_ROOT / "configs" / "models"


# --------------------------------------------------------------------------- models

def cmd_models(args: argparse.Namespace) -> int:
    import torch

    from . import backbones, heads  # noqa: F401  (register components)
    from .model import build_model, num_parameters
    from .registry import BACKBONES, HEADS, registered_names

    print(f"backbones: {', '.join(registered_names(BACKBONES))}")
    print(f"heads:     {', '.join(registered_names(HEADS))}")
    folder = Path(args.configs)
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise PlatformError(f"no model configs (*.yaml) in {folder}")
    h, w = args.input_size
    print(f"\nmodel configs in {folder}:")
    print(f"  {'config':34s} {'parameters':>12s}" + (f"  outputs for 1x3x{h}x{w}" if args.forward else ""))
    for f in files:
        model = build_model(f).eval()
        line = f"  {f.stem:34s} {num_parameters(model):>12,d}"
        if args.forward:
            with torch.no_grad():
                out = model(torch.zeros(1, 3, h, w))
            line += "  " + ", ".join(f"{k}: {list(v.shape)}" for k, v in out.items())
        print(line, flush=True)
    return 0


# --------------------------------------------------------------------------- convert

def cmd_convert(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, save_checkpoint
    from .config import load_config
    from .model import build_model

    cfg = load_config(args.config, args.set)
    model = build_model(cfg)
    report = load_checkpoint(model, args.checkpoint, strict=not args.no_strict)
    print(report.summary())
    for k, why in list(report.skipped.items())[:20]:
        print(f"  skipped {k}: {why}")
    meta = {"source": str(args.checkpoint), "source_format": report.format,
            "config": str(args.config), "model": cfg["model"]}
    out = save_checkpoint(args.out, model, meta=meta)
    print(f"wrote {out}")
    return 0


# --------------------------------------------------------------------------- parser

def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (YAML syntax), e.g. --set train.epochs=5 "
                        "--set model.backbone.width=18; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="platform",
        description="HRNet-family dense prediction: pose (COCO) and segmentation (Cityscapes) "
                    "on Ray Train.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("models", help="list registered components and model configs with parameter counts",
                       description="List registered backbones and heads and every model config "
                                   "with its parameter count (optionally run a forward pass).")
    p.add_argument("--configs", default=str(default_model_configs()), help="folder of model YAML files")
    p.add_argument("--forward", action="store_true", help="also run a forward pass and print output shapes")
    p.add_argument("--input-size", nargs=2, type=int, default=[256, 192], metavar=("H", "W"),
                   help="input size for --forward (default 256 192)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("convert", help="write an official / mmpose / mmseg checkpoint as a platform checkpoint",
                       description="Load a checkpoint in any supported format (official HRNet pose or "
                                   "segmentation, ImageNet HRNet, mmpose, mmseg) into the model of CONFIG "
                                   "and save it in the platform's own format.")
    p.add_argument("config", help="model or task YAML describing the architecture")
    p.add_argument("checkpoint", help="checkpoint to convert")
    p.add_argument("out", help="output .pth path")
    p.add_argument("--no-strict", action="store_true", help="load what fits instead of failing on mismatches")
    _add_set(p)
    p.set_defaults(func=cmd_convert)

    for register in EXTRA_COMMANDS:
        register(sub)
    return parser


# Later modules (training, evaluation, data tools) add their subcommands here.
EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def main(argv: Optional[list[str]] = None) -> int:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PlatformError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
