"""Semantic segmentation (Cityscapes). Importing registers the task's components."""
from . import metric, task  # noqa: F401
