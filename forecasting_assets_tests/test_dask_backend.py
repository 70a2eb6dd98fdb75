"""Scale-out on real engines: statsforecast and mlforecast through their Dask backends on a local
``dask.distributed`` cluster (2 worker processes on 127.0.0.1), against the in-process path."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

for _module, _what in [
    ("distributed", "dask.distributed (the local cluster)"),
    ("fugue_dask", "fugue[dask] (statsforecast's Dask backend)"),
    ("mlforecast.distributed", "mlforecast's distributed forecaster"),
    ("lightgbm", "LightGBM"),
]:
    pytest.importorskip(_module, reason=f"{_what} is not installed")

from forecasting_assets.models.distributed import (  # noqa: E402
    LIGHTGBM_MODEL_NAME,
    connect_dask,
    dask_dir,
    forecast_lightgbm_dask,
    forecast_lightgbm_local,
    forecast_statistical_dask,
    local_dask_cluster,
)
from forecasting_assets.models.statistical import statistical_models  # noqa: E402
from forecasting_assets.paths import data_dir  # noqa: E402

N_SERIES, N_DAYS, HORIZON, SEASON = 20, 200, 28, 7
LAGS = [7, 14, 21, 28]
LGB_PARAMS = {"n_estimators": 100, "learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 20}
WEEKLY = np.array([0.8, 0.7, 0.75, 0.9, 1.1, 1.5, 1.35])  # Monday … Sunday: weekends sell most


def weekly_sales(n_series: int = N_SERIES, n_days: int = N_DAYS, seed: int = 0) -> pd.DataFrame:
    """Daily unit sales (Poisson counts, so float32 holds them exactly) with a strong weekly season,
    a level per series from 10 to 200 a day and a mild trend."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range("2022-01-03", periods=n_days, freq="D")
    frames = []
    for i in range(n_series):
        weekly = WEEKLY * (1 + 0.1 * rng.normal(size=7))
        trend = 1 + 0.001 * rng.normal() * np.arange(n_days)
        y = rng.poisson(rng.uniform(10, 200) * weekly[ds.dayofweek] * trend)
        frames.append(pd.DataFrame({"unique_id": f"S{i:02d}", "ds": ds, "y": y.astype(float)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    """A 2-worker local cluster for the whole module, in the project home of the tests
    (the autouse fixture's per-test home is this same folder)."""
    home = tmp_path_factory.getbasetemp() / "project_home"
    home.mkdir(exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FORECASTING_ASSETS_HOME", str(home))
        with local_dask_cluster(n_workers=2, threads_per_worker=1) as dask_client:
            yield dask_client


def tasks_run(client, call):
    """``call()``'s result and the tasks the cluster's workers ran meanwhile (its task stream)."""
    from distributed import get_task_stream

    with get_task_stream(client=client) as stream:
        result = call()
    return result, stream.data


@pytest.fixture(scope="module")
def statistical(client):
    from statsforecast import StatsForecast

    series = weekly_sales()
    models = statistical_models(SEASON)
    on_dask, tasks = tasks_run(client, lambda: forecast_statistical_dask(series, models, "D", HORIZON, client))
    in_process = StatsForecast(models=statistical_models(SEASON), freq="D", n_jobs=1).forecast(df=series, h=HORIZON)
    return {"dask": on_dask, "local": in_process, "tasks": tasks}


def test_statsforecast_on_dask_equals_in_process(statistical):
    on_dask, local = statistical["dask"], statistical["local"]
    assert list(on_dask.columns) == list(local.columns) == ["unique_id", "ds", "SeasonalNaive", "AutoETS", "CrostonOptimized"]
    assert len(on_dask) == N_SERIES * HORIZON
    pd.testing.assert_frame_equal(on_dask[["unique_id", "ds"]], local[["unique_id", "ds"]])
    # the last week repeated: counts, exact in the backend's float32
    np.testing.assert_array_equal(on_dask["SeasonalNaive"].to_numpy(), local["SeasonalNaive"].to_numpy())
    for model in ["AutoETS", "CrostonOptimized"]:  # equal up to the float32 the Fugue backend returns
        np.testing.assert_allclose(on_dask[model].to_numpy(), local[model].to_numpy(), rtol=1e-6)


def test_statsforecast_ran_on_the_cluster(client, statistical):
    """Fails if the forecasts were computed in this process: the workers must have run the tasks."""
    tasks = statistical["tasks"]
    workers = set(client.nthreads())
    assert len(tasks) > 0
    assert {task["worker"] for task in tasks} <= workers
    # the workers are fresh processes: statsforecast is only imported there to run the models
    assert all(client.run(lambda: "statsforecast.models" in sys.modules).values())


def test_lightgbm_on_dask_close_to_in_process_and_beats_seasonal_naive(client):
    series = weekly_sales(seed=1)
    cutoff = series["ds"].max() - pd.Timedelta(days=HORIZON)
    train, test = series[series["ds"] <= cutoff], series[series["ds"] > cutoff].reset_index(drop=True)

    on_dask, tasks = tasks_run(client, lambda: forecast_lightgbm_dask(train, HORIZON, LAGS, LGB_PARAMS, client))
    local = forecast_lightgbm_local(train, HORIZON, LAGS, LGB_PARAMS)
    assert len(tasks) > 0 and {task["worker"] for task in tasks} <= set(client.nthreads())
    assert list(on_dask.columns) == list(local.columns) == ["unique_id", "ds", LIGHTGBM_MODEL_NAME]
    pd.testing.assert_frame_equal(on_dask[["unique_id", "ds"]], test[["unique_id", "ds"]])
    pd.testing.assert_frame_equal(local[["unique_id", "ds"]], test[["unique_id", "ds"]])

    # data-parallel training is not bit-identical to the in-process one: close, not equal (observed:
    # totals within 0.2 %, series totals within 1 %, per-series correlation >= 0.996, points within 8 %)
    dask_y, local_y = on_dask[LIGHTGBM_MODEL_NAME].to_numpy(), local[LIGHTGBM_MODEL_NAME].to_numpy()
    assert np.isfinite(dask_y).all()
    assert abs(dask_y.sum() / local_y.sum() - 1) < 0.02
    per_series = pd.DataFrame({"uid": on_dask["unique_id"], "dask": dask_y, "local": local_y}).groupby("uid")
    series_totals = per_series[["dask", "local"]].sum()
    assert ((series_totals["dask"] / series_totals["local"] - 1).abs() < 0.05).all()
    assert per_series[["dask", "local"]].apply(lambda g: np.corrcoef(g["dask"], g["local"])[0, 1]).min() > 0.95

    # and it is a real model: clearly better than the last week repeated on the held-back 28 days
    # (observed on this data: MAE 8.8 for both against 9.8; 0.86-0.92 of the naive MAE over seeds 1-3)
    last_week = train.groupby("unique_id").tail(SEASON)["y"].to_numpy().reshape(N_SERIES, SEASON)
    seasonal_naive = np.tile(last_week, HORIZON // SEASON).reshape(-1)
    actual = test["y"].to_numpy()
    naive_mae = np.abs(actual - seasonal_naive).mean()
    assert np.abs(actual - dask_y).mean() < 0.95 * naive_mae
    assert np.abs(actual - local_y).mean() < 0.95 * naive_mae


def test_cluster_files_stay_in_the_project(client):
    import dask

    root = dask_dir()
    assert root.is_relative_to(data_dir())
    local_dirs = client.run(lambda dask_worker: dask_worker.local_directory)
    assert len(local_dirs) == 2
    assert all(Path(folder).is_relative_to(root) and Path(folder).is_dir() for folder in local_dirs.values())
    assert all(Path(d).is_relative_to(root) for d in client.run(lambda: dask.config.get("temporary-directory")).values())
    # the workers' own temporary files (tempfile) are not in /tmp either
    assert not any(Path(d).is_relative_to("/tmp") for d in client.run(lambda: __import__("tempfile").gettempdir()).values())
    # an existing scheduler is reachable by address
    with connect_dask(client.scheduler.address) as other:
        assert set(other.nthreads()) == set(client.nthreads())
        assert other.submit(sum, [1, 2, 3]).result() == 6


def test_pipeline_statistical_models_on_the_cluster_equal_in_process(client):
    """The pipeline's own functions with ``dask_scheduler`` (what FORECASTING_DASK_SCHEDULER sets): the
    forecasts of base_forecasts and the backtest of backtest_forecasts equal the in-process ones."""
    from forecasting_assets.models.statistical import (
        STAT_MODELS,
        backtest_statistical_with_fallbacks,
        forecast_statistical_with_fallbacks,
    )

    series = weekly_sales(n_series=8, n_days=150, seed=3)
    address = client.scheduler.address
    local, _ = forecast_statistical_with_fallbacks(series, 14, "D", 7)
    (remote, fallbacks), tasks = tasks_run(client, lambda: forecast_statistical_with_fallbacks(series, 14, "D", 7, dask_scheduler=address))
    assert fallbacks.empty
    assert len(tasks) > 0  # it ran on the cluster, not in this process
    pd.testing.assert_frame_equal(remote[["unique_id", "ds"]], local[["unique_id", "ds"]])
    np.testing.assert_allclose(remote[STAT_MODELS].to_numpy(), local[STAT_MODELS].to_numpy(), rtol=1e-6, atol=1e-4)

    local_bt, _ = backtest_statistical_with_fallbacks(series, 14, 2, "D", 7)
    remote_bt, _ = backtest_statistical_with_fallbacks(series, 14, 2, "D", 7, dask_scheduler=address)
    pd.testing.assert_frame_equal(remote_bt[["unique_id", "ds", "cutoff"]], local_bt[["unique_id", "ds", "cutoff"]])
    np.testing.assert_allclose(remote_bt[["y", *STAT_MODELS]].to_numpy(), local_bt[["y", *STAT_MODELS]].to_numpy(), rtol=1e-6, atol=1e-4)
