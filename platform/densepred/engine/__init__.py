"""Task-agnostic training engine: per-worker loop, Ray Train launch, inference helpers."""
