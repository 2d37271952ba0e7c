"""Keypoint <-> heatmap codec for top-down pose estimation.

Encoding (joints in input-crop pixels -> Gaussian heatmaps):

* ``msra``: the official HRNet target (stride ``input / heatmap``, Gaussian centred on the
  rounded heatmap pixel ``int(coord / stride + 0.5)``, unnormalised, window ``6 sigma + 1``).
* ``dark``: same geometry, Gaussian centred on the exact sub-pixel position (the unbiased
  encoding of Zhang et al. 2020, "Distribution-Aware Coordinate Representation").
* ``udp``: Huang et al. 2020, "Unbiased Data Processing": stride
  ``(input - 1) / (heatmap - 1)`` and sub-pixel centres. The crop must then be made with
  :func:`~densepred.tasks.pose.geometry.get_warp_matrix_udp` (see :meth:`HeatmapCodec.crop_transform`).

Decoding (heatmaps -> original-image pixels):

* ``argmax``: official argmax + quarter-pixel shift toward the larger neighbour.
* ``dark``: argmax refined by one Newton step on the log of the Gaussian-blurred heatmap.
* ``udp``: the DARK refinement with the UDP back-projection (requires ``encoding: udp``).

The back-projection always follows the encoding geometry: MSRA uses the inverse official
affine transform of ``(center, scale, rot 0, heatmap size)``; UDP maps heatmap pixel centres
``0 .. W-1`` onto the box extent ``center +- 100 * scale``.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import cv2
import numpy as np

from ...errors import ConfigError
from ...registry import CODECS
from .geometry import PIXEL_STD
from .geometry import get_crop_transform, transform_preds

__all__ = [
    "ENCODINGS",
    "DECODINGS",
    "generate_target",
    "get_max_preds",
    "get_final_preds",
    "refine_quarter_offset",
    "refine_dark",
    "default_blur_kernel",
    "heatmap_to_image",
    "HeatmapCodec",
]

ENCODINGS = ("msra", "dark", "udp")
DECODINGS = ("argmax", "dark", "udp")


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        return x.detach().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- encoding

def generate_target(joints: np.ndarray, joints_vis: np.ndarray, image_size_wh: Sequence[float],
                    heatmap_size_wh: Sequence[int], sigma: float = 2,
                    joint_weights: np.ndarray | None = None,
                    encoding: str = "msra") -> tuple[np.ndarray, np.ndarray]:
    """Gaussian heatmap targets for joints ``(..., K, 3)`` given in input-crop pixels.

    Returns ``target (..., K, H, W)`` float32 and ``target_weight (..., K, 1)`` float32; any
    leading batch dimensions are kept (all joints of all samples are built at once).
    With ``encoding="msra"`` this reproduces the official HRNet ``generate_target`` exactly,
    quirks included: the centre is ``int(coord / stride + 0.5)`` (truncation toward zero), the
    window is ``int(c - 3 sigma) .. int(c + 3 sigma + 1)``; a joint gets weight 0 when invisible
    (``vis[..., 0]``, and no Gaussian unless ``vis > 0.5``) or when that window lies entirely
    outside the map (so a joint whose window only touches the map edge, e.g. x = -30 at stride
    4, keeps weight 1 with an all-zero map). ``joint_weights (K,)`` multiply the weights.
    ``encoding="dark"`` / ``"udp"`` use the same window but a sub-pixel Gaussian centre;
    ``"udp"`` also uses the stride ``(input - 1) / (heatmap - 1)``.
    """
    if encoding not in ENCODINGS:
        raise ConfigError(f"unknown heatmap encoding {encoding!r}; valid: {', '.join(ENCODINGS)}")
    joints = np.asarray(joints, dtype=np.float64)
    vis = np.asarray(joints_vis, dtype=np.float64)
    img = np.asarray(image_size_wh, dtype=np.float64)
    hm_w, hm_h = int(heatmap_size_wh[0]), int(heatmap_size_wh[1])
    hm = np.array([hm_w, hm_h], dtype=np.float64)
    stride = (img - 1.0) / (hm - 1.0) if encoding == "udp" else img / hm

    tmp = sigma * 3
    win = 2 * tmp + 1                     # official: g = exp(...) over arange(0, win)
    win_len = math.ceil(win)
    win_mid = win // 2

    mu = joints[..., :2] / stride                        # (..., K, 2) exact heatmap position
    mu_int = np.trunc(mu + 0.5)                          # official int(x + 0.5)
    ul = np.trunc(mu_int - tmp)
    br = np.trunc(mu_int + tmp + 1)
    outside = ((ul[..., 0] >= hm_w) | (ul[..., 1] >= hm_h) | (br[..., 0] < 0) | (br[..., 1] < 0)
               | ~np.isfinite(mu).all(-1))
    weight = np.where(outside, 0.0, vis[..., 0]).astype(np.float32)
    paste = (weight > 0.5)[..., None, None]              # (..., K, 1, 1)

    centre = ul + win_mid
    if encoding != "msra":
        centre = centre + (mu - mu_int)
    ul = np.where(outside[..., None], 0.0, ul)           # keep garbage out of the maths below
    br = np.where(outside[..., None], 0.0, br)
    centre = np.where(outside[..., None], 0.0, centre)

    def axis_terms(size: int, a: int) -> tuple[np.ndarray, np.ndarray]:
        pix = np.arange(size, dtype=np.float64)
        lo, hi = ul[..., a, None], br[..., a, None]
        valid = (pix >= lo) & (pix < hi) & (pix - lo < win_len)
        d = pix - centre[..., a, None]
        return d, valid

    dx, vx = axis_terms(hm_w, 0)                          # (..., K, W)
    dy, vy = axis_terms(hm_h, 1)                          # (..., K, H)
    if encoding == "msra":
        # Integer offsets: build in float32 like the official code for bitwise parity.
        dx, dy = dx.astype(np.float32), dy.astype(np.float32)
        d2 = dy[..., :, None] ** 2 + dx[..., None, :] ** 2
        g = np.exp(-d2 / np.float32(2 * sigma ** 2))
    else:
        d2 = dy[..., :, None] ** 2 + dx[..., None, :] ** 2
        g = np.exp(-d2 / (2.0 * sigma ** 2)).astype(np.float32)
    mask = vy[..., :, None] & vx[..., None, :] & paste
    target = np.where(mask, g, np.float32(0)).astype(np.float32, copy=False)

    if joint_weights is not None:
        jw = np.asarray(joint_weights, dtype=np.float32).reshape(-1)
        weight = weight * jw
    return target, weight[..., None].astype(np.float32)


# --------------------------------------------------------------------------- decoding

def get_max_preds(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Argmax of ``(N, K, H, W)`` heatmaps (official): ``coords (N, K, 2)`` float32 as
    ``(x, y)`` heatmap pixels (first maximum wins; ``(0, 0)`` where the max is <= 0) and
    ``maxvals (N, K, 1)``."""
    heatmaps = _to_numpy(heatmaps)
    if heatmaps.ndim != 4:
        raise ValueError(f"expected (N, K, H, W) heatmaps, got shape {heatmaps.shape}")
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    maxvals = np.take_along_axis(flat, idx[..., None], axis=2)
    coords = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    coords *= (maxvals > 0.0).astype(np.float32)
    return coords, maxvals


def refine_quarter_offset(heatmaps: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Official post-processing, vectorised: move ``coords (N, K, 2)`` by 0.25 px toward the
    larger neighbour in x and in y, only where ``1 < px < W-1`` and ``1 < py < H-1``."""
    heatmaps = _to_numpy(heatmaps)
    n, k, h, w = heatmaps.shape
    px = np.floor(coords[..., 0] + 0.5).astype(np.int64)
    py = np.floor(coords[..., 1] + 0.5).astype(np.int64)
    ok = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    pxc, pyc = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)
    ni, ki = np.ogrid[:n, :k]
    diff = np.stack([heatmaps[ni, ki, pyc, pxc + 1] - heatmaps[ni, ki, pyc, pxc - 1],
                     heatmaps[ni, ki, pyc + 1, pxc] - heatmaps[ni, ki, pyc - 1, pxc]], axis=-1)
    out = coords.copy()
    out += np.where(ok[..., None], np.sign(diff) * 0.25, 0).astype(out.dtype)
    return out


def default_blur_kernel(sigma: float) -> int:
    """Odd kernel size whose OpenCV default sigma (``0.3 ((k-1)/2 - 1) + 0.8``) is ~``sigma``:
    11 for sigma 2, 17 for sigma 3 (the values used by DARK)."""
    half = max(1, int(round((sigma - 0.8) / 0.3 + 1)))
    return 2 * half + 1


def refine_dark(heatmaps: np.ndarray, coords: np.ndarray, blur_kernel: int = 11) -> np.ndarray:
    """DARK refinement (Zhang et al. 2020), vectorised over all maps.

    Around each integer argmax the heatmap is Gaussian-blurred (OpenCV kernel of size
    ``blur_kernel``, computed only on the small patch needed), its log is expanded to second
    order and the Newton step ``-H^-1 g`` is added to ``coords (N, K, 2)``.

    Border handling (differs from the official DARK code, which skips joints within 2 px of the
    border and whose zero-padded blur pulls border peaks inward): the 3x3 difference stencil is
    moved inside the map (a one-sided quadratic fit) and the blur kernel is shrunk to
    ``2 r + 1`` so that it never reads outside the map; an exact Gaussian is thus decoded
    exactly everywhere. The step is applied only where the Hessian is negative definite and the
    map has a positive maximum, and is clipped to +-1 px around the argmax.
    """
    heatmaps = _to_numpy(heatmaps).astype(np.float64, copy=False)
    n, k, h, w = heatmaps.shape
    if blur_kernel < 1 or blur_kernel % 2 == 0:
        raise ValueError(f"blur_kernel must be a positive odd integer, got {blur_kernel}")
    if h < 3 or w < 3:
        return coords.astype(np.float64)
    r = blur_kernel // 2
    pad = r + 1
    padded = np.pad(heatmaps, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    px = np.rint(coords[..., 0]).astype(np.int64)
    py = np.rint(coords[..., 1]).astype(np.int64)
    sx, sy = np.clip(px, 1, w - 2), np.clip(py, 1, h - 2)            # stencil centre, in map
    # per-joint blur radius so that the blurred 3x3 stencil only reads in-map pixels
    r_eff = np.clip(np.minimum.reduce([sx - 1, w - 2 - sx, sy - 1, h - 2 - sy]), 0, r)
    table = np.zeros((r + 1, blur_kernel))
    for q in range(r + 1):
        table[q, r - q:r + q + 1] = cv2.getGaussianKernel(2 * q + 1, 0).ravel()
    kern = table[r_eff][..., None, None, :]                            # (N, K, 1, 1, k)
    offs = np.arange(-pad, pad + 1)
    rows = (sy + pad)[..., None] + offs                                # (N, K, P), P = 2r+3
    cols = (sx + pad)[..., None] + offs
    ni, ki = np.arange(n)[:, None, None, None], np.arange(k)[None, :, None, None]
    patch = padded[ni, ki, rows[..., :, None], cols[..., None, :]]     # (N, K, P, P)
    # 'valid' separable convolution: (P, P) -> (3, 3) blurred values around the stencil centre
    tmp = sum(kern[..., i] * patch[..., :, i:i + 3] for i in range(blur_kernel))
    blurred = sum(kern[..., i] * tmp[..., i:i + 3, :] for i in range(blur_kernel))
    f = np.log(np.maximum(blurred, 1e-10))
    dx = 0.5 * (f[..., 1, 2] - f[..., 1, 0])
    dy = 0.5 * (f[..., 2, 1] - f[..., 0, 1])
    dxx = f[..., 1, 2] - 2 * f[..., 1, 1] + f[..., 1, 0]
    dyy = f[..., 2, 1] - 2 * f[..., 1, 1] + f[..., 0, 1]
    dxy = 0.25 * (f[..., 2, 2] - f[..., 2, 0] - f[..., 0, 2] + f[..., 0, 0])
    det = dxx * dyy - dxy ** 2
    good = (det > 1e-12) & (dxx < 0) & (heatmaps.reshape(n, k, -1).max(-1) > 0)
    safe = np.where(good, det, 1.0)
    ox = -(dyy * dx - dxy * dy) / safe + (sx - px)
    oy = -(dxx * dy - dxy * dx) / safe + (sy - py)
    off = np.clip(np.stack([ox, oy], axis=-1), -1.0, 1.0) * good[..., None]
    return coords.astype(np.float64) + off


def heatmap_to_image(coords: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                     heatmap_size_wh: Sequence[int], udp: bool = False) -> np.ndarray:
    """Heatmap ``(x, y)`` ``(N, K, 2)`` -> original-image pixels ``(N, K, 2)`` float32.

    MSRA geometry: the official :func:`transform_preds` per sample (bit-compatible). UDP: pixel
    centres ``0 .. W-1`` span the box ``center +- 100 * scale`` (inverse of the UDP warp, rot 0).
    """
    coords = np.asarray(coords)
    centers = np.asarray(centers)
    scales = np.asarray(scales)
    if udp:
        c = centers.astype(np.float64)[:, None, :]
        box = scales.astype(np.float64)[:, None, :] * PIXEL_STD
        last = np.array([heatmap_size_wh[0] - 1.0, heatmap_size_wh[1] - 1.0])
        return (c + (coords.astype(np.float64) / last - 0.5) * box).astype(np.float32)
    out = np.empty(coords.shape[:2] + (2,), dtype=np.float32)
    for i in range(coords.shape[0]):
        out[i] = transform_preds(coords[i], centers[i], scales[i], heatmap_size_wh)
    return out


def get_final_preds(heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray,
                    post_process: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Official HRNet decoding: argmax (+ quarter-pixel shift when ``post_process``), then
    back-projection to the original image. Returns ``preds (N, K, 2)`` float32 and
    ``maxvals (N, K, 1)``."""
    heatmaps = _to_numpy(heatmaps)
    coords, maxvals = get_max_preds(heatmaps)
    if post_process:
        coords = refine_quarter_offset(heatmaps, coords)
    h, w = heatmaps.shape[2:]
    return heatmap_to_image(coords, centers, scales, [w, h]), maxvals


# --------------------------------------------------------------------------- codec class

@CODECS.register_module()
class HeatmapCodec:
    """Gaussian heatmap codec for top-down pose (see the module docstring for the modes).

    Args:
        input_size: network input ``[W, H]`` (e.g. ``[192, 256]``).
        heatmap_size: heatmap ``[W, H]`` (e.g. ``[48, 64]``).
        sigma: Gaussian sigma in heatmap pixels.
        encoding: ``msra`` | ``dark`` | ``udp``.
        decoding: ``argmax`` | ``dark`` | ``udp`` (``udp`` requires ``encoding: udp``).
        use_joint_weights: multiply target weights by ``joint_weights``.
        joint_weights: per-joint loss weights (default: the official COCO ones); a data set's
            ``KeypointMeta.joint_weights``.
        blur_kernel: DARK/UDP blur kernel size (odd); default derived from ``sigma`` (11 for 2).

    Pipeline contract: crop images and transform joints with :meth:`crop_transform` (UDP
    geometry when ``encoding == "udp"``), call :meth:`encode` with joints in crop pixels, and
    in flip test call ``flip_back(..., shift=codec.flip_shift)``.
    """

    def __init__(self, input_size: list[int], heatmap_size: list[int], sigma: float = 2.0,
                 encoding: str = "msra", decoding: str = "argmax",
                 use_joint_weights: bool = False, blur_kernel: int | None = None,
                 joint_weights: Sequence[float] | None = None) -> None:
        for name, val in (("input_size", input_size), ("heatmap_size", heatmap_size)):
            if (not isinstance(val, (list, tuple)) or len(val) != 2
                    or not all(isinstance(v, (int, np.integer)) and v > 1 for v in val)):
                raise ConfigError(f"HeatmapCodec.{name} must be [W, H] with integers > 1, got {val!r}")
        if not sigma > 0:
            raise ConfigError(f"HeatmapCodec.sigma must be > 0, got {sigma!r}")
        if encoding not in ENCODINGS:
            raise ConfigError(f"HeatmapCodec.encoding {encoding!r} is invalid; valid: {', '.join(ENCODINGS)}")
        if decoding not in DECODINGS:
            raise ConfigError(f"HeatmapCodec.decoding {decoding!r} is invalid; valid: {', '.join(DECODINGS)}")
        if decoding == "udp" and encoding != "udp":
            raise ConfigError(f"HeatmapCodec.decoding 'udp' needs encoding 'udp' (got {encoding!r}); "
                              f"valid decodings for it: argmax, dark")
        if blur_kernel is not None and (blur_kernel < 1 or blur_kernel % 2 == 0):
            raise ConfigError(f"HeatmapCodec.blur_kernel must be a positive odd integer, got {blur_kernel!r}")
        self.input_size = [int(v) for v in input_size]
        self.heatmap_size = [int(v) for v in heatmap_size]
        self.sigma = float(sigma)
        self.encoding = encoding
        self.decoding = decoding
        self.use_joint_weights = bool(use_joint_weights)
        if joint_weights is None:
            from .keypoint_meta import coco_keypoints
            joint_weights = coco_keypoints().joint_weights
        self.joint_weights = np.asarray(joint_weights, np.float32)
        self.blur_kernel = int(blur_kernel) if blur_kernel is not None else default_blur_kernel(self.sigma)

    @property
    def udp(self) -> bool:
        """True when the UDP geometry (crop warp, stride, back-projection) is in use."""
        return self.encoding == "udp"

    @property
    def flip_shift(self) -> bool:
        """Whether the flip test must shift flipped heatmaps one pixel (MSRA geometry only)."""
        return not self.udp

    def crop_transform(self, center: Any, scale: Any, rot_deg: float = 0.0,
                       inv: bool = False) -> np.ndarray:
        """``(2, 3)`` image -> input-crop matrix (for ``cv2.warpAffine`` and the joints)."""
        return get_crop_transform(center, scale, rot_deg, self.input_size, udp=self.udp, inv=inv)

    def encode(self, joints: np.ndarray, joints_vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints ``(..., K, 3)`` in crop pixels -> ``target (..., K, H, W)``, ``weight (..., K, 1)``."""
        jw = None
        if self.use_joint_weights:
            k = np.shape(joints)[-2]
            if k != len(self.joint_weights):
                raise ValueError(f"use_joint_weights has weights for {len(self.joint_weights)} joints, got {k}")
            jw = self.joint_weights
        return generate_target(joints, joints_vis, self.input_size, self.heatmap_size, self.sigma,
                               joint_weights=jw, encoding=self.encoding)

    def decode_heatmap_coords(self, heatmaps: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(N, K, H, W)`` -> heatmap-pixel ``coords (N, K, 2)`` and ``maxvals (N, K, 1)``."""
        heatmaps = _to_numpy(heatmaps)
        coords, maxvals = get_max_preds(heatmaps)
        if self.decoding == "argmax":
            coords = refine_quarter_offset(heatmaps, coords)
        else:
            coords = refine_dark(heatmaps, coords, self.blur_kernel)
        return coords, maxvals

    def decode(self, heatmaps: Any, centers: Any, scales: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(N, K, H, W)`` heatmaps + boxes -> ``preds (N, K, 2)`` float32 in original-image
        pixels and ``maxvals (N, K, 1)``."""
        heatmaps = _to_numpy(heatmaps)
        coords, maxvals = self.decode_heatmap_coords(heatmaps)
        h, w = heatmaps.shape[2:]
        preds = heatmap_to_image(coords, _to_numpy(centers), _to_numpy(scales), [w, h], udp=self.udp)
        return preds, maxvals

    def __repr__(self) -> str:
        return (f"HeatmapCodec(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
                f"sigma={self.sigma}, encoding={self.encoding!r}, decoding={self.decoding!r})")
