"""Data drift between the training window and the latest window (Evidently)."""
