"""Explain: SHAP values of the LightGBM forecasts, global importance, each series' top drivers."""


from typing import Any

import dagster as dg
import pandas as pd

from forecasting_assets.explain.shap_values import (
    explain,
    global_importance,
    sample_series,
    summary_plot_png,
    top_drivers,
    waterfall_plot_png,
)
from forecasting_assets.metadata import frame_metadata, png_markdown
from forecasting_assets.models.lightgbm_global import MODEL_NAME, GlobalModel, boosters
from forecasting_assets.paths import outputs_dir
from forecasting_assets.spec import TOTAL_ID
from forecasting_assets.storage.files import write_bytes


class ShapConfig(dg.Config):
    # forecast rows explained per LightGBM model of a member (whole series sampled beyond this): a member that
    # averages 3 models explains a third as many forecasts, so the cost stays that of 5,000 rows of one model.
    # At M5 size (one model), 5,000 rows (178 series) took 12 s against 51 s for 20,000 (714 series), with the
    # same top-10 features and a Spearman rank correlation of 0.99 of every feature's mean |SHAP| between the two
    max_rows: int = 5_000
    top_n: int = 5


@dg.multi_asset(
    outs={
        "shap_values": dg.AssetOut(description="SHAP value of every feature for every explained forecast (shap_value in std units of the series, shap_units in sales units; base_value: the expected value of the model that made the forecast).", group_name="explain"),
        "shap_global_importance": dg.AssetOut(description="Mean |SHAP| per feature over all explained forecasts, ranked.", group_name="explain"),
        "shap_top_drivers": dg.AssetOut(description="Each series' top drivers over the horizon (mean |SHAP| in sales units).", group_name="explain"),
    },
)
def shap_values(
    context: dg.AssetExecutionContext,
    config: ShapConfig,
    champion_model: GlobalModel,
    forecast_features: pd.DataFrame,
    base_forecasts: pd.DataFrame,
    mlflow: dg.ResourceParam[Any],
):
    models = len(boosters(champion_model.mlf.models_[MODEL_NAME]))  # TreeSHAP runs once per model
    sample, n_series = sample_series(forecast_features, max(1, config.max_rows // models))
    values, base_value = explain(champion_model, sample)
    importance = global_importance(values)
    drivers = top_drivers(values, config.top_n)
    png = summary_plot_png(values)
    plot_path = write_bytes(png, outputs_dir() / "plots" / "shap_summary.png")
    # one explained forecast in detail: the first day of the top-level series (or of the first explained one)
    top_id = TOTAL_ID if (values["unique_id"] == TOTAL_ID).any() else values["unique_id"].iloc[0]
    day = values.loc[values["unique_id"] == top_id, "ds"].min()
    point = base_forecasts.loc[(base_forecasts["unique_id"] == top_id) & (base_forecasts["ds"] == day), MODEL_NAME]
    waterfall = waterfall_plot_png(values, top_id, day, float(point.iloc[0]))
    waterfall_path = write_bytes(waterfall, outputs_dir() / "plots" / "shap_waterfall.png")
    for path in (plot_path, waterfall_path):
        mlflow.log_artifact(str(path), "plots")
    yield dg.Output(
        values,
        output_name="shap_values",
        metadata={**frame_metadata(values), "explained_series": n_series, "sample_rows": len(sample), "models_per_member": models, "base_value": base_value},
    )
    yield dg.Output(
        importance,
        output_name="shap_global_importance",
        metadata={
            "top_features": dg.MetadataValue.md(importance.head(10).to_markdown(index=False)),
            "summary_plot": png_markdown(png, "SHAP summary"),
            "waterfall_plot": png_markdown(waterfall, f"SHAP waterfall of {top_id} on {pd.Timestamp(day).date()}"),
            "plot_path": dg.MetadataValue.path(str(plot_path)),
        },
    )
    yield dg.Output(drivers, output_name="shap_top_drivers", metadata={"dagster/row_count": len(drivers)})
