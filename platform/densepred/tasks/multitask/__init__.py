"""Multi-task learning: several task heads on one shared backbone, with loss balancing."""
from .task import MultiTask  # noqa: F401  (registers the task)
