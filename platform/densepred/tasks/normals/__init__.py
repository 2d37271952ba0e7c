"""Surface normal estimation. Importing registers the task and its loss."""
from . import task  # noqa: F401
