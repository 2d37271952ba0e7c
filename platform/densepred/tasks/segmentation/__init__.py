"""Semantic segmentation (Cityscapes)."""
