"""Where the platform keeps per-machine caches (annotation indexes, inference plans).

``$DENSEPRED_CACHE`` if set (``off`` disables caching), else ``$XDG_CACHE_HOME/densepred`` or
``~/.cache/densepred`` (the same rule as the pose annotation index cache).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

OFF = ("off", "0", "none", "false", "no")


def cache_dir(kind: str) -> Optional[Path]:
    """The folder for caches of ``kind`` (e.g. ``inference``), or None when caching is off."""
    env = os.environ.get("DENSEPRED_CACHE", "").strip()
    if env.lower() in OFF:
        return None
    if env:
        return Path(env).expanduser() / kind
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "densepred" / kind
