"""Where the project keeps its state: everything lives under one project home, never in $HOME or /tmp."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent


def project_home() -> Path:
    """The project home: ``$FORECASTING_ASSETS_HOME`` if set, else the repository root."""
    home = os.environ.get("FORECASTING_ASSETS_HOME")
    return Path(home).resolve() if home else REPO_ROOT


def data_dir() -> Path:
    """``<home>/data``: demo data, outputs, the warehouse, MLflow and Optuna stores (gitignored)."""
    return project_home() / "data"


def default_demo_folder() -> Path:
    return data_dir() / "demo"


def outputs_dir() -> Path:
    return data_dir() / "outputs"


def warehouse_path() -> Path:
    return data_dir() / "warehouse.duckdb"


def landing_dir() -> Path:
    return data_dir() / "landing"


def shared_m5_folder() -> Path:
    """``../shared/data/m5`` beside the repository (real M5 data, never copied into the repo)."""
    return REPO_ROOT.parent / "shared" / "data" / "m5"
