"""Forecast evaluation: M5 accuracy metrics (RMSSE, MASE, WRMSSE, WSPL) and their reporting."""
