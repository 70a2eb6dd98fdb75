"""``python -m forecasting_assets.report``: where the outputs are and how accurate the forecasts were."""

from __future__ import annotations

import argparse

import pandas as pd

from forecasting_assets.evaluation.metrics import OVERALL_LEVEL, accuracy_table_markdown
from forecasting_assets.paths import data_dir, outputs_dir, warehouse_path
from forecasting_assets.storage.warehouse import connect


def accuracy_table(metrics: pd.DataFrame, evaluation: str) -> str:
    table = metrics[metrics["evaluation"] == evaluation]
    chosen = table.loc[table["is_chosen"], "model"].iloc[0]
    shown = table[table["model"].isin(["SeasonalNaive", "AutoETS", "CrostonOptimized", "LightGBM", chosen])]
    return accuracy_table_markdown(shown[["level", "model", "wrmsse", "mean_rmsse", "mean_mase", "n_series"]], baseline="SeasonalNaive")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.parse_args(argv)
    con = connect()
    try:
        tables = [row[0] for row in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal ORDER BY 1").fetchall()]
        print(f"Outputs: {outputs_dir()}  (one Parquet/JSON/pickle file per asset)")
        print(f"Warehouse: {warehouse_path()}  (DuckDB views; open it read-only)")
        print(f"MLflow store: sqlite:///{data_dir() / 'mlflow.db'}   Dagster home: {data_dir() / 'dagster_home'}")
        print(f"Drift report: {outputs_dir() / 'reports' / 'drift_report.html'}   SHAP plot: {outputs_dir() / 'plots' / 'shap_summary.png'}")
        print("\nTables:")
        for name in tables:
            count = con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
            print(f"  {name:<28} {count:>10,} rows")
        metrics = con.execute("SELECT * FROM forecast_metrics").df()
    finally:
        con.close()
    chosen = metrics.loc[metrics["is_chosen"], "model"].iloc[0]
    print(f"\nChosen forecast (lowest backtest WRMSSE among reconciled ones): {chosen}")
    for evaluation in metrics["evaluation"].unique():
        print(f"\nWRMSSE per level ({evaluation}; lower is better; '{OVERALL_LEVEL}' = mean over levels):")
        print(accuracy_table(metrics, evaluation))


if __name__ == "__main__":
    main()
