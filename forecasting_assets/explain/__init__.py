"""SHAP explanations of the global LightGBM forecasts."""
