"""densepred: HRNet-family dense prediction (pose, segmentation) trained on Ray Train.

Public API::

    from densepred import build_model, load_checkpoint, save_checkpoint, load_config
"""
from .checkpoint import LoadReport, load_checkpoint, save_checkpoint
from .config import load_config
from .errors import CheckpointError, ConfigError, DataError, PlatformError
from .model import DensePredictor, build_model

__all__ = ["build_model", "load_checkpoint", "save_checkpoint", "load_config", "LoadReport",
           "DensePredictor", "PlatformError", "ConfigError", "CheckpointError", "DataError"]
__version__ = "0.1.0"
