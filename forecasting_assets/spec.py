"""The data contracts shared by every stage.

Frames passed between stages are long, Nixtla-style:

* **bottom sales** (``validated_sales``): one row per bottom series and period, with the hierarchy id
  columns (strings), ``ds`` (datetime64), ``y`` (float64), optionally ``price`` (float64) and
  ``source_file`` (string).
* **series** (``hierarchical_series``): ``unique_id, ds, y`` for every series of every level.
* **forecasts**: ``unique_id, ds`` plus one column per model (wide, as statsforecast/mlforecast return).

``SourceSpec`` describes a source folder: either read from its ``source.yaml`` or inferred.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The twelve M5 aggregation levels (Level_id -> grouping columns). [] is the grand total.
M5_LEVELS: dict[str, list[str]] = {
    "Level1": [],
    "Level2": ["state_id"],
    "Level3": ["store_id"],
    "Level4": ["cat_id"],
    "Level5": ["dept_id"],
    "Level6": ["state_id", "cat_id"],
    "Level7": ["state_id", "dept_id"],
    "Level8": ["store_id", "cat_id"],
    "Level9": ["store_id", "dept_id"],
    "Level10": ["item_id"],
    "Level11": ["state_id", "item_id"],  # the weights file keys it state first (CA, FOODS_1_001)
    "Level12": ["item_id", "store_id"],
}
M5_ID_COLUMNS = ["item_id", "dept_id", "cat_id", "store_id", "state_id"]

TOTAL_ID = "Total"  # unique_id of the grand-total series

# Defaults by frequency family: season length and forecast horizon.
SEASON_LENGTH_BY_FREQ = {"D": 7, "B": 5, "W": 52, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4}
HORIZON_BY_FREQ = {"D": 28, "B": 20, "W": 13, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4}


def freq_family(freq: str) -> str:
    """'W-FRI' -> 'W', 'QS-OCT' -> 'QS', 'D' -> 'D'."""
    return freq.split("-")[0].upper()


def default_season_length(freq: str) -> int:
    return SEASON_LENGTH_BY_FREQ.get(freq_family(freq), 1)


def default_horizon(freq: str) -> int:
    return HORIZON_BY_FREQ.get(freq_family(freq), 8)


def level_name(columns: list[str]) -> str:
    """Name of a level from its grouping columns: [] -> 'total', ['store_id','dept_id'] -> 'store_id/dept_id'."""
    return "/".join(columns) if columns else "total"


def m5_level_id(columns: list[str]) -> str | None:
    """The M5 Level_id of a level given by its columns (order-insensitive), or None."""
    for level_id, cols in M5_LEVELS.items():
        if sorted(cols) == sorted(columns):
            return level_id
    return None


@dataclass
class SourceSpec:
    """How to read a source folder and what its data is (from ``source.yaml`` or inferred)."""

    format: str  # "m5" (wide d_1.. columns) or "long"
    files: list[str]  # sales files, relative to the folder
    frequency: str  # pandas offset alias
    levels: list[list[str]]  # each level is a list of grouping columns; [] is the total
    season_length: int
    horizon: int
    date_column: str = "date"  # long format
    target_column: str = "sales"  # long format
    price_column: str | None = None  # long format, optional
    calendar_file: str | None = None  # M5: calendar.csv
    prices_file: str | None = None  # M5: sell_prices.csv
    inferred: list[str] = field(default_factory=list)  # keys that were inferred, not read from source.yaml

    @property
    def hierarchy_columns(self) -> list[str]:
        """Every column named by some level, in first-mention order."""
        seen: list[str] = []
        for level in self.levels:
            for col in level:
                if col not in seen:
                    seen.append(col)
        return seen

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SourceSpec":
        return cls(**data)
