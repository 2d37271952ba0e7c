"""Person mask task (registers ``PersonMaskTask`` and the ``PersonMaskBCE`` loss on import)."""
from .task import PersonMaskBCE, PersonMaskTask  # noqa: F401
