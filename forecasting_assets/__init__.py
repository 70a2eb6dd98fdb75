"""forecasting_assets: hierarchical retail demand forecasting as a Dagster asset graph.

Kept import-light on purpose: heavy libraries are imported inside the functions that use them.
Importing the package points the caches of the libraries it drives (matplotlib, numba) into the
project's ``data/.cache`` and turns their telemetry off, so nothing is written under ``$HOME``.
"""

import os as _os

from forecasting_assets.paths import data_dir as _data_dir

__version__ = "0.1.0"

_cache = _data_dir() / ".cache"
_os.environ.setdefault("MPLCONFIGDIR", str(_cache / "matplotlib"))
_os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache / "numba"))
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("DO_NOT_TRACK", "true")
