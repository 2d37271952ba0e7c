"""Top-down human pose estimation (COCO keypoints)."""
