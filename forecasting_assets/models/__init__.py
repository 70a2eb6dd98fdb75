"""Base forecasts: per-series statistical models (statsforecast) and a global LightGBM (mlforecast)."""
