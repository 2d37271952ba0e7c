"""Task heads register themselves in ``HEADS`` on import."""
from .heatmap import HeatmapHead  # noqa: F401
from .hrnetv2_seg import HRNetV2SegHead  # noqa: F401
from .deconv import DeconvHead  # noqa: F401
from .hourglass_head import StackedHeatmapHead  # noqa: F401
from .mask import MaskHead  # noqa: F401
from .dense import DenseHead  # noqa: F401
