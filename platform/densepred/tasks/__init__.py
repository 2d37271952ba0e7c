"""Tasks: one folder per task (dataset, transforms, codec, head wiring, loss, metric, drawing)."""
