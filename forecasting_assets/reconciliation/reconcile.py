"""Reconcile base forecasts with hierarchicalforecast and turn the result into long tables.

Methods: BottomUp; TopDown (forecast proportions) where the hierarchy is strictly hierarchical
(M5's grouped hierarchy is not, so it is skipped there, with the reason recorded); MinTrace ``ols`` and
``wls_struct`` (non-negative); MinTrace ``mint_shrink`` (non-negative) when residuals are available and
the hierarchy is small enough for its dense n×n covariance, else ``MinTraceSparse``.

Residuals for ``mint_shrink`` come from earlier rolling-origin windows (multi-step forecast errors),
never from the window being reconciled.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import pandas as pd

from forecasting_assets.hierarchy.aggregation import summing_matrix, tags_from_keys

BASE_METHOD = "base"


@dataclass
class ReconcilerChoice:
    name: str
    reconciler: object
    needs_residuals: bool


def is_strictly_hierarchical(series_keys: pd.DataFrame, structure: pd.DataFrame) -> bool:
    """True when the levels form a tree: every series lies inside exactly one series of each coarser level.

    (hierarchicalforecast's own ``is_strictly_hierarchical`` returned True for a grouped hierarchy whose
    states have one store each, and TopDown then produced incoherent forecasts, so we check directly.)
    """
    membership = structure.merge(series_keys[["unique_id", "level", "level_order"]], on="unique_id")
    levels = membership.groupby("level_order")["unique_id"].nunique().sort_values(kind="stable")
    ordered = list(levels.index)
    for coarse, fine in zip(ordered, ordered[1:]):
        parent_of_bottom = membership.loc[membership["level_order"] == coarse].set_index("bottom_id")["unique_id"]
        finer = membership.loc[membership["level_order"] == fine, ["unique_id", "bottom_id"]]
        parents = finer.assign(parent=parent_of_bottom.reindex(finer["bottom_id"]).to_numpy())
        if (parents.groupby("unique_id")["parent"].nunique() > 1).any():
            return False
    return True


def reconcilers(
    n_series: int, strictly_hierarchical: bool, with_residuals: bool, dense_limit: int = 3000
) -> tuple[list[ReconcilerChoice], dict[str, str]]:
    """The reconcilers that apply here, and the ones skipped with the reason."""
    from hierarchicalforecast.methods import BottomUp, MinTrace, MinTraceSparse, TopDown

    chosen = [ReconcilerChoice("BottomUp", BottomUp(), False)]
    skipped: dict[str, str] = {}
    if strictly_hierarchical:
        chosen.append(ReconcilerChoice("TopDown_method-forecast_proportions", TopDown(method="forecast_proportions"), False))
    else:
        skipped["TopDown"] = "the hierarchy is grouped (not strictly hierarchical); TopDown needs a tree"
    if n_series <= dense_limit:
        chosen.append(ReconcilerChoice("MinTrace_method-ols", MinTrace(method="ols", nonnegative=True), False))
        chosen.append(ReconcilerChoice("MinTrace_method-wls_struct", MinTrace(method="wls_struct", nonnegative=True), False))
        if with_residuals:
            chosen.append(ReconcilerChoice("MinTrace_method-mint_shrink", MinTrace(method="mint_shrink", nonnegative=True), True))
        else:
            skipped["MinTrace_method-mint_shrink"] = "no residuals from earlier windows for this window"
    else:
        chosen.append(ReconcilerChoice("MinTraceSparse_method-wls_struct", MinTraceSparse(method="wls_struct"), False))
        skipped["MinTrace"] = f"{n_series} series: dense n x n MinTrace replaced by MinTraceSparse"
    return chosen, skipped


def reconcile(
    base: pd.DataFrame,
    models: list[str],
    series_keys: pd.DataFrame,
    structure: pd.DataFrame,
    residuals: pd.DataFrame | None = None,
    strictly_hierarchical: bool | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Reconcile wide base forecasts (unique_id, ds, models...). Returns wide output and skipped methods.

    ``residuals``: unique_id, ds, y and the same model columns over earlier periods (or None).
    """
    from hierarchicalforecast.core import HierarchicalReconciliation

    order = list(series_keys["unique_id"])
    if strictly_hierarchical is None:
        strictly_hierarchical = is_strictly_hierarchical(series_keys, structure)
    choices, skipped = reconcilers(len(order), strictly_hierarchical, residuals is not None and len(residuals) > 0)
    s_df = summing_matrix(structure, order)
    tags = tags_from_keys(series_keys)
    y_hat = base[["unique_id", "ds", *models]].copy()
    kwargs = {}
    if residuals is not None and len(residuals):
        kwargs["Y_df"] = residuals[["unique_id", "ds", "y", *models]]
    outputs = []
    for choice in choices:
        hrec = HierarchicalReconciliation(reconcilers=[choice.reconciler])
        try:
            with warnings.catch_warnings():
                # qpsolvers converts the non-negative MinTrace QP to sparse on every solve and says so
                warnings.filterwarnings("ignore", message="Converted matrix")
                result = hrec.reconcile(Y_hat_df=y_hat, S_df=s_df, tags=tags, **(kwargs if choice.needs_residuals else {}))
        except Exception as error:  # degenerate residuals, singular matrices: record and go on
            skipped[choice.name] = f"failed: {type(error).__name__}: {error}"[:300]
            continue
        new_cols = [c for c in result.columns if c not in y_hat.columns]
        out = result[["unique_id", "ds", *new_cols]]
        outputs.append(out.rename(columns={c: c.replace("_nonnegative-True", "") for c in new_cols}))
    merged = y_hat
    for out in outputs:
        merged = merged.merge(out, on=["unique_id", "ds"], how="left")
    return merged, skipped


def to_long(wide: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """Wide frame -> id columns, model ('AutoETS/BottomUp'), base_model, method ('base' for base models), yhat."""
    value_cols = [c for c in wide.columns if c not in id_columns]
    long = wide.melt(id_vars=id_columns, value_vars=value_cols, var_name="model", value_name="yhat")
    parts = long["model"].str.split("/", n=1, expand=True)
    long["base_model"] = parts[0]
    long["method"] = parts[1].fillna(BASE_METHOD) if parts.shape[1] > 1 else BASE_METHOD
    return long


def to_wide(long: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """Inverse of ``to_long``: one column per model."""
    wide = long.pivot_table(index=id_columns, columns="model", values="yhat", aggfunc="first", observed=True)
    wide.columns.name = None
    return wide.reset_index()


def reconcile_backtest(
    backtest: pd.DataFrame, models: list[str], series_keys: pd.DataFrame, structure: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Reconcile each backtest window after the first, with residuals from the windows before it.

    Returns a wide frame (unique_id, ds, cutoff, y, base and reconciled columns) for windows 2..n.
    """
    strict = is_strictly_hierarchical(series_keys, structure)
    cutoffs = sorted(backtest["cutoff"].unique())
    frames, skipped_all = [], {}
    for k, cutoff in enumerate(cutoffs[1:], start=1):
        window = backtest[backtest["cutoff"] == cutoff]
        earlier = backtest[backtest["cutoff"].isin(cutoffs[:k])]
        reconciled, skipped = reconcile(window, models, series_keys, structure, residuals=earlier, strictly_hierarchical=strict)
        reconciled = reconciled.merge(window[["unique_id", "ds", "cutoff", "y"]], on=["unique_id", "ds"])
        frames.append(reconciled)
        skipped_all.update(skipped)
    return pd.concat(frames, ignore_index=True), skipped_all
