"""The global LightGBM model over every series of every level, through mlforecast.

* target normalized per series (``LocalStandardScaler``) so that one model serves the total and the
  smallest department alike;
* lags and rolling means derived from the season length, date features from the frequency;
* calendar events (which event, and how near the previous and next ones are), SNAP and how the sales of the
  series' store and department have been moving (from sales a horizon back) as dynamic exogenous features
  (known over the horizon; ``features/exogenous.py``), TSFresh features, the
  intermittency statistics and the series' place in the hierarchy (a categorical code per hierarchy
  column: its store, its department, …; :func:`hierarchy_codes`) and, up to
  ``ForecastSettings.series_code_max_series`` series, each series' own code (:func:`series_code`) as static
  features;
* hyperparameters from an Optuna study (see ``tuning.py``);
* multi-horizon strategies (``STRATEGIES``): ``recursive`` (lags from 1 on, each step's forecast feeds the
  next) and ``lags_ge_horizon`` (only lags of at least the horizon: every step of the horizon is forecast
  from actuals, nothing compounds). A fitted model holds one member per chosen strategy and forecasts their
  mean; which strategies serve (one alone, or the mean of all) is chosen by the rolling-origin backtest
  (:func:`choose_strategies`);
* each member the mean of LightGBM models with the best Optuna parameters, each with its own seed
  (:class:`AveragedLGBMRegressor`; ``ForecastSettings.lightgbm_models``, ``ensemble_trials``);
* partitions (``PARTITIONS``, ``ForecastSettings.lightgbm_partition``): ``bottom`` fits one such model on the
  bottom level's series and one on the aggregated levels' series, with the same parameters
  (:class:`PartitionedGlobalModel`); ``none`` one model over every series.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
import pandas as pd

from forecasting_assets.hierarchy.aggregation import key_hierarchy_columns
from forecasting_assets.ids import merge_on_ids
from forecasting_assets.spec import freq_family

MODEL_NAME = "LightGBM"
RECURSIVE = "recursive"
LAGS_GE_HORIZON = "lags_ge_horizon"
STRATEGIES = (RECURSIVE, LAGS_GE_HORIZON)
NO_PARTITION = "none"
BOTTOM_PARTITION = "bottom"
PARTITIONS = (NO_PARTITION, BOTTOM_PARTITION)

DEFAULT_PARAMS: dict = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_child_samples": 20,
    "colsample_bytree": 0.8,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 0.1,
}


@dataclass
class FeatureSetup:
    """What the global model sees, derived from the frequency and the history length."""

    freq: str
    lags: list[int]
    rolling_windows: list[int]
    date_features: list[str]
    static_features: list[str] = field(default_factory=list)
    exogenous: list[str] = field(default_factory=list)
    strategy: str = RECURSIVE
    rolling_lag: int = 1  # the rolling means are over the values from this lag back
    season_length: int = 1
    history_length: int = 0
    horizon: int = 1
    detrend: bool = False  # divide each series by its linear trend first (target_transforms.py); setups pickled before it: no

    def to_dict(self) -> dict:
        return {
            "freq": self.freq,
            "strategy": self.strategy,
            "lags": self.lags,
            "rolling_windows": self.rolling_windows,
            "rolling_lag": self.rolling_lag,
            "date_features": self.date_features,
            "static_features": self.static_features,
            "exogenous": self.exogenous,
            "season_length": self.season_length,
            "history_length": self.history_length,
            "horizon": self.horizon,
            "detrend": self.detrend,
        }


def feature_setup(freq: str, season_length: int, history_length: int, horizon: int, strategy: str = RECURSIVE) -> FeatureSetup:
    """The recursive setup: lags 1–3 plus season multiples; rolling means over one and four seasons (bounded
    by the history). Other strategies: see :func:`strategy_setup`."""
    s = max(season_length, 1)
    candidate_lags = sorted({1, 2, 3, s, 2 * s, 3 * s, 4 * s})
    max_lag = max(1, history_length // 3)
    lags = [lag for lag in candidate_lags if lag <= max_lag]
    windows = [w for w in sorted({s, 4 * s}) if w > 1 and w + 1 <= max_lag] or [2]
    family = freq_family(freq)
    date_features = {
        "D": ["dayofweek", "day", "month", "dayofyear"],
        "B": ["dayofweek", "day", "month"],
        "W": ["week", "month"],
        "Q": ["quarter"],
        "QS": ["quarter"],
        "QE": ["quarter"],
    }.get(family, ["month"])
    setup = FeatureSetup(
        freq=freq, lags=lags, rolling_windows=windows, date_features=date_features,
        season_length=s, history_length=history_length, horizon=horizon, detrend=True,
    )
    return setup if strategy == RECURSIVE else strategy_setup(setup, strategy)


def strategy_setup(setup: FeatureSetup, strategy: str) -> FeatureSetup:
    """The setup of ``strategy`` with the features (static, exogenous, dates) of ``setup``.

    ``lags_ge_horizon``: lags horizon, horizon + one to five seasons, about a quarter, half a year and a year
    (what the history allows), rolling means over one, four and thirteen seasons from the horizon's lag back:
    a forecast h ≤ horizon steps ahead uses actuals only.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown LightGBM strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == RECURSIVE:
        base = feature_setup(setup.freq, setup.season_length, setup.history_length, setup.horizon)
        return replace(base, static_features=setup.static_features, exogenous=setup.exogenous)
    s, h = max(setup.season_length, 1), max(setup.horizon, 1)
    max_lag = max(h, setup.history_length // 3)
    candidates = {h + k * s for k in range(6)} | {h + 9 * s, h + 22 * s, 52 * s}
    lags = sorted(lag for lag in candidates if h <= lag <= max_lag)
    windows = [w for w in (s, 4 * s, 13 * s) if w > 1 and h + w <= max_lag] or [2]
    return replace(setup, strategy=strategy, lags=lags, rolling_windows=windows, rolling_lag=h)


class AveragedLGBMRegressor:
    """LightGBM regressors, the k-th with parameters ``params[k]`` and seed ``seeds[k]``; predicts their mean.

    The global model averages models with the best Optuna parameters this way, each with its own seed (the
    seed decides the rows and columns each tree is grown on: ``subsample``, ``colsample_bytree``), or with
    the best few trials' parameters. Models that differ make a mean with less of each one's noise. An
    sklearn estimator (``get_params``/``set_params``/``fit``/``predict``), as mlforecast clones and fits it.
    """

    def __init__(self, params: tuple[dict, ...] = ({},), seeds: tuple[int, ...] = (0,), n_jobs: int = 1):
        self.params = params
        self.seeds = seeds
        self.n_jobs = n_jobs

    # get_params/set_params by hand rather than from sklearn's BaseEstimator: this module loads with the code
    # location, which does not import scikit-learn (and scipy) otherwise
    def get_params(self, deep: bool = True) -> dict:
        return {"params": self.params, "seeds": self.seeds, "n_jobs": self.n_jobs}

    def set_params(self, **values) -> "AveragedLGBMRegressor":
        for name, value in values.items():
            setattr(self, name, value)
        return self

    def fit(self, X, y, **fit_params) -> "AveragedLGBMRegressor":
        if not self.params or len(self.params) != len(self.seeds):
            raise ValueError(f"AveragedLGBMRegressor needs one seed per parameter set, got {len(self.params)} sets and {len(self.seeds)} seeds")
        self.estimators_ = [lightgbm_regressor(params, seed, self.n_jobs).fit(X, y, **fit_params) for params, seed in zip(self.params, self.seeds)]
        return self

    def predict(self, X) -> np.ndarray:
        return np.mean([estimator.predict(X) for estimator in self.estimators_], axis=0)

    @property
    def feature_name_(self) -> list[str]:
        return self.estimators_[0].feature_name_


def lightgbm_regressor(params: dict, seed: int, n_jobs: int):
    import lightgbm as lgb

    return lgb.LGBMRegressor(**{**DEFAULT_PARAMS, **params}, random_state=seed, n_jobs=n_jobs, verbosity=-1)


def boosters(estimator) -> list:
    """The LightGBM regressors behind a fitted model of an MLForecast: the models of an
    :class:`AveragedLGBMRegressor`, or the regressor itself."""
    return list(estimator.estimators_) if isinstance(estimator, AveragedLGBMRegressor) else [estimator]


def parameter_sets(params: dict | list[dict] | tuple[dict, ...]) -> list[dict]:
    """``params`` as a list of LightGBM parameter sets: one dict is one set."""
    sets = [params] if isinstance(params, dict) else list(params)
    if not sets:
        raise ValueError("at least one LightGBM parameter set is needed")
    return sets


def make_mlforecast(setup: FeatureSetup, params: dict | list[dict], seed: int = 0, n_jobs: int = 1):
    """The MLForecast of ``setup``: one LightGBM model (``params`` a dict, or a list of one), or the mean of
    one model per parameter set of the list, seeded ``seed``, ``seed + 1``, …"""
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import LocalStandardScaler

    from forecasting_assets.models.target_transforms import LocalLinearDetrend

    sets = parameter_sets(params)
    if len(sets) == 1:
        model = lightgbm_regressor(sets[0], seed, n_jobs)
    else:
        model = AveragedLGBMRegressor(params=tuple(dict(p) for p in sets), seeds=tuple(seed + k for k in range(len(sets))), n_jobs=n_jobs)
    lag_transforms = {setup.rolling_lag: [RollingMean(window_size=w) for w in setup.rolling_windows]}
    return MLForecast(
        models={MODEL_NAME: model},
        freq=setup.freq,
        lags=setup.lags,
        lag_transforms=lag_transforms,
        date_features=setup.date_features,
        target_transforms=[LocalLinearDetrend(), LocalStandardScaler()] if setup.detrend else [LocalStandardScaler()],
        num_threads=1,
    )


def hierarchy_codes(series_keys: pd.DataFrame) -> pd.DataFrame:
    """unique_id + one categorical ``code_<column>`` per hierarchy column of ``series_keys`` (state_id,
    store_id, …): the series' value of that column as a code (1, 2, … in sorted order of the values), 0 where
    the series spans several (the total has 0 everywhere; a department of every store has its department's
    code and store 0).

    With them one global model can tell which store or department a series belongs to, so a pattern that the
    series of one department or one store share (their weekly shape, their SNAP or event response) is learnt
    from all of them at once, at every level the department or store appears in. They are pandas categoricals,
    so LightGBM splits them as categories (a set of stores against the rest), not as numbers; their categories
    are every code from 0 up, so that a category's code is its value (the model reads plain arrays of the
    codes the same way, as shap's TreeExplainer passes them)."""
    table = series_keys[["unique_id"]].copy()
    for column in key_hierarchy_columns(series_keys):
        values = series_keys[column].astype("string")
        order = sorted(values.dropna().unique())
        codes = values.map({value: k + 1 for k, value in enumerate(order)}).fillna(0).astype(int).to_numpy()
        table[f"code_{column}"] = pd.Categorical(codes, categories=range(len(order) + 1))
    return table


def series_code(series_keys: pd.DataFrame) -> pd.DataFrame:
    """unique_id + ``code_series``: each series' own categorical code (1, 2, … in sorted order of the ids).

    With it the model can learn what is particular to one series (its own weekly shape, its own response to
    an event) beyond what its store and department share (:func:`hierarchy_codes`). Categories from 0 up, as
    there, so that a category's code is its value."""
    ids = sorted(series_keys["unique_id"].astype(str).unique())
    codes = series_keys["unique_id"].astype(str).map({uid: k + 1 for k, uid in enumerate(ids)}).to_numpy()
    return pd.DataFrame({"unique_id": series_keys["unique_id"].to_numpy(), "code_series": pd.Categorical(codes, categories=range(len(ids) + 1))})


def static_table(series_features: pd.DataFrame | None, series_keys: pd.DataFrame, with_series_code: bool = False) -> pd.DataFrame:
    """unique_id + the static features: level order, TSFresh and intermittency (numeric; prefixed ``ts_``), the
    series' place in the hierarchy (categorical; :func:`hierarchy_codes`) and, with ``with_series_code``, the
    series' own code (categorical; :func:`series_code`)."""
    table = series_keys[["unique_id", "level_order"]].copy()
    if series_features is not None and len(series_features):
        numeric = series_features.select_dtypes("number")
        renamed = numeric.rename(columns={c: f"ts_{c}" for c in numeric.columns})
        renamed.insert(0, "unique_id", series_features["unique_id"].to_numpy())
        table = table.merge(renamed, on="unique_id", how="left")
    table = table.merge(hierarchy_codes(series_keys), on="unique_id", how="left")
    return table.merge(series_code(series_keys), on="unique_id", how="left") if with_series_code else table


def training_frame(
    series: pd.DataFrame, exogenous: pd.DataFrame | None, statics: pd.DataFrame
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Join history with exogenous and static features. Returns (frame, static columns, exogenous columns)."""
    frame = series[["unique_id", "ds", "y"]]
    exog_cols: list[str] = []
    if exogenous is not None:
        exog_cols = [c for c in exogenous.columns if c not in ("unique_id", "ds")]
        frame = merge_on_ids(frame, exogenous, ["unique_id", "ds"], how="left")
        # float32 features: half the memory of float64 at M5 size (millions of rows), and LightGBM bins them
        # anyway; column by column, and only where needed: a fill and a cast of the whole block copy every
        # feature of the history twice (at M5 size 10 M rows × 12 columns)
        for column in exog_cols:
            values = frame[column]
            if values.dtype != np.float32 or values.isna().any():
                frame[column] = values.fillna(0.0).astype(np.float32)
    static_cols = [c for c in statics.columns if c != "unique_id"]
    numeric = [c for c in static_cols if not isinstance(statics[c].dtype, pd.CategoricalDtype)]  # categories stay categories
    frame = merge_on_ids(frame, statics.astype({c: np.float32 for c in numeric}), ["unique_id"], how="left")
    return frame, static_cols, exog_cols


def future_exogenous(
    exogenous: pd.DataFrame | None, ids: np.ndarray, last_date: pd.Timestamp, horizon: int, freq: str
) -> pd.DataFrame | None:
    """The exogenous rows of the forecast horizon (0 where the calendar ends early)."""
    if exogenous is None:
        return None
    dates = pd.date_range(last_date, periods=horizon + 1, freq=freq)[1:]
    grid = pd.DataFrame({"unique_id": np.repeat(ids, len(dates)), "ds": np.tile(dates, len(ids))})
    future = merge_on_ids(grid, exogenous, ["unique_id", "ds"], how="left")
    exog_cols = [c for c in exogenous.columns if c not in ("unique_id", "ds")]
    future[exog_cols] = future[exog_cols].fillna(0.0)
    return future


class GlobalModel:
    """What serves the LightGBM forecasts: a :class:`FittedGlobalModel` (one model over its series) or a
    :class:`PartitionedGlobalModel` (one per group of series)."""

    partition: ClassVar[str] = NO_PARTITION


@dataclass
class FittedGlobalModel(GlobalModel):
    """A fitted MLForecast per strategy plus what is needed to forecast again (picklable).

    ``mlf``/``setup`` are the first member; ``extra_members`` the others, as (setup, MLForecast) pairs.
    The model's forecast is the mean of its members' forecasts."""

    mlf: object
    setup: FeatureSetup
    params: dict | list  # the LightGBM parameters, or one set per averaged model (parameter_sets)
    last_date: pd.Timestamp
    registered_name: str = ""  # MLflow registered model and version, once registered
    registered_version: str = ""
    serving_std: pd.Series | None = None  # per-series std of the history the last forecast started from
    serving_detrend: object = None  # and its trend (a fitted LocalLinearDetrend), when the target is detrended
    extra_members: tuple = ()  # models pickled before strategies existed have none

    def members(self) -> list[tuple[FeatureSetup, object]]:
        return [(self.setup, self.mlf), *self.extra_members]

    def part_ids(self) -> list[np.ndarray]:
        """The series it forecasts, as one part (as :meth:`PartitionedGlobalModel.part_ids`)."""
        return [np.asarray(self.mlf.ts.uids)]

    def strategies(self) -> list[str]:
        return [setup.strategy for setup, _ in self.members()]

    def parameter_sets(self) -> list[dict]:
        """The parameters of the LightGBM models each member averages (one set: one model)."""
        return parameter_sets(self.params)

    def trained_past(self, history: pd.DataFrame) -> bool:
        """Whether the model saw days after the end of ``history`` (it would leak them into a forecast)."""
        return pd.Timestamp(self.last_date) > history["ds"].max()

    def target_std(self) -> pd.Series:
        """Per-series std of the target normalization (LocalStandardScaler) behind the latest forecast
        (the same for every member: each normalizes the same history)."""
        if self.serving_std is not None:
            return self.serving_std
        stats = np.asarray(self._scaler().scaler_.stats_)  # mean, std per series
        return pd.Series(stats[:, 1], index=np.asarray(self.mlf.ts.uids))

    def sales_scale(self, ids, ds) -> np.ndarray:
        """What one unit of the model's target is in sales, per row (series ``ids[i]`` on day ``ds[i]``):
        the series' std, times its trend on that day when the target is detrended."""
        std = self.target_std().reindex(np.asarray(ids)).to_numpy()
        detrend = self.serving_detrend if self.serving_detrend is not None else self._detrend()
        return std if detrend is None else std * detrend.trend(ids, ds)

    def _scaler(self):
        from mlforecast.target_transforms import LocalStandardScaler

        return next(t for t in self.mlf.ts.target_transforms if isinstance(t, LocalStandardScaler))

    def _detrend(self):
        from forecasting_assets.models.target_transforms import LocalLinearDetrend

        return next((t for t in self.mlf.ts.target_transforms if isinstance(t, LocalLinearDetrend)), None)

    def statics(self) -> pd.DataFrame:
        """The static features the model was trained with (unique_id + columns)."""
        return self.mlf.ts.static_features_.reset_index(drop=True)


@dataclass
class PartitionedGlobalModel(GlobalModel):
    """One :class:`FittedGlobalModel` per group of series (``partition``), each fitted on its group's series
    alone with the same setup, parameters and strategies; forecasts each series with its group's model.

    It answers what the pipeline asks of a fitted model (setup, parameters, strategies, normalization,
    statics) like a :class:`FittedGlobalModel`: ``mlf``, ``setup``, ``members()`` are the first part's (every
    part has the same setup and strategies); ``target_std``, ``sales_scale`` and ``statics`` cover every series."""

    parts: tuple[FittedGlobalModel, ...]
    partition: str = BOTTOM_PARTITION
    registered_name: str = ""
    registered_version: str = ""

    @property
    def mlf(self):
        return self.parts[0].mlf

    @property
    def setup(self) -> FeatureSetup:
        return self.parts[0].setup

    @property
    def params(self) -> dict | list:
        return self.parts[0].params

    @property
    def last_date(self) -> pd.Timestamp:
        return self.parts[0].last_date

    def part_ids(self) -> list[np.ndarray]:
        """The series of each part, in the order of ``parts``."""
        return [np.asarray(part.mlf.ts.uids) for part in self.parts]

    def members(self) -> list[tuple[FeatureSetup, object]]:
        return self.parts[0].members()

    def strategies(self) -> list[str]:
        return self.parts[0].strategies()

    def parameter_sets(self) -> list[dict]:
        return self.parts[0].parameter_sets()

    def trained_past(self, history: pd.DataFrame) -> bool:
        return self.parts[0].trained_past(history)

    def target_std(self) -> pd.Series:
        return pd.concat([part.target_std() for part in self.parts])

    def sales_scale(self, ids, ds) -> np.ndarray:
        ids, ds = np.asarray(ids), np.asarray(ds)
        scale = np.full(len(ids), np.nan)
        for part, part_ids in zip(self.parts, self.part_ids()):
            rows = np.isin(ids, part_ids)
            if rows.any():
                scale[rows] = part.sales_scale(ids[rows], ds[rows])
        return scale

    def statics(self) -> pd.DataFrame:
        return pd.concat([part.statics() for part in self.parts], ignore_index=True)


def partition_ids(frame: pd.DataFrame, partition: str) -> list[np.ndarray]:
    """The series of each group of ``partition`` (from the frame's ``level_order`` static column): ``none``
    one group of every series; ``bottom`` the aggregated levels' series, then the bottom level's (the highest
    level order). A frame of one level is one group either way."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown LightGBM partition {partition!r}; choose from {', '.join(PARTITIONS)}")
    if partition == NO_PARTITION:
        return [np.sort(frame["unique_id"].unique())]
    if "level_order" not in frame.columns:
        raise ValueError(f"the {partition!r} partition needs the level_order static column (lightgbm_global.static_table) in the training frame; it has {', '.join(map(str, frame.columns))}")
    levels = frame.groupby("unique_id", observed=True, sort=True)["level_order"].first()
    bottom = (levels == levels.max()).to_numpy()
    if bottom.all():
        return [levels.index.to_numpy()]
    return [levels.index[~bottom].to_numpy(), levels.index[bottom].to_numpy()]


def _rows_of(frame: pd.DataFrame | None, ids: np.ndarray) -> pd.DataFrame | None:
    return None if frame is None else frame[frame["unique_id"].isin(ids)].reset_index(drop=True)


def member_setups(setup: FeatureSetup, strategies: list[str] | tuple[str, ...] | None) -> list[FeatureSetup]:
    """One setup per strategy (``setup`` itself for its own strategy), in the given order."""
    chosen = list(strategies or [setup.strategy])
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"strategies must be distinct and not empty, got {chosen}")
    return [setup if strategy == setup.strategy else strategy_setup(setup, strategy) for strategy in chosen]


def fit_global_model(
    frame: pd.DataFrame,
    setup: FeatureSetup,
    params: dict | list[dict],
    seed: int = 0,
    n_jobs: int = 1,
    strategies: list[str] | None = None,
    partition: str = NO_PARTITION,
) -> GlobalModel:
    """Fit one member per strategy (default: ``setup``'s own) with the same parameters: one LightGBM model,
    or (a list of parameter sets) the mean of one model per set, seeded ``seed``, ``seed + 1``, …

    ``partition`` (``PARTITIONS``) other than ``none``: one such model per group of series
    (:func:`partition_ids`), each on its group's rows alone, as a :class:`PartitionedGlobalModel`."""
    groups = partition_ids(frame, partition) if partition != NO_PARTITION else []
    if len(groups) > 1:
        parts = tuple(fit_global_model(_rows_of(frame, ids), setup, params, seed=seed, n_jobs=n_jobs, strategies=strategies) for ids in groups)
        return PartitionedGlobalModel(parts=parts, partition=partition)
    members = []
    for member_setup in member_setups(setup, strategies):
        mlf = make_mlforecast(member_setup, params, seed=seed, n_jobs=n_jobs)
        mlf.fit(frame, static_features=member_setup.static_features)
        members.append((member_setup, mlf))
    (first_setup, first_mlf), *rest = members
    return FittedGlobalModel(mlf=first_mlf, setup=first_setup, params=params, last_date=frame["ds"].max(), extra_members=tuple(rest))


def serving_normalization(model: FittedGlobalModel, history: pd.DataFrame, ids: np.ndarray):
    """The trend (when detrended) and the per-series std (population, as LocalStandardScaler) that the
    model's target transforms take from ``history``."""
    target = history[["unique_id", "ds", "y"]]
    detrend = None
    if model.setup.detrend:
        from forecasting_assets.models.target_transforms import LocalLinearDetrend

        detrend = LocalLinearDetrend()
        detrend.set_column_names("unique_id", "ds", "y")
        target = detrend.fit_transform(target)
    return detrend, target.groupby("unique_id")["y"].std(ddof=0).reindex(ids)


def predict_global_model(
    model: GlobalModel,
    horizon: int,
    exogenous: pd.DataFrame | None,
    capture_features: bool = False,
    history: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Forecast ``horizon`` steps after the training data, or after ``history`` when given (the latest
    data, as built by ``training_frame``: a refresh without refitting): the mean of the members' forecasts.
    Optionally return the feature rows each member saw at each step (the input of SHAP), with a ``strategy``
    column naming the member. A :class:`PartitionedGlobalModel` forecasts each part's series with that part
    (the rows of ``history`` of its series), one part after the other."""
    if isinstance(model, PartitionedGlobalModel):
        results = [
            predict_global_model(part, horizon, exogenous, capture_features=capture_features, history=_rows_of(history, ids))
            for part, ids in zip(model.parts, model.part_ids())
        ]
        forecasts = pd.concat([forecast for forecast, _ in results], ignore_index=True)
        features = pd.concat([feature for _, feature in results], ignore_index=True) if capture_features else None
        return forecasts, features
    if history is not None:
        ids = np.sort(history["unique_id"].unique())
        last_date = pd.Timestamp(history["ds"].max())
        # mlforecast re-fits the target transforms on ``history``: the same here, for SHAP's units
        model.serving_detrend, model.serving_std = serving_normalization(model, history, ids)
    else:
        ids = np.asarray(model.mlf.ts.uids)
        last_date = model.last_date
    x_df = future_exogenous(exogenous, ids, last_date, horizon, model.setup.freq) if model.setup.exogenous else None
    dates = pd.date_range(last_date, periods=horizon + 1, freq=model.setup.freq)[1:]
    forecasts, feature_tables = None, []
    members = model.members()
    for setup, mlf in members:
        captured: list[pd.DataFrame] = []

        def _capture(features: pd.DataFrame) -> pd.DataFrame:
            captured.append(features.copy())
            return features

        member = mlf.predict(horizon, new_df=history, X_df=x_df, before_predict_callback=_capture if capture_features else None)
        share = member[MODEL_NAME].clip(lower=0.0).to_numpy() / len(members)  # each member clipped, as in backtests
        if forecasts is None:
            forecasts = member.reset_index(drop=True)
            forecasts[MODEL_NAME] = share
        else:
            forecasts[MODEL_NAME] += share  # every member forecasts the same series and dates, in one order
        if capture_features:
            for step, frame in enumerate(captured):
                frame.insert(0, "ds", dates[step])
                frame.insert(0, "unique_id", ids)
                frame.insert(2, "strategy", setup.strategy)
            feature_tables.extend(captured)
    features = pd.concat(feature_tables, ignore_index=True) if capture_features else None
    return forecasts, features


def backtest_global_model(
    frame: pd.DataFrame,
    setup: FeatureSetup,
    params: dict | list[dict],
    horizon: int,
    n_windows: int,
    seed: int = 0,
    n_jobs: int = 1,
    refit: bool = True,
    strategies: list[str] | None = None,
    keep_members: bool = False,
    partition: str = NO_PARTITION,
) -> pd.DataFrame:
    """Rolling-origin backtest: unique_id, ds, cutoff, y, LightGBM (the mean of the strategies' forecasts;
    ``keep_members``: plus one column ``LightGBM[<strategy>]`` per strategy).

    ``params``: one parameter set, or a list of them averaged as in :func:`fit_global_model`.
    ``refit``: the model is refit on the data before each window; False fits it once, before the first
    window, and forecasts every window with it (on the actuals up to each cutoff): ``n_windows`` times
    cheaper, and a little pessimistic for the later windows (their model is older).
    ``partition``: one such backtest per group of series (:func:`partition_ids`), as :func:`fit_global_model`.
    """
    groups = partition_ids(frame, partition) if partition != NO_PARTITION else []
    if len(groups) > 1:
        return pd.concat(
            [
                backtest_global_model(_rows_of(frame, ids), setup, params, horizon, n_windows, seed=seed, n_jobs=n_jobs, refit=refit, strategies=strategies, keep_members=keep_members)
                for ids in groups
            ],
            ignore_index=True,
        )
    backtest = None
    setups = member_setups(setup, strategies)
    for member_setup in setups:
        mlf = make_mlforecast(member_setup, params, seed=seed, n_jobs=n_jobs)
        member = mlf.cross_validation(
            frame, n_windows=n_windows, h=horizon, step_size=horizon, static_features=member_setup.static_features, refit=refit
        ).reset_index(drop=True)
        column = member_column(member_setup.strategy)
        member = member.rename(columns={MODEL_NAME: column})
        member[column] = member[column].clip(lower=0.0)
        backtest = member if backtest is None else backtest.merge(member.drop(columns="y"), on=["unique_id", "ds", "cutoff"], how="inner")
    columns = [member_column(s.strategy) for s in setups]
    backtest[MODEL_NAME] = backtest[columns].mean(axis=1)
    if not keep_members:
        backtest = backtest.drop(columns=columns)
    return backtest.reset_index(drop=True)


def member_column(strategy: str) -> str:
    return f"{MODEL_NAME}[{strategy}]"


def strategy_options(strategies: list[str]) -> dict[str, tuple[list[str], str]]:
    """What can serve: each strategy alone, and (with several) the mean of all of them — name → (the
    strategies, their column in a ``keep_members`` backtest)."""
    strategies = list(dict.fromkeys(strategies))
    if len(strategies) == 1:
        return {strategies[0]: (strategies, MODEL_NAME)}
    options = {strategy: ([strategy], member_column(strategy)) for strategy in strategies}
    options["+".join(strategies)] = (strategies, MODEL_NAME)
    return options


def choose_strategies(backtest: pd.DataFrame, strategies: list[str], score) -> tuple[list[str], dict[str, float]]:
    """The option of :func:`strategy_options` with the lowest ``score`` (a callable: backtest frame, list of
    columns → {column: error}); a tie goes to the option with fewer members. Returns the chosen strategies
    and every option's error."""
    options = strategy_options(strategies)
    if len(options) == 1:
        return next(iter(options.values()))[0], {}
    errors = score(backtest, [column for _, column in options.values()])
    scores = {name: float(errors[column]) for name, (_, column) in options.items()}
    finite = {name: value for name, value in scores.items() if np.isfinite(value)}
    if not finite:
        raise ValueError(f"no strategy has a finite backtest score: {scores}")
    best = min(finite, key=lambda name: (finite[name], len(options[name][0])))
    return options[best][0], scores
