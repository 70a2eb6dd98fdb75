"""forecasting_assets: hierarchical retail demand forecasting as a Dagster asset graph.

Kept import-light on purpose: heavy libraries are imported inside the functions that use them.
Importing the package points the caches of the libraries it drives (matplotlib, numba) into the
project's ``data/.cache`` and turns their telemetry off, so nothing is written under ``$HOME``; points
temporary files into ``data/.tmp`` (unless ``TMPDIR`` is set), so nothing is left in ``/tmp``; and restores
the default action of SIGTERM when the process was started with it ignored (a background job of some
shells and CI runners), in this process and in the forkserver that starts the worker pools: multiprocessing
stops its pool workers (tsfresh, statsforecast with ``n_jobs > 1``) with SIGTERM, and a worker that ignores
it makes ``Pool.terminate()`` wait forever.

Worker pools start by ``forkserver``, not ``fork``: an in-process run forks statsforecast's and tsfresh's
workers from a process that already has threads (pyarrow's jemalloc, Dagster's log watchers, LightGBM's
OpenMP), and a forked child can inherit a lock held by one of them and wait on it forever — a soak of
in-process runs hung that way in ``backtest_forecasts``. (Python 3.14 makes forkserver the default.)

Arrow allocates through the system allocator (``ARROW_DEFAULT_MEMORY_POOL=system``, set before pandas imports
pyarrow): its default pool (mimalloc) keeps the pages of freed tables, so a step that read an M5-size Parquet
file (59 M rows) held ~1.4 GB more resident memory for the rest of the step than it used.
"""

import multiprocessing as _multiprocessing
import os as _os
import signal as _signal
import tempfile as _tempfile
import threading as _threading

from forecasting_assets.paths import data_dir as _data_dir

__version__ = "0.1.0"

_cache = _data_dir() / ".cache"
_os.environ.setdefault("MPLCONFIGDIR", str(_cache / "matplotlib"))
_os.environ.setdefault("NUMBA_CACHE_DIR", str(_cache / "numba"))
_os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
_os.environ.setdefault("DO_NOT_TRACK", "true")
_os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

if "TMPDIR" not in _os.environ:
    _tmp = _data_dir() / ".tmp"
    _tmp.mkdir(parents=True, exist_ok=True)
    _os.environ["TMPDIR"] = str(_tmp)
    _tempfile.tempdir = str(_tmp)
if _threading.current_thread() is _threading.main_thread() and _signal.getsignal(_signal.SIGTERM) == _signal.SIG_IGN:
    _signal.signal(_signal.SIGTERM, _signal.SIG_DFL)
if _multiprocessing.get_start_method(allow_none=True) is None:
    _multiprocessing.set_start_method("forkserver")
# The forkserver imports this package too, so it resets SIGTERM for itself and for every worker it forks.
# The reset above is not enough on its own: where SIGINT is ignored (a background job of a non-interactive
# shell), every Dagster execution maps SIGTERM to SIGINT's handler, i.e. ignores it again, and a forkserver
# started after that would give its workers an ignored SIGTERM (a CI run launched that way hung in tsfresh's
# Pool.terminate()).
_multiprocessing.set_forkserver_preload(["__main__", "forecasting_assets"])
