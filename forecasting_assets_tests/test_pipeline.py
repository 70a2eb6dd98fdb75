"""The whole graph materialized in-process on tiny demo data, with its last 28 days held back.

Asserts properties that would catch a broken pipeline: coherence, non-negativity, horizon and series
counts, metrics for every level, LightGBM and the chosen forecast beating seasonal naive on the
held-back window, the warehouse answering queries, MLflow runs finished with params/metrics/model.
"""

import duckdb
import pandas as pd
import pytest

from forecasting_assets.evaluation.metrics import OVERALL_LEVEL
from forecasting_assets_tests.conftest import TINY_HORIZON
from forecasting_assets.hierarchy.aggregation import check_coherence

pytestmark = pytest.mark.slow

EXPECTED_TABLES = [
    "raw_sales", "validated_sales", "sales_quarantine", "sales_calendar", "hierarchical_series",
    "hierarchy_structure", "series_keys", "series_features", "exogenous_features", "base_forecasts",
    "forecast_features", "backtest_forecasts", "reconciled_backtest", "backtest_metrics",
    "backtest_series_metrics", "reconciled_forecasts", "final_forecasts", "forecast_metrics",
    "shap_values", "shap_global_importance", "shap_top_drivers", "drift_report",
]


def _warehouse(project):
    return duckdb.connect(str(project["home"] / "data" / "warehouse.duckdb"), read_only=True)


def _table(project, name: str) -> pd.DataFrame:
    con = _warehouse(project)
    try:
        return con.execute(f"SELECT * FROM {name}").df()
    finally:
        con.close()


def test_every_asset_and_check_succeeds(tiny_project):
    result = tiny_project["result"]
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["reconciled_forecasts_are_coherent"]
    assert checks["reconciled_forecasts_are_non_negative"]
    assert checks["chosen_forecast_beats_seasonal_naive"]


def test_warehouse_answers_queries_for_every_table(tiny_project):
    con = _warehouse(tiny_project)
    try:
        views = {row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
        assert set(EXPECTED_TABLES) <= views
        for name in EXPECTED_TABLES:
            if name != "sales_quarantine":
                assert con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] > 0, name
    finally:
        con.close()


def test_final_forecasts_cover_every_series_and_the_horizon(tiny_project):
    final = _table(tiny_project, "final_forecasts")
    keys = _table(tiny_project, "series_keys")
    assert final["unique_id"].nunique() == len(keys) == 75  # 12 M5 levels of 16 item x store series
    assert final.groupby("unique_id").size().eq(28).all()
    assert final["ds"].min() == pd.Timestamp(tiny_project["train_end"]) + pd.Timedelta(days=1)
    assert (final["yhat"] >= 0).all()
    assert final["model"].nunique() == 1


def test_reconciled_forecasts_are_coherent(tiny_project):
    reconciled = _table(tiny_project, "reconciled_forecasts")
    structure = _table(tiny_project, "hierarchy_structure")
    coherent = reconciled[reconciled["method"] != "base"]
    wide = coherent.pivot_table(index=["unique_id", "ds"], columns="model", values="yhat").reset_index()
    gaps = check_coherence(wide, structure, [c for c in wide.columns if c not in ("unique_id", "ds")])
    assert gaps["max_abs_gap"].max() <= 1e-6
    assert {"BottomUp", "MinTrace_method-ols", "MinTrace_method-wls_struct", "MinTrace_method-mint_shrink"} <= set(coherent["method"])
    # the base forecasts are not coherent by themselves, which is why reconciliation exists
    base = reconciled[reconciled["method"] == "base"].pivot_table(index=["unique_id", "ds"], columns="model", values="yhat").reset_index()
    assert check_coherence(base, structure, ["LightGBM"])["max_abs_gap"].max() > 1e-3


def test_metrics_cover_every_level_for_backtest_and_holdout(tiny_project):
    metrics = _table(tiny_project, "forecast_metrics")
    keys = _table(tiny_project, "series_keys")
    for evaluation in ("backtest", "holdout"):
        part = metrics[metrics["evaluation"] == evaluation]
        assert set(keys["level"]) | {OVERALL_LEVEL} == set(part["level"])
        for model in ("SeasonalNaive", "AutoETS", "CrostonOptimized", "LightGBM"):
            assert part.loc[part["model"] == model, "wrmsse"].notna().all(), (evaluation, model)
    assert metrics["is_chosen"].any()


def test_lightgbm_and_chosen_forecast_beat_seasonal_naive_on_the_held_back_window(tiny_project):
    metrics = _table(tiny_project, "forecast_metrics")
    overall = metrics[(metrics["evaluation"] == "holdout") & (metrics["level"] == OVERALL_LEVEL)].set_index("model")["wrmsse"]
    chosen = metrics.loc[metrics["is_chosen"], "model"].iloc[0]
    assert overall["LightGBM"] < overall["SeasonalNaive"]
    assert overall[chosen] < overall["SeasonalNaive"]


def test_sales_change_features_of_the_held_back_days_read_only_training_days(tiny_project):
    """The store and item sales changes over the held-back window equal those computed from the training days
    alone: the days held back (in validated_sales, as the truth) never reach a feature."""
    from forecasting_assets.features.exogenous import parent_change_exogenous

    exogenous = _table(tiny_project, "exogenous_features")
    sales, keys = _table(tiny_project, "validated_sales"), _table(tiny_project, "series_keys")
    train_end = pd.Timestamp(tiny_project["train_end"])
    assert sales["ds"].max() > train_end  # the truth is there to leak
    bottom_columns = keys.loc[keys["level_order"].idxmax(), "level"].split("/")
    columns = [f"{c}_{kind}_change" for c in bottom_columns for kind in ("recent", "yearly")]
    assert set(columns) <= set(exogenous.columns)
    expected = parent_change_exogenous(sales[sales["ds"] <= train_end], keys, bottom_columns, 7, TINY_HORIZON, "D")
    held_back = exogenous[exogenous["ds"] > train_end].merge(expected, on=["unique_id", "ds"], suffixes=("", "_expected"))
    assert held_back["ds"].nunique() == TINY_HORIZON and held_back["unique_id"].nunique() == len(keys)
    for column in columns:
        assert (held_back[column] - held_back[f"{column}_expected"]).abs().max() < 1e-6, column
    assert held_back[columns].abs().to_numpy().max() > 0  # not all zero


def test_shap_values_explain_every_feature_of_the_forecasts(tiny_project):
    shap_values = _table(tiny_project, "shap_values")
    features = _table(tiny_project, "forecast_features")
    importance = _table(tiny_project, "shap_global_importance")
    assert set(shap_values["feature"]) == set(importance["feature"])
    assert shap_values.groupby(["unique_id", "ds"]).size().nunique() == 1
    # one explained row per forecast, whatever the number of strategies (members) whose feature rows are stored;
    # whole series, as many as fit the budget of the run's max_rows divided among the LightGBM models of a member
    from forecasting_assets.explain.shap_values import sample_series

    explained = shap_values[["unique_id", "ds"]].drop_duplicates()
    forecasts = features[["unique_id", "ds"]].drop_duplicates()
    budget = tiny_project["shap_rows"] // tiny_project["lightgbm_models"]
    assert len(forecasts) > budget  # the budget is in play
    sample, _ = sample_series(features, budget)
    assert set(map(tuple, explained.to_numpy())) == set(map(tuple, sample[["unique_id", "ds"]].drop_duplicates().to_numpy()))
    assert len(explained) <= budget and explained.groupby("unique_id").size().nunique() == 1
    assert (tiny_project["home"] / "data" / "outputs" / "plots" / "shap_summary.png").stat().st_size > 1000


def test_drift_report_and_html_exist(tiny_project):
    drift = _table(tiny_project, "drift_report")
    assert {"column", "score", "drifted", "drift_share"} <= set(drift.columns)
    assert (tiny_project["home"] / "data" / "outputs" / "reports" / "drift_report.html").stat().st_size > 10_000


def test_mlflow_run_has_params_metrics_model_and_finished(tiny_project):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tiny_project['home'] / 'data' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("forecasting_assets")
    runs = client.search_runs([experiment.experiment_id])
    assert all(r.info.status == "FINISHED" for r in runs)  # later tests may add refresh runs
    matching = [r for r in runs if r.data.tags.get("dagster_run_id") == tiny_project["result"].run_id]
    assert len(matching) == 1  # one MLflow run per Dagster run
    run = matching[0]
    assert "lgbm_num_leaves" in run.data.params and "optuna_best_trial" in run.data.params
    assert any(k.startswith("backtest_wrmsse___overall__") for k in run.data.metrics)
    assert run.data.tags["dagster_run_id"] == tiny_project["result"].run_id
    logged = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert {"lightgbm_model", "global_model"} <= {m.name for m in logged}  # the booster, and the registered pyfunc
    # the averaged models: their number, and each one's parameters and seed
    assert run.data.params["lightgbm_models_per_strategy"] == str(tiny_project["lightgbm_models"])
    models = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/lightgbm_models.json")
    assert models["seeds"] == list(range(tiny_project["lightgbm_models"])) and len(models["parameter_sets"]) == tiny_project["lightgbm_models"]


def test_optuna_study_is_persisted_and_resumed(tiny_project):
    import optuna

    storage = f"sqlite:///{tiny_project['home'] / 'data' / 'optuna.db'}"
    studies = optuna.get_all_study_summaries(storage)
    assert len(studies) == 1 and studies[0].n_trials == 2


def test_ui_metadata_has_plots_and_tables_for_each_stage(tiny_project):
    result = tiny_project["result"]

    def metadata(node: str, asset: str | None = None) -> dict:
        events = result.asset_materializations_for_node(node)
        return next(e.metadata for e in events if asset is None or e.asset_key.to_user_string() == asset)

    png = "data:image/png;base64,"
    reconciled = metadata("reconciled_forecasts")
    assert png in reconciled["forecast_plot"].value and "baseline" in reconciled["backtest_scores"].value and "chosen" in reconciled["backtest_scores"].value
    assert png in metadata("forecast_quantiles")["forecast_plot"].value
    shap = metadata("shap_values", "shap_global_importance")
    assert png in shap["summary_plot"].value and png in shap["waterfall_plot"].value
    assert (tiny_project["home"] / "data" / "outputs" / "plots" / "shap_waterfall.png").stat().st_size > 5_000
    drift = metadata("drift_report")
    assert {"drift_share", "drifted_columns", "report"} <= set(drift)
    assert "SeasonalNaive" in metadata("forecast_metrics")["backtest_wrmsse_by_level"].value
