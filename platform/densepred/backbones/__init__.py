"""Backbones register themselves in ``BACKBONES`` on import."""
from .hrnet import HRNet  # noqa: F401
