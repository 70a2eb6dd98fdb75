"""Optuna tuning of the global LightGBM on rolling-origin cross-validation.

The study lives in SQLite under ``data/`` (``optuna.db``) and is loaded if it exists, so each run adds
trials to the previous ones instead of starting over. The objective is the mean RMSSE over series and
windows (utilsforecast), on data that ends before the backtest windows, so the backtest that compares
models stays out of sample. The global model averages several models with the best trial's parameters and
other seeds, or with the best few trials' parameters (:func:`ensemble_params`).
"""

from __future__ import annotations

import time

import pandas as pd

from forecasting_assets.models.lightgbm_global import MODEL_NAME, FeatureSetup, make_mlforecast


def suggest_params(trial) -> dict:
    return {
        "n_estimators": trial.suggest_int("n_estimators", 100, 600, step=50),
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 15, 127, log=True),
        "min_child_samples": trial.suggest_int("min_child_samples", 5, 100, log=True),
        "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0),
        "subsample": trial.suggest_float("subsample", 0.5, 1.0),
        "reg_lambda": trial.suggest_float("reg_lambda", 1e-3, 10.0, log=True),
    }


def cv_rmsse(
    frame: pd.DataFrame, setup: FeatureSetup, params: dict, horizon: int, n_windows: int, n_jobs: int = 1, refit: bool = True
) -> float:
    """Mean RMSSE (one-step scale) of the global model over series and CV windows (``refit``: per window)."""
    from utilsforecast.losses import rmsse

    mlf = make_mlforecast(setup, params, n_jobs=n_jobs)
    cv = mlf.cross_validation(
        frame, n_windows=n_windows, h=horizon, step_size=horizon, static_features=setup.static_features, refit=refit
    )
    return mean_rmsse(cv, frame, MODEL_NAME)


def mean_rmsse(cv: pd.DataFrame, frame: pd.DataFrame, column: str) -> float:
    """Mean RMSSE (one-step scale) of ``column`` of a CV frame over series and windows."""
    from utilsforecast.losses import rmsse

    scores = []
    for cutoff, window in cv.groupby("cutoff"):
        history = frame.loc[frame["ds"] <= cutoff, ["unique_id", "ds", "y"]]
        per_series = rmsse(window[["unique_id", "ds", "y", column]], models=[column], seasonality=1, train_df=history)
        scores.append(per_series[column].replace([float("inf")], float("nan")))
    return float(pd.concat(scores).mean())


def tune(
    frame: pd.DataFrame,
    setup: FeatureSetup,
    horizon: int,
    n_windows: int,
    n_trials: int,
    timeout_s: float,
    storage_url: str,
    study_name: str,
    seed: int = 0,
    n_jobs: int = 1,
    refit: bool = True,
) -> dict:
    """Add up to ``n_trials`` trials (or ``timeout_s`` seconds) to the persisted study; return its summary."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage_url,
        direction="minimize",
        load_if_exists=True,
    )
    trials_before = len(study.trials)
    # a fresh seed per resumed run, so that a resumed study does not replay the same suggestions
    study.sampler = optuna.samplers.TPESampler(seed=seed + trials_before)
    if trials_before == 0:
        study.enqueue_trial(_defaults_as_trial())
    started = time.perf_counter()
    study.optimize(
        lambda trial: cv_rmsse(frame, setup, suggest_params(trial), horizon, n_windows, n_jobs, refit),
        n_trials=n_trials,
        timeout=timeout_s,
        catch=(ValueError,),
    )
    complete = [t for t in study.trials if t.value is not None]
    best = study.best_trial
    ranked = best_distinct_trials(complete, TOP_TRIALS)
    return {
        "study_name": study_name,
        "storage": storage_url,
        "best_params": dict(best.params),
        "best_value": float(best.value),
        "best_trial": int(best.number),
        "top_params": [dict(t.params) for t in ranked],
        "top_values": [float(t.value) for t in ranked],
        "top_trials": [int(t.number) for t in ranked],
        "n_trials_total": len(study.trials),
        "n_trials_complete": len(complete),
        "n_trials_this_run": len(study.trials) - trials_before,
        "seconds_this_run": round(time.perf_counter() - started, 2),
        "cv_windows": n_windows,
        "objective": "mean RMSSE over series and windows",
    }


TOP_TRIALS = 10  # the best trials' parameters kept in the summary, for the models the global model averages


def best_distinct_trials(trials: list, n: int) -> list:
    """The ``n`` complete trials with the lowest values, best first, one per distinct parameter set."""
    ranked, seen = [], []
    for trial in sorted(trials, key=lambda t: (t.value, t.number)):
        if trial.params not in seen:
            seen.append(trial.params)
            ranked.append(trial)
    return ranked[:n]


def ensemble_params(tuning: dict, n_models: int, n_trials: int = 1) -> list[dict]:
    """The parameter sets of the ``n_models`` LightGBM models the global model averages: the best
    ``n_trials`` distinct trials' parameters (``top_params`` of :func:`tune`'s summary), in turn, best first.
    With one trial (the default), every model has the best parameters and the models differ by their seed
    only. A summary from before ``top_params``: the best trial's."""
    if n_models < 1 or n_trials < 1:
        raise ValueError(f"n_models and n_trials must be at least 1, got {n_models} and {n_trials}")
    top = list(tuning.get("top_params") or [tuning["best_params"]])[:n_trials]
    return [top[k % len(top)] for k in range(n_models)]


def _defaults_as_trial() -> dict:
    from forecasting_assets.models.lightgbm_global import DEFAULT_PARAMS

    keys = ["n_estimators", "learning_rate", "num_leaves", "min_child_samples", "colsample_bytree", "subsample", "reg_lambda"]
    return {k: DEFAULT_PARAMS[k] for k in keys}
