"""Fine-tuning across skeletons (``train.load_from``): the pose head's per-joint rows move to the
joints of the same name. COCO -> CrowdPose shares 12 joints, COCO -> AP-10K the eyes, nose,
shoulders, elbows, hips and knees. A platform checkpoint names its joints (``meta.keypoints``); an
official or mmpose checkpoint is COCO's (17 heatmaps) or MPII's (16). A head of another type or
heatmap size loads nothing: the backbone is transferred alone, and the report says so."""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from .keypoint_meta import keypoint_meta

#: joint names of official checkpoints by their number of heatmaps
BY_COUNT = {17: "coco", 16: "mpii"}


def source_joints(meta: Mapping[str, Any], count: int) -> Optional[list[str]]:
    """The checkpoint's joint names: its own record, else by the official layouts' counts."""
    names = meta.get("keypoints")
    if isinstance(names, list) and len(names) == count and all(isinstance(n, str) for n in names):
        return names
    return list(keypoint_meta(BY_COUNT[count]).names) if count in BY_COUNT else None


def joint_transfer(prefix: str, joints: Sequence[str]) -> Callable:
    """A ``checkpoint.Transform`` for the head under ``prefix`` (``heads.pose.``) whose output rows
    are ``joints``."""
    joints = list(joints)

    def apply(mapped: dict, own: Mapping[str, torch.Tensor], report: Any, meta: Mapping[str, Any]) -> dict:
        keys = [k for k in mapped if k.startswith(prefix + "final_layer.") and k in own]
        rows = {k: mapped[k].shape[0] for k in keys if mapped[k].ndim >= 1}
        if not rows or all(n == len(joints) for n in rows.values()) and source_joints(meta, len(joints)) == joints:
            return mapped  # the same joints in the same order: nothing to move
        count = next(iter(rows.values()))
        source = source_joints(meta, count)
        same_kind = all(mapped[k].shape[1:] == own[k].shape[1:] and mapped[k].shape[0] == count for k in keys)
        head = prefix.rstrip(".")
        if source is None or not same_kind:
            why = (f"its {count} joints are not named" if source is None
                   else "it is another head type or size")
            report.notes.append(f"{head}: not transferred ({why}); the backbone is, the head starts fresh")
            return {k: v for k, v in mapped.items() if not k.startswith(prefix)}
        shared = [j for j in joints if j in source]
        out = dict(mapped)
        for k in keys:
            new = own[k].clone()
            for i, name in enumerate(joints):
                if name in source:
                    new[i] = mapped[k][source.index(name)]
            out[k] = new
        fresh = [j for j in joints if j not in source]
        report.notes.append(f"{head}: {len(shared)} of {len(joints)} joints transferred by name from the "
                            f"checkpoint's {count} ({', '.join(shared) or 'none'})"
                            + (f"; fresh: {', '.join(fresh)}" if fresh else ""))
        return out

    return apply
