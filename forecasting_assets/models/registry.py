"""The MLflow model registry: every fitted global model is a registered version; aliases say which serves.

* ``champion``: the version that makes the forecasts (base_forecasts loads it, nightly refreshes reuse it);
* ``challenger``: a better version that waits for a human approval (drift above the approval threshold).

The registered model is a pyfunc wrapping the whole fitted ``MLForecast`` (features, scaler, LightGBM), so
anyone can load it with ``mlflow.pyfunc.load_model("models:/<name>@champion")`` and forecast from fresh
history.

Models are loaded only from the project's own MLflow store: the registry is always the project's
(``data/mlflow.db``, whatever ``MLFLOW_TRACKING_URI`` / ``MLFLOW_REGISTRY_URI`` say: they are ignored here),
and a version is loaded only when its artifacts lie inside the project's artifact root (``data/mlartifacts``,
symbolic links resolved); any other location (another folder, a remote store) is refused with a
``ValueError`` naming it, before anything is unpickled.

mlflow is imported here at module level: import this module only inside functions that need it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import mlflow
import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from forecasting_assets.models.lightgbm_global import GlobalModel, predict_global_model
from forecasting_assets.resources import mlflow_artifact_root, mlflow_tracking_uri

CHAMPION = "champion"
CHALLENGER = "challenger"


def registered_model_name(slug: str) -> str:
    return "lightgbm_" + (re.sub(r"[^a-z0-9]+", "_", slug.lower()).strip("_") or "source")


class GlobalForecaster(mlflow.pyfunc.PythonModel):
    """pyfunc: ``predict(frame, params={"h": 28})`` forecasts from ``frame``: unique_id, ds, y plus the
    exogenous and static columns the model was trained on (``lightgbm_global.training_frame``)."""

    def __init__(self, model: GlobalModel):
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
    """A client of the project's own tracking store and registry (never the environment's MLflow URIs)."""
    uri = mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def project_artifact_path(uri: str) -> Path:
    """The local path of an artifact ``uri`` when it lies inside the project's MLflow artifact root
    (``file:`` URI or local path; ``..`` and symbolic links resolved); raises ``ValueError`` naming the URI
    otherwise (another folder, a remote scheme such as ``s3:``, ``http:``, ``runs:`` or ``models:``)."""
    root = mlflow_artifact_root().resolve()
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        path = Path(url2pathname(unquote(parsed.path)))
    elif parsed.scheme == "" and Path(uri).is_absolute():
        path = Path(uri)
    else:
        raise ValueError(f"refusing model artifacts at {uri!r}: models are loaded only from the project's own MLflow artifact root {root}")
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise ValueError(f"refusing model artifacts at {uri!r} ({resolved}): outside the project's own MLflow artifact root {root}")
    return resolved


def register(model: GlobalModel, name: str) -> str:
    """Log the fitted model in the active MLflow run and register it as a new version of ``name`` in the
    project's registry. Refuses (``ValueError``) a run whose artifacts go outside the project's artifact
    root: such a version could never be loaded."""
    import lightgbm
    import mlforecast

    project_artifact_path(mlflow.get_artifact_uri())
    mlflow.set_registry_uri(mlflow_tracking_uri())
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


def load_version(name: str, version: str) -> GlobalModel:
    """Version ``version`` of ``name`` from the project's registry; refuses (``ValueError`` naming the URI)
    a version whose artifacts are not inside the project's artifact root. The checked location is the one
    loaded (no second lookup through ``models:/``)."""
    location = client().get_model_version_download_uri(name, version)
    loaded = mlflow.pyfunc.load_model(project_artifact_path(location).as_uri())
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
