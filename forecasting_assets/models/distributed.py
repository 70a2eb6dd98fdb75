"""Scale-out forecasting on a Dask cluster: statsforecast and mlforecast through their Dask backends.

What it is
----------
Plain functions (no Dagster) that run the project's forecasting engines on a ``dask.distributed``
cluster instead of in the current process:

* ``forecast_statistical_dask`` — statsforecast's models (``statistical_models``) through
  statsforecast's Fugue backend on Dask: the long ``unique_id, ds, y`` frame becomes a Dask frame
  partitioned by ``unique_id`` and every partition is forecast on a worker. The result equals the
  in-process ``StatsForecast.forecast`` (same columns, same values up to float32: the Fugue backend
  declares float32 model columns; they are returned as float64 like the in-process output);
* ``forecast_lightgbm_dask`` — a global LightGBM through mlforecast's ``DistributedMLForecast`` and
  ``DaskLGBMForecast`` (LightGBM's own data-parallel Dask training: each worker builds histograms on
  its partitions and the trees are agreed over LightGBM's socket network between the workers).
  ``forecast_lightgbm_local`` is the same configuration in process, for comparison: the forecasts are
  close but not equal (data-parallel training bins and splits on distributed statistics);
* ``local_dask_cluster`` — a ``LocalCluster`` on 127.0.0.1 for tests and for one big machine;
  ``connect_dask`` — a client of an existing scheduler.

When to use it
--------------
When one machine is not enough: many more series than the in-process ``n_jobs`` pool can forecast in
the time available, or a training frame of the global model that does not fit in one process's
memory. On small frames the in-process path is much faster (20 series × 200 days, three statistical
models: about 9 s on a fresh 2-worker local cluster, most of it numba compiling in each worker, against
0.5 s in process); a local cluster is mostly useful to exercise this code before a real cluster.

Pointing it at a real cluster
-----------------------------
Start a scheduler and workers on the machines (``dask scheduler`` on one,
``dask worker tcp://SCHEDULER:8786 --nthreads 1 --memory-limit 8GiB`` on each; or dask-kubernetes,
dask-jobqueue, Coiled …), with this package and the same versions of statsforecast, mlforecast and
lightgbm installed on every worker. Then::

    with connect_dask("tcp://scheduler-host:8786") as client:
        forecasts = forecast_statistical_dask(series, statistical_models(7), "D", 28, client)

LightGBM's Dask training also needs the workers to reach each other on the ports LightGBM opens
(random free ports by default; behind a firewall fix one with ``params={"local_listen_port": ...}``,
or give ``machines``, see ``lightgbm.dask``).

Local files
-----------
Everything a local cluster writes (worker spill directories, lock files) goes under
``<project home>/data/dask`` (``dask_dir()``), passed as the workers' ``local_directory`` and as
dask's ``temporary-directory``; the worker processes also inherit the ``TMPDIR`` that importing
``forecasting_assets`` sets (``data/.tmp``). Never /tmp or $HOME. After the cluster closes only dask's two
empty lock files (``dask-scratch-space/global.lock``, ``purge.lock``) remain there.

Heavy imports (dask, distributed, statsforecast, mlforecast, lightgbm) happen inside the functions, so
importing this module (and loading the code location) stays fast.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from forecasting_assets.paths import data_dir

if TYPE_CHECKING:  # only for annotations: never imported at run time here
    import dask.dataframe as dd
    from distributed import Client

DEFAULT_MEMORY_LIMIT = "2GiB"  # per worker
LIGHTGBM_MODEL_NAME = "LightGBM"
KEYS = ["unique_id", "ds"]


def dask_dir() -> Path:
    """``<home>/data/dask``: local directories of the workers of a local cluster (gitignored like data/)."""
    return data_dir() / "dask"


@contextmanager
def local_dask_cluster(
    n_workers: int = 2,
    threads_per_worker: int = 1,
    memory_limit: str | int | None = DEFAULT_MEMORY_LIMIT,
    processes: bool = True,
    local_directory: str | Path | None = None,
) -> Iterator[Client]:
    """A ``dask.distributed`` client on a fresh ``LocalCluster`` bound to 127.0.0.1, closed on exit.

    ``processes=True`` (the default): each worker is its own process (a nanny spawns it), as on a real
    cluster, so the tests exercise what a real cluster does: the frames, the models and the functions
    are pickled to other processes, each worker imports the libraries and JIT-compiles statsforecast's
    numba code itself, and nothing the workers do can lean on this process's state. It costs a few
    seconds per cluster (start-up, numba compilation in each worker). ``processes=False`` (workers as
    threads of this process, still over TCP on 127.0.0.1) works too — statsforecast and LightGBM's
    two-machine Dask training both ran that way — and starts faster, but hides serialization problems.

    No dashboard (``dashboard_address=None``: no HTTP port opened). Worker files go to
    ``local_directory`` (default ``dask_dir()``, inside the project home), which is also dask's
    ``temporary-directory`` while the cluster runs.
    """
    import dask
    from distributed import Client, LocalCluster

    folder = Path(local_directory) if local_directory is not None else dask_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # spawned worker processes get a copy of this config (the nanny passes it on)
    with dask.config.set({"temporary-directory": str(folder)}):
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=processes,
            memory_limit=memory_limit,
            protocol="tcp",  # with processes=False dask would pick inproc://, which a host cannot be given to
            host="127.0.0.1",
            dashboard_address=None,
            local_directory=str(folder),
            silence_logs=logging.WARNING,
        )
        try:
            client = Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()


def connect_dask(address: str, timeout: str = "10s") -> Client:
    """A client of an existing scheduler, e.g. ``tcp://127.0.0.1:8786``; usable as a context manager."""
    from distributed import Client

    return Client(address, timeout=timeout)


def default_npartitions(client: Client, n_series: int) -> int:
    """One partition per worker thread, at most one per series."""
    threads = sum(client.nthreads().values()) or 1
    return max(1, min(threads, n_series))


def to_dask_frame(series: pd.DataFrame, npartitions: int, id_col: str = "unique_id") -> dd.DataFrame:
    """``series`` as a Dask frame in which every series lies in exactly one partition.

    Sorted by ``id_col`` (stable: rows keep their order within a series) and split on its values
    (``from_pandas`` never cuts a run of equal index values), then ``id_col`` is a column again.
    """
    import dask.dataframe as dd

    ordered = series.sort_values(id_col, kind="stable").set_index(id_col)
    return dd.from_pandas(ordered, npartitions=npartitions, sort=True).reset_index()


def _like_input(result: pd.DataFrame, series: pd.DataFrame, value_columns: Sequence[str]) -> pd.DataFrame:
    """A computed Dask result as the in-process output would be: key dtypes of ``series``, float64
    values, sorted by unique_id, ds, with a fresh RangeIndex."""
    out = result.reset_index(drop=True)
    for key in KEYS:
        out[key] = out[key].astype(series[key].dtype)
    for column in value_columns:
        out[column] = out[column].astype("float64")
    return out.sort_values(KEYS, kind="stable").reset_index(drop=True)[[*KEYS, *value_columns]]


def forecast_statistical_dask(
    series: pd.DataFrame,
    models: list,
    freq: str,
    horizon: int,
    client: Client,
    npartitions: int | None = None,
) -> pd.DataFrame:
    """``StatsForecast(models, freq).forecast(df, h=horizon)`` run on the Dask cluster of ``client``.

    ``series``: long ``unique_id, ds, y``. Returns the in-process output's columns
    (``unique_id, ds, <one column per model>``), sorted by unique_id, ds. statsforecast's Fugue backend
    declares its model columns float32: values equal the in-process ones rounded to float32, returned
    as float64.
    """
    from statsforecast import StatsForecast

    frame = series[["unique_id", "ds", "y"]]
    n_series = frame["unique_id"].nunique()
    dask_frame = to_dask_frame(frame, npartitions or default_npartitions(client, n_series))
    with client.as_current():  # statsforecast/fugue pick the current client of the Dask frame
        lazy = StatsForecast(models=models, freq=freq, n_jobs=1).forecast(df=dask_frame, h=horizon)
        result = client.compute(lazy).result()
    return _like_input(result, series, [repr(model) for model in models])


def backtest_statistical_dask(
    series: pd.DataFrame,
    models: list,
    freq: str,
    horizon: int,
    n_windows: int,
    client: Client,
    npartitions: int | None = None,
) -> pd.DataFrame:
    """``StatsForecast(models, freq).cross_validation(df, h=horizon, n_windows, step_size=horizon)`` on the
    Dask cluster of ``client``: ``unique_id, ds, cutoff, y`` and one column per model, sorted like the
    in-process output (unique_id, cutoff, ds)."""
    from statsforecast import StatsForecast

    frame = series[["unique_id", "ds", "y"]]
    dask_frame = to_dask_frame(frame, npartitions or default_npartitions(client, frame["unique_id"].nunique()))
    with client.as_current():
        lazy = StatsForecast(models=models, freq=freq, n_jobs=1).cross_validation(df=dask_frame, h=horizon, n_windows=n_windows, step_size=horizon)
        result = client.compute(lazy).result().reset_index(drop=True)
    names = [repr(model) for model in models]
    result["unique_id"] = result["unique_id"].astype(series["unique_id"].dtype)
    result["ds"] = result["ds"].astype(series["ds"].dtype)
    result["cutoff"] = result["cutoff"].astype(series["ds"].dtype)
    for column in ["y", *names]:
        result[column] = result[column].astype("float64")
    return result.sort_values(["unique_id", "cutoff", "ds"], kind="stable").reset_index(drop=True)[["unique_id", "ds", "cutoff", "y", *names]]


def _lightgbm_features(lags: Sequence[int], date_features: Sequence[str], scale_target: bool) -> dict:
    """The feature configuration shared by the Dask and the in-process LightGBM."""
    from mlforecast.target_transforms import LocalStandardScaler

    return {
        "lags": list(lags),
        "date_features": list(date_features),
        "target_transforms": [LocalStandardScaler()] if scale_target else None,
    }


def _lightgbm_params(params: dict, seed: int) -> dict:
    """LightGBM parameters: ``params`` plus a seed and no logging (LightGBM's Dask training ignores
    ``n_jobs``, with a warning: it uses the worker's threads)."""
    return {"verbosity": -1, **params, "random_state": seed}


def forecast_lightgbm_dask(
    series: pd.DataFrame,
    horizon: int,
    lags: Sequence[int],
    params: dict,
    client: Client,
    freq: str = "D",
    date_features: Sequence[str] = ("dayofweek",),
    scale_target: bool = True,
    seed: int = 0,
    npartitions: int | None = None,
) -> pd.DataFrame:
    """A global LightGBM trained on the Dask cluster of ``client`` and forecasting ``horizon`` steps.

    mlforecast's ``DistributedMLForecast`` computes the features (``lags``, ``date_features``, the
    per-series ``LocalStandardScaler`` when ``scale_target``) on the workers, partition by partition,
    and ``DaskLGBMForecast`` (``lightgbm.DaskLGBMRegressor``) trains data-parallel across the workers
    with ``params`` (LightGBM keyword arguments); the forecasts are recursive, on the workers too.
    Returns pandas ``unique_id, ds, LightGBM``, sorted by unique_id, ds.
    """
    from mlforecast.distributed import DistributedMLForecast
    from mlforecast.distributed.models.dask.lgb import DaskLGBMForecast

    frame = series[["unique_id", "ds", "y"]]
    n_series = frame["unique_id"].nunique()
    dask_frame = to_dask_frame(frame, npartitions or default_npartitions(client, n_series))
    model = DaskLGBMForecast(client=client, **_lightgbm_params(params, seed))
    mlf = DistributedMLForecast(
        models={LIGHTGBM_MODEL_NAME: model},
        freq=freq,
        engine=client,
        **_lightgbm_features(lags, date_features, scale_target),
    )
    with client.as_current():
        with warnings.catch_warnings():  # it always warns so: n_jobs is one of the estimator's parameters
            warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored", category=UserWarning)
            mlf.fit(dask_frame)
        result = client.compute(mlf.predict(horizon)).result()
    return _like_input(result, series, [LIGHTGBM_MODEL_NAME])


def forecast_lightgbm_local(
    series: pd.DataFrame,
    horizon: int,
    lags: Sequence[int],
    params: dict,
    freq: str = "D",
    date_features: Sequence[str] = ("dayofweek",),
    scale_target: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """``forecast_lightgbm_dask``'s configuration in process (``MLForecast`` + ``LGBMRegressor``)."""
    import lightgbm as lgb
    from mlforecast import MLForecast

    frame = series[["unique_id", "ds", "y"]]
    mlf = MLForecast(
        models={LIGHTGBM_MODEL_NAME: lgb.LGBMRegressor(**{"n_jobs": 1, **_lightgbm_params(params, seed)})},
        freq=freq,
        num_threads=1,
        **_lightgbm_features(lags, date_features, scale_target),
    )
    mlf.fit(frame)
    return _like_input(mlf.predict(horizon), series, [LIGHTGBM_MODEL_NAME])
