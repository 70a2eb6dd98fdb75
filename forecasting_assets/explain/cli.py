"""Print the SHAP drivers of one explained forecast: one series, one day, from the warehouse.

    python -m forecasting_assets.explain.cli --series CA_1/FOODS_1 --day 2016-05-23 [--top 10] [--warehouse PATH]

The drivers come from the ``shap_values`` view (SHAP of the LightGBM base forecast, in sales units), sorted
by |SHAP|. SHAP covers a sample of series (``ShapConfig.max_rows``), so not every series is there: the
error says which are. Exit codes: 0 printed, 2 usage error or the series/day is not explained.

Kept import-light: only duckdb and pandas, no Dagster.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

EXIT_NOT_FOUND = 2
_IDS_SHOWN = 8


class NotExplained(LookupError):
    """The series or day has no SHAP values in the warehouse (the message says what is available)."""


def _day(value: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(value)
    except (ValueError, TypeError) as error:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from error


def _has_view(con, name: str) -> bool:
    rows = con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal AND view_name = ?", [name]).fetchall()
    return bool(rows[0][0])


def _explained_ids(con) -> list[str]:
    return [row[0] for row in con.execute("SELECT DISTINCT unique_id FROM shap_values ORDER BY unique_id").fetchall()]


def _series_error(con, series: str) -> NotExplained:
    ids = _explained_ids(con)
    n_all = con.execute("SELECT count(*) FROM series_keys").fetchall()[0][0] if _has_view(con, "series_keys") else None
    if n_all is not None and len(ids) >= n_all:
        coverage = f"SHAP explains a sample of the series, here all {len(ids)} of them, so {series!r} is not a series id"
    else:
        of = f" of {n_all}" if n_all is not None else ""
        coverage = f"SHAP explains a sample of the series ({len(ids)}{of}), and {series!r} is not among them"
    close = difflib.get_close_matches(series, ids, n=_IDS_SHOWN, cutoff=0.5)
    shown = close or ids[:_IDS_SHOWN]
    more = "" if len(shown) == len(ids) else ", ..."
    label = "closest explained ids" if close else "explained ids include"
    return NotExplained(f"series {series!r} has no SHAP values: {coverage}. {label}: {', '.join(shown)}{more}")


def _day_error(con, series: str, day: pd.Timestamp) -> NotExplained:
    first, last, n_days = con.execute("SELECT min(ds), max(ds), count(DISTINCT ds) FROM shap_values WHERE unique_id = ?", [series]).fetchall()[0]
    return NotExplained(
        f"no SHAP values for series {series!r} on {day.date()}: its explained forecast days run from "
        f"{pd.Timestamp(first).date()} to {pd.Timestamp(last).date()} ({n_days} days, the forecast horizon)"
    )


def top_drivers_for(con, series: str, day: str | pd.Timestamp, top: int = 10) -> pd.DataFrame:
    """The ``top`` strongest SHAP drivers of ``series``' LightGBM forecast on ``day``, by |shap_units|.

    Columns: rank, feature, feature_value (what the model saw), shap_value (in the series' standard
    deviations), shap_units (signed, in sales units). ``con`` is a DuckDB connection to the warehouse.
    Raises ``NotExplained`` naming the series/day and what is available when there are no rows.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    if not _has_view(con, "shap_values"):
        raise NotExplained("the warehouse has no shap_values view: materialize the explain assets (shap_values) first")
    day = pd.Timestamp(day)
    table = con.execute(
        """
        SELECT feature, feature_value, shap_value, shap_units
        FROM shap_values
        WHERE unique_id = ? AND ds = ?
        ORDER BY abs(shap_units) DESC, feature
        LIMIT ?
        """,
        [series, day.to_pydatetime(), int(top)],
    ).df()
    if table.empty:
        known = con.execute("SELECT count(*) FROM shap_values WHERE unique_id = ?", [series]).fetchall()[0][0]
        raise _day_error(con, series, day) if known else _series_error(con, series)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def forecast_summary(con, series: str, day: str | pd.Timestamp) -> dict:
    """Σ SHAP over every feature, and the forecasts of that series and day: the LightGBM base forecast that
    SHAP explains (``base_forecasts``) and the served, reconciled one (``final_forecasts``) when present."""
    day = pd.Timestamp(day).to_pydatetime()
    total, n_features = con.execute(
        "SELECT sum(shap_units), count(*) FROM shap_values WHERE unique_id = ? AND ds = ?", [series, day]
    ).fetchall()[0]
    summary: dict = {"shap_sum": float(total or 0.0), "n_features": int(n_features), "lightgbm": None, "final": None, "final_model": None}
    if _has_view(con, "base_forecasts"):
        columns = {row[0] for row in con.execute("SELECT column_name FROM (DESCRIBE base_forecasts)").fetchall()}
        if "LightGBM" in columns:
            rows = con.execute('SELECT "LightGBM" FROM base_forecasts WHERE unique_id = ? AND ds = ?', [series, day]).fetchall()
            summary["lightgbm"] = float(rows[0][0]) if rows and rows[0][0] is not None else None
    if _has_view(con, "final_forecasts"):
        rows = con.execute("SELECT yhat, model FROM final_forecasts WHERE unique_id = ? AND ds = ?", [series, day]).fetchall()
        if rows:
            summary["final"], summary["final_model"] = float(rows[0][0]), str(rows[0][1])
    return summary


def _value(x: float) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.4g}"


def format_report(series: str, day: pd.Timestamp, drivers: pd.DataFrame, summary: dict) -> str:
    width = max(len("feature"), *(len(f) for f in drivers["feature"]))
    lines = [
        f"SHAP drivers of the LightGBM forecast of {series} on {pd.Timestamp(day).date()} (SHAP in units of sales, sorted by |SHAP|)",
        "",
        f"  {'#':>3}  {'feature':<{width}}  {'value seen':>12}  {'SHAP (units)':>13}",
    ]
    for row in drivers.itertuples(index=False):
        lines.append(f"  {row.rank:>3}  {row.feature:<{width}}  {_value(row.feature_value):>12}  {row.shap_units:>+13.3f}")
    shown = float(drivers["shap_units"].sum())
    rest = summary["shap_sum"] - shown
    n_rest = summary["n_features"] - len(drivers)
    if n_rest > 0:
        lines.append(f"  {'':>3}  {f'({n_rest} other features)':<{width}}  {'':>12}  {rest:>+13.3f}")
    lines.append(f"  {'':>3}  {'sum of SHAP, all ' + str(summary['n_features']) + ' features':<{width}}  {'':>12}  {summary['shap_sum']:>+13.3f}")
    lines.append("")
    if summary["lightgbm"] is not None:
        expected = summary["lightgbm"] - summary["shap_sum"]
        lines.append(f"LightGBM forecast (base_forecasts): {summary['lightgbm']:,.3f} = expected value {expected:,.3f} {summary['shap_sum']:+,.3f} (sum of SHAP)")
    if summary["final"] is not None:
        lines.append(f"served forecast (final_forecasts, {summary['final_model']}): {summary['final']:,.3f}")
    if summary["lightgbm"] is None and summary["final"] is None:
        lines.append("no forecast row found for this series and day in base_forecasts or final_forecasts")
    lines.append("(values seen are the model's inputs: lags and rolling means are on the series' standardized scale)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting_assets.explain.cli",
        description="Print the top SHAP drivers (in units of sales) of one series' LightGBM forecast on one day.",
    )
    parser.add_argument("--series", required=True, help="unique_id, e.g. CA_1/FOODS_1 (SHAP covers a sample of series)")
    parser.add_argument("--day", required=True, type=_day, help="forecast day, YYYY-MM-DD")
    parser.add_argument("--top", type=int, default=10, help="number of drivers to print (default 10)")
    parser.add_argument("--warehouse", type=Path, default=None, help="DuckDB warehouse (default: <project home>/data/warehouse.duckdb)")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")

    from forecasting_assets.paths import warehouse_path

    warehouse = args.warehouse or warehouse_path()
    if not Path(warehouse).exists():
        print(f"error: warehouse not found: {warehouse} (run the pipeline, or pass --warehouse / set FORECASTING_ASSETS_HOME)", file=sys.stderr)
        return EXIT_NOT_FOUND

    import duckdb

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        drivers = top_drivers_for(con, args.series, args.day, args.top)
        summary = forecast_summary(con, args.series, args.day)
    except NotExplained as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_FOUND
    finally:
        con.close()
    print(format_report(args.series, args.day, drivers, summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
