"""Output locations given on the command line, checked before any work starts."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import PlatformError


def ensure_out_dir(path: str | os.PathLike, flag: str = "--out", create: bool = True) -> Path:
    """Create the output folder ``path`` (or accept an existing one); one-line errors when it is a
    file or cannot be written. With ``create=False`` only check that it could be created (the
    command creates it once its inputs are known to be good: bad input leaves nothing behind)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise PlatformError(f"{flag} {p} is a file; give a folder")
    if not create and not p.exists():
        parent = next(q for q in p.absolute().parents if q.exists())
        if not parent.is_dir():
            raise PlatformError(f"cannot create {flag} {p}: {parent} is a file")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise PlatformError(f"cannot create {flag} {p}: {parent} is not writable")
        return p
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PlatformError(f"cannot create {flag} {p}: {e.strerror or e}") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise PlatformError(f"cannot write to {flag} {p}: permission denied")
    return p


def ensure_out_file(path: str | os.PathLike, flag: str) -> Path:
    """``path`` can be written as a file: it is not a folder and its folder can be created."""
    p = Path(path)
    if p.is_dir():
        raise PlatformError(f"{flag} {p} is a folder; give a file name, e.g. {p / 'model.pth'}")
    ensure_out_dir(p.parent if str(p.parent) else ".", f"the folder of {flag}")
    return p
