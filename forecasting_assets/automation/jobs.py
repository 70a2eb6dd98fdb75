"""Jobs over the asset graph."""


import dagster as dg

# landed_sales is partitioned by landing batch: the landing sensor materializes it, one batch per run
LANDED = dg.AssetSelection.assets("landed_sales")
APPROVAL = dg.AssetSelection.assets("model_approval")
ALL_ASSETS = dg.AssetSelection.all() - LANDED - APPROVAL
TUNING = dg.AssetSelection.assets("lightgbm_tuning")

# what a nightly refresh does not touch: tuning, refitting, backtests and the promotion gate
TRAINING = dg.AssetSelection.assets(
    "lightgbm_tuning", "lightgbm_model", "backtest_forecasts", "lightgbm_strategy", "reconciled_backtest", "backtest_metrics",
    "backtest_series_metrics", "series_features", "model_promotion",
)

# everything, tuning included (a first run, or a full rebuild)
# With run monitoring on (dagster.yaml), a run past its max runtime is terminated and marked failed: a run whose
# worker was killed (SIGKILL, out of memory) would otherwise stay STARTED and hold the one-run queue forever.
def max_runtime(hours: float) -> dict[str, str]:
    return {"dagster/max_runtime": str(int(hours * 3600))}


full_pipeline_job = dg.define_asset_job(
    "full_pipeline_job", selection=ALL_ASSETS, description="Materialize the whole graph, Optuna tuning and the promotion gate included.",
    tags=max_runtime(4),
)

# the nightly refresh: latest data in, forecasts from the champion model (no refit), metrics, SHAP, drift
refresh_forecasts_job = dg.define_asset_job(
    "refresh_forecasts_job",
    selection=ALL_ASSETS - TRAINING,
    description="Forecast from the latest sales with the current champion (no retrain), reconcile with the chosen method, then metrics, SHAP, drift.",
    # a chain of short steps: one process saves the ~5 s each step would spend starting and importing
    executor_def=dg.in_process_executor,
    tags=max_runtime(1),
)

# retrain: resume the Optuna study, refit, backtest, re-choose the reconciliation, pass the promotion gate
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=TUNING.downstream() - APPROVAL,
    description="Resume the Optuna study (bounded budget), refit LightGBM, backtest, re-choose the reconciliation, promote only if better.",
    tags=max_runtime(3),
)

# one landing batch (a partition of landed_sales); the landing sensor launches it
landing_ingest_job = dg.define_asset_job(
    "landing_ingest_job", selection=LANDED, description="Read one accepted landing file (a landed_sales partition).",
    executor_def=dg.in_process_executor,
    tags=max_runtime(0.25),
)

# a human approves the model waiting with alias 'challenger'
approve_model_job = dg.define_asset_job(
    "approve_model_job", selection=APPROVAL, description="Promote the model waiting for approval to champion.",
    tags=max_runtime(0.25),
)
