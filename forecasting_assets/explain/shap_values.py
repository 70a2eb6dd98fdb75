"""SHAP values of the LightGBM forecasts (shap's TreeExplainer, exact for tree models).

The model predicts each series' target divided by its linear trend and standardized by its mean and
standard deviation, so raw SHAP values are in standard deviations. A model of several members
(strategies, each the mean of its LightGBM models) forecasts their mean; its SHAP values are the mean of
the models' (SHAP values add up over models). Multiplying by the series' standard deviation and its trend
on that day turns them into units of sales, exactly:
``forecast = trend * (mean + std * (base_value + Σ shap))``. Both are stored, with the base value of the
model that made each forecast (a partitioned model has one per part: ``PartitionedGlobalModel``).
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from forecasting_assets.models.lightgbm_global import MODEL_NAME, PartitionedGlobalModel, boosters
from forecasting_assets.spec import TOTAL_ID

ID_COLUMNS = ("unique_id", "ds")


def sample_series(features: pd.DataFrame, max_rows: int, seed: int = 0) -> tuple[pd.DataFrame, int]:
    """A uniform random sample of whole series (all horizon steps) within ``max_rows`` explained forecasts
    (each forecast has a feature row per member of the model).

    The grand total (``Total``) is always among them when present. The sample depends on the set of series
    and the seed only, never on the rows' order (a table read back from the warehouse may be ordered otherwise).
    """
    ids = np.sort(features["unique_id"].drop_duplicates().to_numpy())
    forecasts = features["ds"].nunique() * len(ids) if "strategy" in features.columns else len(features)  # one per member
    rows_per_series = max(1, forecasts // max(1, len(ids)))
    n_keep = max(1, max_rows // rows_per_series)
    if n_keep >= len(ids):
        return features, len(ids)
    keep: set = {TOTAL_ID} if TOTAL_ID in set(ids) else set()
    others = np.array([i for i in ids if i not in keep])
    rng = np.random.default_rng(seed)
    keep |= set(rng.choice(others, size=n_keep - len(keep), replace=False))
    return features[features["unique_id"].isin(keep)], len(keep)


def explain(model, features: pd.DataFrame) -> tuple[pd.DataFrame, float]:
    """Long SHAP table: unique_id, ds, feature, feature_value, shap_value, shap_units, base_value; and the
    base value (a partitioned model: the mean of its parts' over the explained rows; the table has each
    row's own, and each part's rows are explained with that part's models, as they were forecast).

    ``model`` is a ``FittedGlobalModel`` or a ``PartitionedGlobalModel``; ``features`` the rows its members saw at forecast time (a
    ``strategy`` column names the member; without it every row is the first member's). The model forecasts
    the mean of its M members, each the mean of its S LightGBM models, and SHAP values are additive over
    models: each feature's value is the sum of the M × S models' SHAP values divided by M × S (0 for a
    member without that feature), the base value the mean of their base values. So
    ``forecast = mean + std * (base_value + Σ shap)`` holds for the ensemble too (before the clip at zero).
    """
    if isinstance(model, PartitionedGlobalModel):
        tables = []
        for part, ids in zip(model.parts, model.part_ids()):
            rows = features[features["unique_id"].isin(ids)]
            if len(rows):
                tables.append(explain(part, rows)[0])
        long = pd.concat(tables, ignore_index=True)
        return long, float(long["base_value"].mean())

    import shap

    members = model.members()
    primary = features[features["strategy"] == members[0][0].strategy] if "strategy" in features.columns else features
    keys = pd.MultiIndex.from_frame(primary[list(ID_COLUMNS)])
    names: list[str] = []
    for _, mlf in members:
        names += [name for name in mlf.models_[MODEL_NAME].feature_name_ if name not in names]
    values = np.zeros((len(primary), len(names)))
    seen = np.full((len(primary), len(names)), np.nan)
    base_value = 0.0
    for setup, mlf in members:
        estimator = mlf.models_[MODEL_NAME]
        member_names = list(estimator.feature_name_)
        rows = primary if "strategy" not in features.columns else features[features["strategy"] == setup.strategy]
        # the primary's row order, as plain numbers: a categorical feature (the hierarchy codes) is read back from
        # storage as integers, and LightGBM rejects a frame whose categorical columns differ from its training
        # frame's; from an array it takes the values as the category codes, which they are (``hierarchy_codes``)
        matrix = rows.set_index(list(ID_COLUMNS)).reindex(keys)[member_names].to_numpy(dtype=np.float64)
        columns = [names.index(name) for name in member_names]
        models = boosters(estimator)  # a member averages its models: so do their SHAP values
        for booster in models:
            explainer = shap.TreeExplainer(booster)
            values[:, columns] += np.asarray(explainer.shap_values(matrix)) / (len(members) * len(models))
            base_value += float(np.ravel(explainer.expected_value)[0]) / (len(members) * len(models))
        unseen = np.isnan(seen[:, columns]).all(axis=0)  # a feature's value, from the first member that has it
        seen[:, np.asarray(columns)[unseen]] = matrix[:, unseen]

    std = model.sales_scale(primary["unique_id"].to_numpy(), primary["ds"].to_numpy())  # std (× trend) per row
    n_rows, n_features = values.shape
    long = pd.DataFrame(
        {
            "unique_id": np.repeat(primary["unique_id"].to_numpy(), n_features),
            "ds": np.repeat(primary["ds"].to_numpy(), n_features),
            "feature": np.tile(names, n_rows),
            "feature_value": seen.reshape(-1),
            "shap_value": values.reshape(-1),
        }
    )
    long["shap_units"] = long["shap_value"] * np.repeat(std, n_features)
    long["base_value"] = base_value
    return long, base_value


def global_importance(shap_long: pd.DataFrame) -> pd.DataFrame:
    """feature, mean_abs_shap, mean_abs_shap_units, rank — over every explained forecast."""
    table = (
        shap_long.assign(abs_shap=shap_long["shap_value"].abs(), abs_units=shap_long["shap_units"].abs())
        .groupby("feature", as_index=False)
        .agg(mean_abs_shap=("abs_shap", "mean"), mean_abs_shap_units=("abs_units", "mean"))
        .sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    )
    table["rank"] = np.arange(1, len(table) + 1)
    return table


def top_drivers(shap_long: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """Each series' ``n`` strongest drivers over the horizon: unique_id, rank, feature, mean_shap_units."""
    per_feature = (
        shap_long.assign(abs_units=shap_long["shap_units"].abs())
        .groupby(["unique_id", "feature"], as_index=False)
        .agg(mean_abs_shap_units=("abs_units", "mean"), mean_shap_units=("shap_units", "mean"))
        .sort_values(["unique_id", "mean_abs_shap_units"], ascending=[True, False])
    )
    per_feature["rank"] = per_feature.groupby("unique_id").cumcount() + 1
    return per_feature[per_feature["rank"] <= n].reset_index(drop=True)


def summary_plot_png(shap_long: pd.DataFrame, max_display: int = 15) -> bytes:
    """shap's beeswarm summary plot as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    feature_names, wide_values, wide_features = _as_matrices(shap_long)
    plt.figure()
    shap.summary_plot(wide_values, wide_features, feature_names=feature_names, show=False, max_display=max_display)
    figure = plt.gcf()
    figure.set_size_inches(8, 6)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def _as_matrices(shap_long: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Feature names and the (explained rows × features) SHAP and feature-value matrices of a long table: a
    reshape when it is in ``explain``'s layout (each row's features together, in one order), else a pivot."""
    features = shap_long["feature"].to_numpy()
    names = list(pd.unique(features))
    n_rows, rest = divmod(len(shap_long), max(len(names), 1))
    if names and not rest and bool((features.reshape(n_rows, len(names)) == np.array(names, dtype=object)).all()):
        return names, shap_long["shap_value"].to_numpy().reshape(n_rows, -1), shap_long["feature_value"].to_numpy().reshape(n_rows, -1)
    wide_values = shap_long.pivot_table(index=["unique_id", "ds"], columns="feature", values="shap_value")
    wide_features = shap_long.pivot_table(index=["unique_id", "ds"], columns="feature", values="feature_value")
    return list(wide_values.columns), wide_values.to_numpy(), wide_features[wide_values.columns].to_numpy()


def waterfall_plot_png(shap_long: pd.DataFrame, unique_id: str, ds: pd.Timestamp, forecast: float, max_display: int = 12) -> bytes:
    """shap's waterfall plot of one explained forecast, in units of sales: from the series' expected value
    (``forecast - Σ shap_units``) to the forecast, feature by feature."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import shap

    row = shap_long[(shap_long["unique_id"] == unique_id) & (shap_long["ds"] == ds)]
    explanation = shap.Explanation(
        values=row["shap_units"].to_numpy(),
        base_values=float(forecast - row["shap_units"].sum()),
        data=row["feature_value"].to_numpy(),
        feature_names=row["feature"].tolist(),
    )
    plt.figure()
    shap.plots.waterfall(explanation, max_display=max_display, show=False)
    figure = plt.gcf()
    figure.set_size_inches(8, 5)
    figure.suptitle(f"{unique_id}, {pd.Timestamp(ds).date()}: forecast {forecast:,.1f}", fontsize=10)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
