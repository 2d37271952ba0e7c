"""Image reading shared by all tasks, with errors that name the file."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .errors import DataError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image as uint8 RGB (H, W, 3); DataError naming the file if missing or undecodable."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"image file {p} is a folder, not an image")
    if not p.is_file():
        raise DataError(f"image file {p} not found")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as e:
        raise DataError(f"cannot read image file {p}: {e.strerror or e}; check its permissions") from None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is not None and p.suffix.lower() in (".jpg", ".jpeg") and JPEG_END not in data[-32:].tobytes():
        # OpenCV decodes a truncated JPEG into a partly grey image; the missing end marker tells.
        raise DataError(f"image file {p} is truncated (no JPEG end marker); re-copy or remove it")
    if image is None:
        if data.size == 0:
            raise DataError(f"image file {p} is empty (0 bytes); re-copy or remove it")
        head, tail = data[:8].tobytes(), data[-32:].tobytes()
        # Depending on the build, OpenCV rejects a cut-off file or decodes part of it (above).
        if head.startswith(JPEG_START) and JPEG_END not in tail:
            raise DataError(f"image file {p} is truncated (no JPEG end marker); re-copy or remove it")
        if head == PNG_SIGNATURE and b"IEND" not in tail:
            raise DataError(f"image file {p} is truncated (no PNG end chunk); re-copy or remove it")
        raise DataError(f"image file {p} is corrupt or not an image (OpenCV cannot decode it)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def loader_worker_init(_: int) -> None:
    """DataLoader worker setup: OpenCV's own threads inside loader workers deadlock or oversubscribe."""
    cv2.setNumThreads(0)
