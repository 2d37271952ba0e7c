"""Task heads register themselves in ``HEADS`` on import."""
from .heatmap import HeatmapHead  # noqa: F401
from .hrnetv2_seg import HRNetV2SegHead  # noqa: F401
