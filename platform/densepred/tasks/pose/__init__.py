"""Top-down human pose estimation (COCO keypoints, MPII). Importing registers the task's components."""
from . import codec, evaluation, task  # noqa: F401
