"""The MLflow model registry: every fitted global model is a registered version; aliases say which serves.

* ``champion``: the version that makes the forecasts (base_forecasts loads it, nightly refreshes reuse it);
* ``challenger``: a better version that waits for a human approval (drift above the approval threshold).

The registered model is a pyfunc wrapping the whole fitted ``MLForecast`` (features, scaler, LightGBM), so
anyone can load it with ``mlflow.pyfunc.load_model("models:/<name>@champion")`` and forecast from fresh
history. Models are loaded only from the project's own tracking store (``data/mlflow.db``).

mlflow is imported here at module level: import this module only inside functions that need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from forecasting_assets.models.lightgbm_global import FittedGlobalModel, predict_global_model
from forecasting_assets.resources import mlflow_tracking_uri

CHAMPION = "champion"
CHALLENGER = "challenger"


def registered_model_name(slug: str) -> str:
    return "lightgbm_" + (re.sub(r"[^a-z0-9]+", "_", slug.lower()).strip("_") or "source")


class GlobalForecaster(mlflow.pyfunc.PythonModel):
    """pyfunc: ``predict(frame, params={"h": 28})`` forecasts from ``frame``: unique_id, ds, y plus the
    exogenous and static columns the model was trained on (``lightgbm_global.training_frame``)."""

    def __init__(self, model: FittedGlobalModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        """Rows with ``y`` are the history; rows without ``y`` carry the future exogenous values."""
        horizon = int((params or {}).get("h", 28))
        history = model_input[model_input["y"].notna()]
        future = model_input[model_input["y"].isna()]
        exogenous = future[["unique_id", "ds", *self.model.setup.exogenous]] if self.model.setup.exogenous else None
        forecasts, _ = predict_global_model(self.model, horizon, exogenous, history=history)
        return forecasts


@dataclass
class RegisteredVersion:
    name: str
    version: str
    run_id: str
    tags: dict


def client() -> MlflowClient:
    mlflow.set_tracking_uri(mlflow_tracking_uri())
    return MlflowClient(tracking_uri=mlflow_tracking_uri(), registry_uri=mlflow_tracking_uri())


def register(model: FittedGlobalModel, name: str) -> str:
    """Log the fitted model in the active MLflow run and register it as a new version of ``name``."""
    import lightgbm
    import mlforecast

    info = mlflow.pyfunc.log_model(
        name="global_model",
        python_model=GlobalForecaster(model),
        registered_model_name=name,
        pip_requirements=[f"lightgbm=={lightgbm.__version__}", f"mlforecast=={mlforecast.__version__}", f"pandas=={pd.__version__}"],
    )
    return str(info.registered_model_version)


def version_by_alias(name: str, alias: str) -> RegisteredVersion | None:
    try:
        found = client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return RegisteredVersion(name=name, version=str(found.version), run_id=found.run_id, tags=dict(found.tags))


def load_version(name: str, version: str) -> FittedGlobalModel:
    client()
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return loaded.unwrap_python_model().model


def set_alias(name: str, alias: str, version: str) -> None:
    client().set_registered_model_alias(name, alias, version)


def remove_alias(name: str, alias: str) -> None:
    try:
        client().delete_registered_model_alias(name, alias)
    except MlflowException:
        pass


def tag_version(name: str, version: str, tags: dict) -> None:
    registry = client()
    for key, value in tags.items():
        registry.set_model_version_tag(name, version, key, str(value))
