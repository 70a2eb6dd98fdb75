"""forecasting_assets: hierarchical retail demand forecasting as a Dagster asset graph.

Kept import-light on purpose: heavy libraries are imported inside the functions that use them.
"""

__version__ = "0.1.0"
