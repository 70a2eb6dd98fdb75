"""Jobs over the asset graph."""


import dagster as dg

ALL_ASSETS = dg.AssetSelection.all()
TUNING = dg.AssetSelection.assets("lightgbm_tuning")

# everything, tuning included (a first run, or a full rebuild)
full_pipeline_job = dg.define_asset_job(
    "full_pipeline_job", selection=ALL_ASSETS, description="Materialize the whole graph, Optuna tuning included."
)

# the nightly refresh: new data in, models refit with the stored best parameters, no new tuning trials
refresh_forecasts_job = dg.define_asset_job(
    "refresh_forecasts_job",
    selection=ALL_ASSETS - TUNING,
    description="Ingest the latest sales and refresh forecasts, reconciliation, metrics, SHAP and drift (no tuning).",
)

# retrain: resume the Optuna study, refit, backtest, re-choose the reconciliation, refresh everything after
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=TUNING.downstream(),
    description="Resume the Optuna study (bounded budget), refit LightGBM and refresh everything downstream.",
)
