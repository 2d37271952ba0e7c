"""Experiment tracking: runs logged to MLflow (the optional ``[tracking]`` extra)."""
