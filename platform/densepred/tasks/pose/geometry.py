"""Top-down pose geometry: person boxes, crop warps, joint flips and heatmap back-projection.

Conventions (those of the official HRNet code): sizes are ``(W, H)``, arrays are ``H x W``;
a person box is ``center (x, y)`` in image pixels plus ``scale (sw, sh)`` in units of
``PIXEL_STD`` (200) pixels; rotation is in degrees.

Two crop geometries exist:

* the official (MSRA) one, :func:`get_affine_transform`: the box of width ``200 * scale[0]``
  is mapped onto ``[0, W]`` (pixel *edges*), only ``scale[0]`` matters;
* UDP (Huang et al. 2020), :func:`get_warp_matrix_udp`: the box ``200 * scale`` is mapped onto
  ``[0, W - 1] x [0, H - 1]`` (pixel *centres*), both scale components matter.

A pipeline must use one of them consistently for the crop, for the joints and for decoding
(see :mod:`densepred.tasks.pose.codec`).
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

#: official unit of ``scale``: a box of width 200 px has scale 1.0
PIXEL_STD = 200.0

__all__ = [
    "box_to_center_scale",
    "get_affine_transform",
    "get_warp_matrix_udp",
    "get_crop_transform",
    "affine_transform",
    "fliplr_joints",
    "transform_preds",
    "flip_back",
]


def box_to_center_scale(x: float, y: float, w: float, h: float, aspect_ratio: float,
                        padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """COCO ``xywh`` box -> ``(center (2,), scale (2,))`` float32, as the official ``_xywh2cs``.

    The box is widened or heightened to ``aspect_ratio`` (= input W / input H), expressed in
    units of 200 px and multiplied by ``padding`` (skipped when ``center[0] == -1``, as the
    official code does).
    """
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32)
    if center[0] != -1:
        scale = scale * padding
    return center, scale.astype(np.float32)


def _rotate(vec: Sequence[float], rot_rad: float) -> tuple[float, float]:
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    return vec[0] * cs - vec[1] * sn, vec[0] * sn + vec[1] * cs


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The point making a right angle at ``b`` with ``a`` (rotate ``a - b`` by +90 degrees)."""
    d = a - b
    return b + np.array([-d[1], d[0]], dtype=np.float32)


def get_affine_transform(center: Any, scale: Any, rot_deg: float, output_size_wh: Sequence[int],
                         shift: Sequence[float] = (0.0, 0.0), inv: bool = False) -> np.ndarray:
    """Official HRNet crop warp: ``(2, 3)`` float64 matrix mapping the box to the output.

    The source width is ``200 * scale[0]`` (``scale[1]`` is ignored); the box centre (plus
    ``shift`` in box units) goes to ``(W/2, H/2)`` and the box is rotated by ``rot_deg``.
    ``inv=True`` returns the output -> source matrix. Built from three point pairs with
    ``cv2.getAffineTransform`` in float32, exactly as the official code, so results agree
    to the last bits.
    """
    scale = np.asarray(scale)
    if scale.ndim == 0:
        scale = np.array([scale, scale])
    center = np.asarray(center)
    shift = np.asarray(shift, dtype=np.float32)
    box = scale * PIXEL_STD
    src_w = box[0]
    dst_w, dst_h = output_size_wh[0], output_size_wh[1]
    rot_rad = np.pi * rot_deg / 180
    src_dir = _rotate([0, src_w * -0.5], rot_rad)
    dst_dir = np.array([0, dst_w * -0.5], dtype=np.float32)

    src = np.zeros((3, 2), dtype=np.float32)
    dst = np.zeros((3, 2), dtype=np.float32)
    src[0] = center + box * shift
    src[1] = center + src_dir + box * shift
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    src[2] = _third_point(src[0], src[1])
    dst[2] = _third_point(dst[0], dst[1])
    if inv:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def get_warp_matrix_udp(center: Any, scale: Any, rot_deg: float, output_size_wh: Sequence[int],
                        inv: bool = False) -> np.ndarray:
    """UDP crop warp (Huang et al. 2020): ``(2, 3)`` float64 matrix, box -> output.

    The box ``200 * scale`` (both components) around ``center`` maps onto the pixel-centre
    extent ``[0, W-1] x [0, H-1]``: ``center`` goes to ``((W-1)/2, (H-1)/2)``. The rotation has
    the same direction as :func:`get_affine_transform` (a point rotated by ``rot_deg`` in the
    source lands where the unrotated point would). ``inv=True`` gives output -> source.
    """
    center = np.asarray(center, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    if scale.ndim == 0:
        scale = np.array([scale, scale])
    box = scale * PIXEL_STD
    sx = (output_size_wh[0] - 1.0) / box[0]
    sy = (output_size_wh[1] - 1.0) / box[1]
    t = np.deg2rad(rot_deg)
    cs, sn = np.cos(t), np.sin(t)
    # out = S @ R @ (p - center) + (size - 1) / 2, R rotating image content by -rot (y down).
    lin = np.array([[cs * sx, sn * sx], [-sn * sy, cs * sy]], dtype=np.float64)
    out_c = np.array([(output_size_wh[0] - 1.0) * 0.5, (output_size_wh[1] - 1.0) * 0.5])
    mat = np.concatenate([lin, (out_c - lin @ center)[:, None]], axis=1)
    if inv:
        return cv2.invertAffineTransform(mat)
    return mat


def get_crop_transform(center: Any, scale: Any, rot_deg: float, output_size_wh: Sequence[int],
                       udp: bool = False, inv: bool = False) -> np.ndarray:
    """Dispatch to :func:`get_warp_matrix_udp` (``udp=True``) or :func:`get_affine_transform`."""
    if udp:
        return get_warp_matrix_udp(center, scale, rot_deg, output_size_wh, inv=inv)
    return get_affine_transform(center, scale, rot_deg, output_size_wh, inv=inv)


def affine_transform(points: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine matrix to ``(N, 2)`` points (extra columns are ignored)."""
    pts = np.asarray(points, dtype=np.float64)[..., :2]
    trans = np.asarray(trans, dtype=np.float64)
    return pts @ trans[:, :2].T + trans[:, 2]


def fliplr_joints(joints: np.ndarray, joints_vis: np.ndarray, width: int,
                  flip_pairs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal flip of ``(K, 3)`` joints in an image of ``width`` pixels (official semantics).

    ``x' = width - x - 1``; left/right pairs are swapped in both arrays; the returned joints
    are multiplied by the (swapped) visibility, so invisible joints become 0.
    """
    joints = np.array(joints, copy=True)
    vis = np.array(joints_vis, copy=True)
    joints[:, 0] = width - joints[:, 0] - 1
    perm = _flip_permutation(joints.shape[0], flip_pairs)
    joints, vis = joints[perm], vis[perm]
    return joints * vis, vis


def transform_preds(coords: np.ndarray, center: Any, scale: Any,
                    output_size_wh: Sequence[int]) -> np.ndarray:
    """Heatmap coordinates ``(K, 2)`` -> original-image pixels (official: inverse affine of
    ``(center, scale, rot 0, heatmap size)``, no half-pixel offset). Returns float64."""
    trans = get_affine_transform(center, scale, 0, output_size_wh, inv=True)
    return affine_transform(coords, trans)


def _flip_permutation(num_joints: int, flip_pairs: Sequence[Sequence[int]]) -> np.ndarray:
    perm = np.arange(num_joints)
    for a, b in np.asarray(flip_pairs, dtype=np.int64).reshape(-1, 2):
        perm[a], perm[b] = b, a
    return perm


def flip_back(heatmaps: Any, flip_pairs: Sequence[Sequence[int]], shift: bool = False) -> Any:
    """Undo a horizontal flip on ``(N, K, H, W)`` heatmaps: flip W, swap left/right channels.

    ``shift=True`` also moves the result one pixel right (``out[..., 1:] = out[..., :-1]``,
    the first column is kept), as the official flip test does for the MSRA geometry; with the
    UDP geometry the flip is exact and no shift is needed. Works on numpy arrays (returns a
    new array) and torch tensors (differentiable, same device/dtype).
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"flip_back expects (N, K, H, W) heatmaps, got shape {tuple(heatmaps.shape)}")
    perm = _flip_permutation(heatmaps.shape[1], flip_pairs)
    if isinstance(heatmaps, np.ndarray):
        out = heatmaps[:, perm, :, ::-1]
        if shift:
            out = np.concatenate([out[..., :1], out[..., :-1]], axis=-1)
        return np.ascontiguousarray(out)
    import torch

    idx = torch.as_tensor(perm, device=heatmaps.device)
    out = torch.flip(heatmaps.index_select(1, idx), dims=[-1])
    if shift:
        out = torch.cat([out[..., :1], out[..., :-1]], dim=-1)
    return out
