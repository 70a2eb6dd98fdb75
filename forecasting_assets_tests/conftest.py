"""Shared fixtures: a tiny demo project materialized once, in a temporary project home."""

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pytest

from forecasting_assets.paths import shared_m5_folder

TINY_HORIZON = 28
TINY_LIGHTGBM_MODELS = 2  # averaged per strategy (the default is 3; one would leave the averaging untested end to end)
TINY_SHAP_ROWS = 2_000  # SHAP's budget of explained forecasts, divided among the models: under the tiny project's 2,100


@pytest.fixture(autouse=True)
def _project_home_is_temporary(tmp_path_factory, monkeypatch):
    """No test writes into the repository's data/ folder (or $HOME, or /tmp outside pytest's folder)."""
    home = tmp_path_factory.getbasetemp() / "project_home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(home))


@pytest.fixture(autouse=True)
def _one_lightgbm_model_where_built_from_the_environment(monkeypatch):
    """Runs configured from the environment (build_resources: the daemon, code servers, subprocesses) fit one
    LightGBM model per strategy instead of the default three: a third of the fitting, for test time.
    ``tiny_project`` averages two (every averaged-model path of the graph, at two thirds of the default's
    fitting); the averaged model itself is tested in test_models.py."""
    monkeypatch.setenv("FORECASTING_LIGHTGBM_MODELS", "1")


@pytest.fixture(scope="session")
def m5_folder() -> Path:
    folder = shared_m5_folder()
    if not (folder / "store_dept_sales_d1_d1941.csv.gz").exists():
        pytest.skip(f"real M5 data not found at {folder} (the shared data folder beside the repository)")
    return folder


def tiny_run_config(project: dict, asset_names: Iterable[str]) -> dict:
    """The tiny project's own op config (SHAP's budget, ...) for a later run of some of its assets. Every run on the
    shared project passes it, so the tables stay what the tests that read them afterwards expect."""
    wanted = set(asset_names)
    return {"ops": {name: config for name, config in project["ops_config"].items() if name in wanted}}


def run_job(defs, job_name: str, instance, run_config: dict | None = None, tags: dict | None = None):
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(instance=instance, run_config=run_config or {}, raise_on_error=True, tags=tags)


@pytest.fixture(scope="session")
def tiny_project(tmp_path_factory):
    """Generate tiny demo data, hold out its last 28 days, and materialize the whole graph once."""
    import dagster as dg

    from forecasting_assets.definitions import build_definitions
    from forecasting_assets.demo_data import write_demo
    from forecasting_assets.resources import ForecastSettings, SalesSource

    home = tmp_path_factory.mktemp("tiny_home")
    previous = os.environ.get("FORECASTING_ASSETS_HOME")
    os.environ["FORECASTING_ASSETS_HOME"] = str(home)
    try:
        source = home / "data" / "demo"
        write_demo(source, shape="tiny", seed=7)
        calendar = pd.read_csv(source / "calendar.csv")
        n_days = sum(1 for c in pd.read_csv(source / "sales.csv", nrows=1).columns if c.startswith("d_"))
        train_end = str(pd.Timestamp(calendar["date"].iloc[n_days - 1 - TINY_HORIZON]).date())
        defs = build_definitions(
            {
                "source": SalesSource(folder=str(source), landing_folder=str(home / "data" / "landing")),
                "settings": ForecastSettings(train_end=train_end, n_jobs=1, lightgbm_models=TINY_LIGHTGBM_MODELS),
            }
        )
        instance = dg.DagsterInstance.ephemeral(tempdir=str(home / "dagster_home"))
        ops = {"lightgbm_tuning": {"config": {"n_trials": 2, "timeout_s": 60}}, "shap_values": {"config": {"max_rows": TINY_SHAP_ROWS}}}
        result = run_job(defs, "full_pipeline_job", instance, {"ops": ops})
        yield {"home": home, "defs": defs, "instance": instance, "result": result, "train_end": train_end, "source": source,
               "lightgbm_models": TINY_LIGHTGBM_MODELS, "shap_rows": TINY_SHAP_ROWS, "ops_config": ops}
        instance.dispose()
    finally:
        if previous is None:
            os.environ.pop("FORECASTING_ASSETS_HOME", None)
        else:
            os.environ["FORECASTING_ASSETS_HOME"] = previous
