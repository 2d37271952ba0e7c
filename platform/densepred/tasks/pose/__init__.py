"""Top-down human pose estimation (COCO keypoints). Importing registers the task's components."""
from . import codec, evaluation, task  # noqa: F401
