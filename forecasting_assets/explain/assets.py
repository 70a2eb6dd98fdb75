"""Explain: SHAP values of the LightGBM forecasts, global importance, each series' top drivers."""


import dagster as dg
import pandas as pd

from forecasting_assets.explain.shap_values import explain, global_importance, sample_series, summary_plot_png, top_drivers
from forecasting_assets.metadata import frame_metadata, png_markdown
from forecasting_assets.models.lightgbm_global import FittedGlobalModel
from forecasting_assets.paths import outputs_dir
from forecasting_assets.storage.files import write_bytes


class ShapConfig(dg.Config):
    max_rows: int = 20_000  # forecast rows explained (whole series sampled beyond this)
    top_n: int = 5


@dg.multi_asset(
    outs={
        "shap_values": dg.AssetOut(description="SHAP value of every feature for every explained forecast (shap_value in std units of the series, shap_units in sales units).", group_name="explain"),
        "shap_global_importance": dg.AssetOut(description="Mean |SHAP| per feature over all explained forecasts, ranked.", group_name="explain"),
        "shap_top_drivers": dg.AssetOut(description="Each series' top drivers over the horizon (mean |SHAP| in sales units).", group_name="explain"),
    },
)
def shap_values(context: dg.AssetExecutionContext, config: ShapConfig, champion_model: FittedGlobalModel, forecast_features: pd.DataFrame):
    sample, n_series = sample_series(forecast_features, config.max_rows)
    values, base_value = explain(champion_model, sample)
    importance = global_importance(values)
    drivers = top_drivers(values, config.top_n)
    png = summary_plot_png(values)
    plot_path = write_bytes(png, outputs_dir() / "plots" / "shap_summary.png")
    yield dg.Output(
        values,
        output_name="shap_values",
        metadata={**frame_metadata(values), "explained_series": n_series, "sample_rows": len(sample), "base_value": base_value},
    )
    yield dg.Output(
        importance,
        output_name="shap_global_importance",
        metadata={
            "top_features": dg.MetadataValue.md(importance.head(10).to_markdown(index=False)),
            "summary_plot": png_markdown(png, "SHAP summary"),
            "plot_path": dg.MetadataValue.path(str(plot_path)),
        },
    )
    yield dg.Output(drivers, output_name="shap_top_drivers", metadata={"dagster/row_count": len(drivers)})
