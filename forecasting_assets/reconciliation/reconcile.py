"""Reconcile base forecasts with hierarchicalforecast and turn the result into long tables.

Methods: BottomUp; TopDown (forecast proportions) where the hierarchy is strictly hierarchical
(M5's grouped hierarchy is not, so it is skipped there, with the reason recorded); MinTrace ``ols`` and
``wls_struct`` (non-negative); MinTrace ``mint_shrink`` (non-negative) when residuals are available and
the hierarchy is small enough for its dense n×n covariance, else ``MinTraceSparse``.

Residuals for ``mint_shrink`` come from earlier rolling-origin windows (multi-step forecast errors),
never from the window being reconciled, and leave out the days the business was closed (``closed``): on M5
each Christmas Day's errors, every series' whole forecast at once, otherwise dominate the shrunk covariance
of every later window.

A method that fails is skipped with the reason, never the run: all base models are reconciled by a
method at once, and when that raises each model is tried alone, so that one model's degenerate residuals
do not cost the others the method. Output that is not finite counts as a failure, and a base model whose
own forecasts are not finite is not reconciled. BottomUp needs neither residuals nor a solver and works
whenever the base forecasts are finite. Failures seen with hierarchicalforecast 1.5: ``mint_shrink`` on
all-zero residuals (all-zero or constant series forecast exactly: "Insample residuals close to 0") and
on residuals of a single period (singular covariance: "SVD did not converge"); every method when a base
forecast column holds a NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting_assets.evaluation.metrics import without_days
from forecasting_assets.hierarchy.aggregation import summing_matrix, summing_smatrix, tags_from_keys

BASE_METHOD = "base"
MAX_REASON_CHARS = 300


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


DENSE_LIMIT = 1000  # series: above it, only the sparse methods (no dense n × n matrix or S, no non-negative QP per day)


def reconcilers(
    n_series: int, strictly_hierarchical: bool, with_residuals: bool, dense_limit: int = DENSE_LIMIT
) -> tuple[list[ReconcilerChoice], dict[str, str]]:
    """The reconcilers that apply here, and the ones skipped with the reason."""
    from hierarchicalforecast.methods import BottomUp, BottomUpSparse, MinTrace, MinTraceSparse, TopDown, TopDownSparse

    # BottomUpSparse gives BottomUp's numbers without the dense S (its columns are named BottomUp)
    chosen = [ReconcilerChoice("BottomUp", BottomUp() if n_series <= dense_limit else BottomUpSparse(), False)]
    skipped: dict[str, str] = {}
    if strictly_hierarchical:
        top_down = TopDown if n_series <= dense_limit else TopDownSparse
        chosen.append(ReconcilerChoice("TopDown_method-forecast_proportions", top_down(method="forecast_proportions"), False))
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
        # non-negative by hierarchicalforecast's heuristic (qp=False): the QP per day is what made the dense
        # non-negative MinTrace too slow; without it, M5-size forecasts came out negative for slow items
        chosen.append(ReconcilerChoice("MinTraceSparse_method-wls_struct", MinTraceSparse(method="wls_struct", nonnegative=True, qp=False), False))
        skipped["MinTrace"] = f"{n_series} series: dense n x n MinTrace replaced by MinTraceSparse"
    return chosen, skipped


def _failure(error: BaseException) -> str:
    return f"failed: {type(error).__name__}: {error}"[:MAX_REASON_CHARS]


def _reconciled_columns(
    choice: ReconcilerChoice, y_hat: pd.DataFrame, models: list[str], s_df: pd.DataFrame, tags: dict, residuals: pd.DataFrame | None
) -> pd.DataFrame:
    """unique_id, ds and one ``model/method`` column per model; raises when hierarchicalforecast does."""
    from hierarchicalforecast.core import HierarchicalReconciliation

    kwargs = {"Y_df": residuals[["unique_id", "ds", "y", *models]]} if choice.needs_residuals and residuals is not None else {}
    with warnings.catch_warnings():
        # qpsolvers converts the non-negative MinTrace QP to sparse on every solve and says so
        warnings.filterwarnings("ignore", message="Converted matrix")
        result = HierarchicalReconciliation(reconcilers=[choice.reconciler]).reconcile(
            Y_hat_df=y_hat[["unique_id", "ds", *models]], S_df=s_df, tags=tags, **kwargs
        )
    new_cols = [c for c in result.columns if c not in y_hat.columns]
    out = result[["unique_id", "ds", *new_cols]]
    return out.rename(columns={c: c.replace("_nonnegative-True", "").replace("BottomUpSparse", "BottomUp").replace("TopDownSparse", "TopDown") for c in new_cols})


def run_method(
    choice: ReconcilerChoice, y_hat: pd.DataFrame, models: list[str], s_df: pd.DataFrame, tags: dict, residuals: pd.DataFrame | None
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """One method on every model: its finite reconciled columns, and {model: reason} of the models it failed on.

    All models at once; when that raises, each model alone.
    """
    try:
        out = _reconciled_columns(choice, y_hat, models, s_df, tags, residuals)
    except Exception as error:  # degenerate residuals, singular matrices, a failed QP
        if len(models) == 1:
            return None, {models[0]: _failure(error)}
        outputs, failures = [], {}
        for model in models:
            alone, failed = run_method(choice, y_hat, [model], s_df, tags, residuals)
            failures.update(failed)
            if alone is not None:
                outputs.append(alone)
        if not outputs:
            return None, failures
        out = outputs[0]
        for alone in outputs[1:]:
            out = out.merge(alone, on=["unique_id", "ds"], how="outer")
        return out, failures
    columns = [c for c in out.columns if c not in ("unique_id", "ds")]
    non_finite = [c for c in columns if not np.isfinite(out[c].to_numpy(dtype=float)).all()]
    failures = {c.split("/", 1)[0]: "failed: non-finite reconciled forecasts (NaN or inf)" for c in non_finite}
    kept = [c for c in columns if c not in non_finite]
    return (out[["unique_id", "ds", *kept]] if kept else None), failures


def non_finite_models(base: pd.DataFrame, models: list[str]) -> dict[str, str]:
    """{model: reason} of the base models whose forecasts hold NaN or inf (hierarchicalforecast rejects them)."""
    reasons = {}
    for model in models:
        bad = int((~np.isfinite(base[model].to_numpy(dtype=float))).sum())
        if bad:
            reasons[model] = f"{bad} base forecasts are not finite (NaN or inf): {model} is not reconciled"
    return reasons


def reconcile(
    base: pd.DataFrame,
    models: list[str],
    series_keys: pd.DataFrame,
    structure: pd.DataFrame,
    residuals: pd.DataFrame | None = None,
    strictly_hierarchical: bool | None = None,
    closed: pd.DatetimeIndex | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Reconcile wide base forecasts (unique_id, ds, models...). Returns wide output and skipped methods.

    ``residuals``: unique_id, ds, y and the same model columns over earlier periods (or None); a method that
    uses them sees none of their rows on the ``closed`` days.
    ``skipped`` says why a forecast is missing, keyed by method (skipped or failed for every model),
    ``model/method`` (failed for that model only) or base model (not reconciled at all).
    """
    order = list(series_keys["unique_id"])
    if strictly_hierarchical is None:
        strictly_hierarchical = is_strictly_hierarchical(series_keys, structure)
    with_residuals = residuals is not None and len(residuals) > 0
    choices, skipped = reconcilers(len(order), strictly_hierarchical, with_residuals, dense_limit=DENSE_LIMIT)
    if with_residuals and closed is not None and any(choice.needs_residuals for choice in choices):
        residuals = without_days(residuals, closed)  # copied only where a method reads them
    # a large hierarchy's S stays sparse: dense, M5's would be 42,840 × 30,490 float64 (10 GB)
    s_df = summing_smatrix(structure, order) if len(order) > DENSE_LIMIT else summing_matrix(structure, order)
    tags = tags_from_keys(series_keys)
    y_hat = base[["unique_id", "ds", *models]].copy()
    unusable = non_finite_models(y_hat, models)
    skipped.update(unusable)
    usable = [m for m in models if m not in unusable]
    outputs = []
    for choice in choices if usable else []:
        out, failures = run_method(choice, y_hat, usable, s_df, tags, residuals if with_residuals else None)
        if out is not None:
            outputs.append(out)
        if failures and len(failures) == len(usable) and len(set(failures.values())) == 1:
            skipped[choice.name] = next(iter(failures.values()))
        else:
            skipped.update({f"{model}/{choice.name}": reason for model, reason in failures.items()})
    merged = y_hat
    for out in outputs:
        merged = merged.merge(out, on=["unique_id", "ds"], how="left")
    return merged, skipped


def skip_reason(skipped: dict[str, str], forecast: str) -> str | None:
    """Why the forecast ``model/method`` is missing, from a ``skipped`` dict of ``reconcile`` (None if not there)."""
    base_model, _, method = forecast.partition("/")
    for key in (forecast, method, base_model):
        if key in skipped:
            return f"{key}: {skipped[key]}"
    for key, reason in skipped.items():  # a family of methods, e.g. "TopDown" or "MinTrace"
        if method.startswith(key):
            return f"{key}: {reason}"
    return None


def to_long(wide: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """Wide frame -> id columns, model ('AutoETS/BottomUp'), base_model, method ('base' for base models), yhat."""
    value_cols = [c for c in wide.columns if c not in id_columns]
    long = wide.melt(id_vars=id_columns, value_vars=value_cols, var_name="model", value_name="yhat")
    # split each model name once, not once per row (at M5 size 14–29 M rows)
    names = pd.Index(value_cols, dtype=object)
    codes = names.get_indexer(long["model"])
    split = [name.split("/", 1) for name in names]
    long["base_model"] = np.array([parts[0] for parts in split], dtype=object)[codes]
    long["method"] = np.array([parts[1] if len(parts) > 1 else BASE_METHOD for parts in split], dtype=object)[codes]
    return long


def to_wide(long: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame:
    """Inverse of ``to_long``: one column per model (sorted by name), rows sorted by the id columns."""
    wide = _unmelt(long, id_columns)
    if wide is None:  # not in to_long's layout: a pivot (at M5 size 20 s and 5 GB more than the layout's path)
        wide = long.pivot_table(index=id_columns, columns="model", values="yhat", aggfunc="first", observed=True)
        wide.columns.name = None
        wide = wide.reset_index()
    return wide


def _same_values(left: np.ndarray, right: np.ndarray) -> bool:
    """Equal arrays, NaN equal to NaN in float arrays (an id column such as ``y`` may hold NaN)."""
    return bool(np.array_equal(left, right, equal_nan=left.dtype.kind == "f" and right.dtype.kind == "f"))


def _unmelt(long: pd.DataFrame, id_columns: list[str]) -> pd.DataFrame | None:
    """``to_wide`` of a frame in ``to_long``'s layout — one block of rows per model, every block with the same
    id rows in the same order — by slicing the blocks; None for any other layout."""
    models = long["model"].to_numpy()
    names = pd.unique(models)
    if not len(names) or len(long) % len(names):
        return None
    rows = len(long) // len(names)
    if not bool((models.reshape(len(names), rows) == names[:, None]).all()):
        return None
    arrays = {c: long[c].to_numpy() for c in id_columns}  # each block compared with the first, as arrays
    for k in range(1, len(names)):
        if not all(_same_values(arrays[c][k * rows:(k + 1) * rows], arrays[c][:rows]) for c in id_columns):
            return None
    ids = long[id_columns].iloc[:rows].reset_index(drop=True)
    if ids.duplicated().any():
        return None  # a pivot keeps the first of duplicated id rows
    values = long["yhat"].to_numpy()
    columns = {name: values[k * rows:(k + 1) * rows] for k, name in sorted(enumerate(names), key=lambda kn: kn[1])}
    columns = {name: column for name, column in columns.items() if not np.isnan(column).all()}  # as the pivot:
    wide = ids.assign(**columns)  # no all-NaN model column, no id row without any value
    if columns:
        wide = wide[wide[list(columns)].notna().any(axis=1)]
    return wide.sort_values(id_columns, kind="stable").reset_index(drop=True)


def reconcile_backtest(
    backtest: pd.DataFrame, models: list[str], series_keys: pd.DataFrame, structure: pd.DataFrame, closed: pd.DatetimeIndex | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Reconcile each backtest window after the first, with residuals from the windows before it (without
    their rows on the ``closed`` days; the window itself is reconciled whole).

    Returns a wide frame (unique_id, ds, cutoff, y, base and reconciled columns) for windows 2..n.
    A forecast that fails in some window is left out of every window (so that the methods are scored on
    the same windows), with the reason in ``skipped``.
    """
    strict = is_strictly_hierarchical(series_keys, structure)
    cutoffs = sorted(backtest["cutoff"].unique())
    frames, skipped_all = [], {}
    for k, cutoff in enumerate(cutoffs[1:], start=1):
        window = backtest[backtest["cutoff"] == cutoff]
        earlier = backtest[backtest["cutoff"].isin(cutoffs[:k])]
        reconciled, skipped = reconcile(window, models, series_keys, structure, residuals=earlier, strictly_hierarchical=strict, closed=closed)
        reconciled = reconciled.merge(window[["unique_id", "ds", "cutoff", "y"]], on=["unique_id", "ds"])
        frames.append(reconciled)
        for key, reason in skipped.items():
            if key not in skipped_all:
                window_note = f" (in the window cut at {pd.Timestamp(cutoff).date()})" if reason.startswith("failed") else ""
                skipped_all[key] = reason + window_note
    combined = pd.concat(frames, ignore_index=True)
    reconciled_columns = [c for c in combined.columns if "/" in c]
    incomplete = [c for c in reconciled_columns if combined[c].isna().any()]
    for column in incomplete:
        skipped_all.setdefault(column, f"left out of every window: {skip_reason(skipped_all, column) or 'missing in some window'}")
    return combined.drop(columns=incomplete), skipped_all
