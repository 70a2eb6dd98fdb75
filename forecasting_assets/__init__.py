"""forecasting_assets: hierarchical retail demand forecasting as a Dagster asset graph.

Kept import-light on purpose: heavy libraries are imported inside the functions that use them.
Importing the package points the caches of the libraries it drives (matplotlib, numba) into the
project's ``data/.cache`` and turns their telemetry off, so nothing is written under ``$HOME``; points
temporary files into ``data/.tmp`` (unless ``TMPDIR`` is set), so nothing is left in ``/tmp``; and makes
worker processes (tsfresh, statsforecast with ``n_jobs > 1``) start from a fork server instead of a fork of
a process whose threads (pyarrow's jemalloc, DuckDB) may hold locks: such a forked worker can hang forever.
"""

import multiprocessing as _multiprocessing
import os as _os
import tempfile as _tempfile

from forecasting_assets.paths import data_dir as _data_dir

__version__ = "0.1.0"

_cache = _data_dir() / ".cache"
_os.environ.setdefault("MPLCONFIGDIR", str(_cache / "matplotlib"))
_os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache / "numba"))
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("DO_NOT_TRACK", "true")

if "TMPDIR" not in _os.environ:
    _tmp = _data_dir() / ".tmp"
    _tmp.mkdir(parents=True, exist_ok=True)
    _os.environ["TMPDIR"] = str(_tmp)
    _tempfile.tempdir = str(_tmp)
if _multiprocessing.get_start_method(allow_none=True) is None:
    _multiprocessing.set_start_method("forkserver")
