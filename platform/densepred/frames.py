"""Input and output plumbing shared by every task's ``predict``: one image, a folder of images or a
video in; checked output folder, per-file skips, progress lines and videos at the input's frame rate out.

Everything that can be checked without a model is checked when the input is opened, so a wrong
path or option fails in a second, before a checkpoint is read.
"""
from __future__ import annotations

import math
import os
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import cv2
import numpy as np

from .errors import DataError, PlatformError
from .imageio import read_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}
DEFAULT_FPS = 25.0
DEFAULT_MAX_MEGAPIXELS = 40.0
SKIPPED_FILE = "skipped.txt"

ImageId = Union[int, str]


def image_key(stem: str) -> ImageId:
    """COCO convention: a numeric file stem is the integer image id (000000000139 -> 139)."""
    return int(stem) if stem.isdigit() else stem


# --------------------------------------------------------------------------- option checks

def check_fraction(option: str, value: Optional[float]) -> Optional[float]:
    """A threshold option must lie in [0, 1] (None passes: the caller's default applies)."""
    if value is not None and not (0.0 <= float(value) <= 1.0):
        raise PlatformError(f"{option} must be between 0 and 1, got {value}")
    return value


def max_pixels_from_megapixels(megapixels: Optional[float]) -> int:
    """``--max-pixels`` (in megapixels, default 40) as a pixel count; must be > 0."""
    mp = DEFAULT_MAX_MEGAPIXELS if megapixels is None else float(megapixels)
    if not mp > 0 or not math.isfinite(mp):
        raise PlatformError(f"--max-pixels must be a positive number of megapixels (e.g. 40), got {megapixels}")
    return max(1, int(mp * 1e6))


def prepare_out_dir(out: Union[str, Path]) -> Path:
    """Create ``--out`` and prove it is writable; one-line errors for a file or a read-only place."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise PlatformError(f"--out {out} is a file; give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # A real write, since permission bits do not tell everything (read-only mounts, quotas, root).
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise PlatformError(f"cannot write to --out {out}: {e.strerror or e}") from None
    return out


# --------------------------------------------------------------------------- image size before decoding

def header_size(path: Path) -> Optional[tuple[int, int]]:
    """(width, height) read from a PNG or JPEG header without decoding; None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
            if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
                w, h = struct.unpack(">II", head[16:24])
                return int(w), int(h)
            if head[:2] == b"\xff\xd8":
                f.seek(2)
                return _jpeg_frame_size(f)
    except OSError:
        return None
    return None


# JPEG start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but do not.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_frame_size(f) -> Optional[tuple[int, int]]:
    """Walk the JPEG segments (skipping EXIF and other APPn payloads) up to the frame header."""
    while True:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            continue
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        m = marker[0]
        if m in (0x01, 0xD8) or 0xD0 <= m <= 0xD7:  # markers without a length
            continue
        if m in (0xD9, 0xDA):  # end of image / start of scan: no frame header found before
            return None
        length = f.read(2)
        if len(length) < 2:
            return None
        size = struct.unpack(">H", length)[0]
        if m in _SOF_MARKERS:
            data = f.read(5)
            if len(data) < 5:
                return None
            h, w = struct.unpack(">HH", data[1:5])
            return int(w), int(h)
        f.seek(size - 2, os.SEEK_CUR)


def check_pixels(what: str, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image above the pixel limit: decoding it could exhaust memory and the model's
    input would be far larger than anything it was trained for."""
    if width * height > max_pixels:
        raise DataError(f"{what} is {width}x{height} ({width * height / 1e6:.3g} megapixels), above the "
                        f"limit of {max_pixels / 1e6:g} megapixels; shrink it or raise --max-pixels")


def read_image_checked(path: Path, max_pixels: int) -> np.ndarray:
    """Decode an image as RGB after checking its size from the header (after decoding when the
    format's header is not parsed here)."""
    size = header_size(path)
    if size is not None:
        check_pixels(f"image file {path}", size[0], size[1], max_pixels)
    image = read_rgb(path)
    check_pixels(f"image file {path}", image.shape[1], image.shape[0], max_pixels)
    return image


# --------------------------------------------------------------------------- the input

@dataclass
class Frame:
    """One image to predict on."""

    image_id: ImageId      # numeric file stem as int, other stems as str, frame index for a video
    name: str              # file name (for a video: <stem>_<index>.jpg)
    image: np.ndarray      # uint8 RGB (H, W, 3)
    index: int             # position in the input, from 0


@dataclass
class InputSource:
    """An image, a folder of images (searched recursively, sorted) or a video, opened and checked.

    Iterating yields :class:`Frame`. Bad files in a folder are skipped: each is printed as one line
    and kept in ``skipped`` (name, reason); a bad single image or video raises ``DataError``.
    """

    path: Path
    kind: str                                   # image | folder | video
    max_pixels: int
    files: list[Path] = field(default_factory=list)
    fps: Optional[float] = None                 # videos only: the container's rate, or DEFAULT_FPS
    fps_reported: bool = True                   # False when the container did not say
    count: int = 0                              # inputs (files, or frames as the container reports)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _first: Optional[np.ndarray] = None
    _cap: Optional[cv2.VideoCapture] = None

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    def expected_ids(self) -> list[ImageId]:
        """The image ids the inputs will have (file stems, frame indices)."""
        if self.is_video:
            return list(range(max(self.count, 1)))
        return [image_key(f.stem) for f in self.files]

    def __iter__(self) -> Iterator[Frame]:
        if self.is_video:
            yield from self._video_frames()
            return
        for i, f in enumerate(self.files):
            if i == 0 and self._first is not None:
                image = self._first
            else:
                try:
                    image = read_image_checked(f, self.max_pixels)
                except DataError as e:
                    self.skip(f.name, str(e))
                    continue
            yield Frame(image_key(f.stem), f.name, image, i)

    def _video_frames(self) -> Iterator[Frame]:
        cap, index, frame = self._cap, 0, self._first
        try:
            while frame is not None:
                yield Frame(index, f"{self.path.stem}_{index:06d}.jpg", frame, index)
                index += 1
                ok, bgr = cap.read()
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if ok else None
        finally:
            cap.release()
        self.count = index  # the container's frame count is only an estimate

    def skip(self, name: str, reason: str) -> None:
        """Record and print a skipped input; the run goes on."""
        self.skipped.append((name, reason))
        print(f"  skipped {name}: {reason}", flush=True)

    def report_every(self) -> int:
        """Print progress for every image, but about once a second of video."""
        return max(1, int(round(self.fps or 1))) if self.is_video else 1


def open_input(path: Union[str, Path], max_pixels: int, exclude: Optional[Path] = None) -> InputSource:
    """Open ``--input``: check it exists, list a folder, open a video (fps, size, first frame)
    or decode a single image, so that a wrong input fails before any model is loaded.
    ``exclude`` (the output folder) is never read as input."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"--input {path} not found")
    if path.is_dir():
        return _open_folder(path, max_pixels, exclude)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _open_video(path, max_pixels)
    image = read_image_checked(path, max_pixels)
    return InputSource(path, "image", max_pixels, files=[path], count=1, _first=image)


def _open_folder(folder: Path, max_pixels: int, exclude: Optional[Path]) -> InputSource:
    files, others = _list_images(folder, exclude)
    if not files:
        raise DataError(f"--input folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        "give an image, a folder of images or a video")
    if others:
        print(f"note: {others} file(s) in {folder} are not images by their suffix and were ignored")
    source = InputSource(folder, "folder", max_pixels, count=len(files))
    seen: dict[str, Path] = {}
    for f in files:
        # Output names and image ids come from the stem: a second file with the same stem would
        # overwrite the first one's pictures and mix up their results.
        if f.stem in seen:
            source.skip(str(f.relative_to(folder)), f"same file stem as {seen[f.stem].relative_to(folder)} "
                                                    "(ids and output names come from the stem); rename one")
        else:
            seen[f.stem] = f
            source.files.append(f)
    return source


def _list_images(folder: Path, exclude: Optional[Path]) -> tuple[list[Path], int]:
    """Image files under ``folder`` sorted by relative path, and how many other files there were.
    Hidden files are left out (e.g. macOS '._x.jpg' resource forks are not images)."""
    skip_dir = exclude.resolve() if exclude is not None else None
    images, others = [], 0
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (skip_dir is None or (Path(root) / d).resolve() != skip_dir))
        for name in names:
            if name.startswith("."):
                continue
            p = Path(root) / name
            if p.suffix.lower() in IMAGE_SUFFIXES:
                images.append(p)
            else:
                others += 1
    return sorted(images, key=lambda p: p.relative_to(folder).as_posix()), others


def _open_video(path: Path, max_pixels: int) -> InputSource:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DataError(f"video {path} cannot be opened (unsupported codec or corrupt file)")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    try:
        if w > 0 and h > 0:
            check_pixels(f"video {path}", w, h, max_pixels)
        ok, bgr = cap.read()
        if not ok:
            raise DataError(f"video {path} has no readable frames")
        check_pixels(f"video {path}", bgr.shape[1], bgr.shape[0], max_pixels)
    except DataError:
        cap.release()
        raise
    fps = cap.get(cv2.CAP_PROP_FPS)
    reported = bool(fps) and math.isfinite(fps) and fps > 0
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    return InputSource(path, "video", max_pixels, files=[path], fps=fps if reported else DEFAULT_FPS,
                       fps_reported=reported, count=max(count, 0),
                       _first=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), _cap=cap)


# --------------------------------------------------------------------------- output

def progress_line(source: InputSource, frame: Frame, detail: str = "") -> None:
    """``predicted i/N: name[: detail]``; for a video about once per second of footage."""
    last = source.is_video and frame.index + 1 == source.count
    if frame.index % source.report_every() and not last:
        return
    total = source.count if source.count else "?"
    print(f"  predicted {frame.index + 1}/{total}: {frame.name}" + (f": {detail}" if detail else ""), flush=True)


def finish_skips(source: InputSource, out_dir: Path) -> None:
    """Write ``skipped.txt`` and print one summary line when inputs were skipped (a stale list from
    an earlier run into the same folder is removed)."""
    listing = out_dir / SKIPPED_FILE
    if not source.skipped:
        listing.unlink(missing_ok=True)
        return
    listing.write_text("".join(f"{name}\t{reason}\n" for name, reason in source.skipped))
    print(f"skipped {len(source.skipped)} of {source.count} input(s) (listed in {listing})")
    if len(source.skipped) >= source.count:
        raise DataError(f"none of the {source.count} input(s) in {source.path} could be used "
                        f"(listed in {listing})")


class VideoSink:
    """An mp4 written frame by frame at the input's frame rate, opened at the first frame."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self._writer: Optional[cv2.VideoWriter] = None
        self._size: Optional[tuple[int, int]] = None

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB frame (resized to the first frame's size if it differs)."""
        h, w = rgb.shape[:2]
        if self._writer is None:
            self._size = (w - w % 2, h - h % 2)  # most encoders want even sizes
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise PlatformError(f"cannot write video {self.path}: this OpenCV build has no mp4v encoder")
        if (w, h) != self._size:
            rgb = cv2.resize(rgb, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
