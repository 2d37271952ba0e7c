"""Monocular depth regression. Importing registers the task and its loss."""
from . import task  # noqa: F401
