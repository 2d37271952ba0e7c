"""Multi-task learning: several task heads on one shared backbone, with loss balancing."""
from . import aggregation  # noqa: F401  (registers the aggregating balancers: aggregator, db_mtl)
from .task import MultiTask  # noqa: F401  (registers the task)
