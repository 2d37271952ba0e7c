"""Backbones register themselves in ``BACKBONES`` on import."""
from .hrnet import HRNet  # noqa: F401
from .resnet import ResNet  # noqa: F401
from .hourglass import StackedHourglass  # noqa: F401
