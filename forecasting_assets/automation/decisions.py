"""The warehouse table of automation decisions: what the sensors and the promotion gate decided, and why.

``automation_decisions`` (a Parquet file under ``data/outputs`` with a DuckDB view) gets one row per
decision: landing files accepted or rejected, retrain launched or not, model promoted, kept or waiting
for approval. Rows are appended under a file lock and the file is replaced atomically, so concurrent
writers (a sensor tick and a run) never lose a row and a crash never leaves a half-written table.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from forecasting_assets.paths import outputs_dir, warehouse_path
from forecasting_assets.storage.files import exclusive_lock, write_parquet
from forecasting_assets.storage.warehouse import rebuild_catalog

TABLE = "automation_decisions"
COLUMNS = ["decided_at", "actor", "decision", "reason", "details", "run_id"]


def decisions_path() -> Path:
    return outputs_dir() / f"{TABLE}.parquet"


def read_decisions() -> pd.DataFrame:
    path = decisions_path()
    return pd.read_parquet(path) if path.exists() else pd.DataFrame(columns=COLUMNS)


def record_decision(actor: str, decision: str, reason: str, details: dict[str, Any] | None = None, run_id: str = "") -> dict:
    """Append one decision row; returns it (as written)."""
    row = {
        "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "actor": actor,
        "decision": decision,
        "reason": reason,
        "details": json.dumps(details or {}, sort_keys=True, default=str),
        "run_id": run_id,
    }
    path = decisions_path()
    with exclusive_lock(path):
        new_table = not path.exists()
        table = pd.concat([read_decisions(), pd.DataFrame([row])], ignore_index=True)[COLUMNS]
        write_parquet(table.astype(str), path)
    # the view reads the file by path and its columns never change: the catalog needs it only once
    if new_table or not warehouse_path().exists():
        rebuild_catalog(outputs_dir(), warehouse_path())
    return row
