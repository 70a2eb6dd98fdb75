"""Segmented tables: one logical table stored as Parquet segments plus a manifest, extended without a rewrite.

A nightly refresh adds one day to a history of 59 M (bottom sales) or 83 M rows (every level's series). Stored
as one file, each such table is rewritten whole every night, and its producer redoes the whole history. A
segmented table is a folder ``<asset>.segments/`` of immutable segment files and ``manifest.json``, which
lists the segments in order; a producer that only adds rows writes one small segment and a new manifest.

* **Layouts.** ``concat``: the table is the segments one after the other (``raw_sales``: newest batch first).
  ``series_major``: the table is sorted by series (``series_columns``) and, within a series, by time; each
  segment is sorted the same way and holds later periods than the segments before it, of series of the first
  segment. Reading interleaves the segments back into one frame in that order, so a consumer gets exactly the
  frame one file would have held.
* **Atomic.** Segments are written first (each atomically), then the manifest is replaced atomically: a crash
  leaves the previous manifest, which names only segments that exist. Files no manifest names are removed
  after the switch.
* **State.** The producer keeps a small JSON ``state`` in the manifest: what the stored rows were computed
  from, so that the next run can tell whether extending them gives what a full recomputation would.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from forecasting_assets.ids import as_categorical
from forecasting_assets.storage import files

MANIFEST = "manifest.json"
SUFFIX = ".segments"
LAYOUTS = ("concat", "series_major")


@dataclass(frozen=True)
class Segment:
    key: str  # what the rows are: the same key always means the same rows
    file: str  # file name inside the table's folder
    rows: int


@dataclass(frozen=True)
class StoredTable:
    """A segmented table as stored (the manifest); its rows are read only by :meth:`read`."""

    folder: Path
    layout: str
    series_columns: list[str]
    segments: list[Segment]
    state: dict[str, Any]

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.segments)

    @property
    def keys(self) -> list[str]:
        return [s.key for s in self.segments]

    def paths(self) -> list[Path]:
        return [self.folder / s.file for s in self.segments]

    def segment(self, key: str) -> Segment | None:
        return next((s for s in self.segments if s.key == key), None)

    def read_segment(self, key: str, columns: list[str] | None = None) -> pd.DataFrame:
        segment = self.segment(key)
        if segment is None:
            raise KeyError(f"{self.folder}: no segment {key!r}")
        return files.read_parquet(self.folder / segment.file, columns)

    def read(self, columns: list[str] | None = None) -> pd.DataFrame:
        """The whole table, as one file of the same rows would read."""
        return combine(self.layout, [files.read_parquet(p, columns, keep_dictionary=True) for p in self.paths()], self.series_columns)


@dataclass
class SegmentedFrame:
    """What an asset returns to store a table as segments.

    ``segments``: (key, rows) in table order; rows None reuses the stored segment of that key untouched.
    ``stored``: the table as stored before (where the reused segments are). ``rows``: the total row count.
    """

    layout: str
    segments: list[tuple[str, pd.DataFrame | None]]
    stored: StoredTable | None = None
    series_columns: list[str] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {self.layout!r} (one of {LAYOUTS})")
        for key, rows in self.segments:
            if rows is None and (self.stored is None or self.stored.segment(key) is None):
                raise ValueError(f"segment {key!r} is reused but not stored")

    @property
    def rows(self) -> int:
        return sum(len(rows) if rows is not None else self.stored.segment(key).rows for key, rows in self.segments)

    @property
    def new_rows(self) -> int:
        return sum(len(rows) for _, rows in self.segments if rows is not None)

    def frame(self) -> pd.DataFrame:
        """The whole table in memory (tests; small tables)."""
        parts = [rows if rows is not None else self.stored.read_segment(key) for key, rows in self.segments]
        return combine(self.layout, parts, self.series_columns)


def folder_for(stem: Path) -> Path:
    return Path(stem).with_name(Path(stem).name + SUFFIX)


def read_manifest(folder: Path) -> StoredTable | None:
    """The stored table in ``folder`` (None when there is none)."""
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    manifest = json.loads(path.read_text())
    return StoredTable(
        folder=Path(folder),
        layout=manifest["layout"],
        series_columns=list(manifest.get("series_columns", [])),
        segments=[Segment(**s) for s in manifest["segments"]],
        state=manifest.get("state", {}),
    )


def _segment_file(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"seg-{digest}-{uuid.uuid4().hex[:8]}.parquet"


def write_segments(table: SegmentedFrame, folder: Path) -> StoredTable:
    """Write the new segments, then the manifest (atomically), then remove the files it no longer names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stored = table.stored if table.stored is not None and Path(table.stored.folder) == folder else read_manifest(folder)  # where reused segments are
    segments: list[Segment] = []
    for key, rows in table.segments:
        if rows is None:
            reused = stored.segment(key) if stored is not None else None
            if reused is None or not (folder / reused.file).exists():
                raise FileNotFoundError(f"{folder}: segment {key!r} is reused but its file is missing")
            segments.append(reused)
        else:
            name = _segment_file(key)
            files.write_parquet(rows, folder / name)
            segments.append(Segment(key=key, file=name, rows=len(rows)))
    manifest = {
        "layout": table.layout,
        "series_columns": table.series_columns,
        "segments": [s.__dict__ for s in segments],
        "state": table.state,
    }
    files.write_text(json.dumps(manifest, indent=1, default=str), folder / MANIFEST)
    named = {s.file for s in segments} | {MANIFEST}
    for path in folder.iterdir():  # segments no manifest names any more (temporary files of live writers stay)
        if path.name not in named and not path.name.startswith("."):
            path.unlink(missing_ok=True)
    files.remove_dead_temps(folder)  # of a writer that crashed before its manifest
    return read_manifest(folder)


def remove(folder: Path) -> None:
    """Remove a segmented table (its manifest first: a half-removed folder is no table)."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    (folder / MANIFEST).unlink(missing_ok=True)
    for path in folder.iterdir():
        path.unlink(missing_ok=True)
    os.rmdir(folder)


# --------------------------------------------------------------------------------------------------------------
# Combining segments into one frame
# --------------------------------------------------------------------------------------------------------------


def _unified_categories(columns: list[pd.Series]) -> pd.Index:
    """The categories of all parts: those of the first, then new ones in order; sorted when every part's are."""
    categories = columns[0].cat.categories
    for column in columns[1:]:
        extra = column.cat.categories.difference(categories, sort=False)
        if len(extra):
            categories = categories.append(extra)
    if all(c.cat.categories.is_monotonic_increasing for c in columns) and not categories.is_monotonic_increasing:
        categories = categories.sort_values()
    return categories


def _codes(column: pd.Series, categories: pd.Index) -> np.ndarray:
    own = column.cat.categories
    codes = column.cat.codes.to_numpy()
    if own.equals(categories):
        return codes
    mapping = np.append(categories.get_indexer(own), -1).astype(codes.dtype if len(categories) < np.iinfo(codes.dtype).max else np.int64)
    return mapping[codes]


def _series_key(parts: list[pd.DataFrame], columns: list[str]) -> list[np.ndarray]:
    """One int64 per row naming its series (the same series, the same number in every part)."""
    keys = [np.zeros(len(p), dtype=np.int64) for p in parts]
    radix = 1
    for column in columns:
        # as categoricals (columns read as dictionaries already are; frames in memory are converted here)
        values = [p[column] if isinstance(p[column].dtype, pd.CategoricalDtype) else pd.Series(as_categorical(p[column])) for p in parts]
        categories = _unified_categories(values)
        size = len(categories) + 1
        if radix * size >= 2**62:
            raise ValueError(f"too many series for one integer key over {columns}")
        for key, value in zip(keys, values):
            key += (_codes(value, categories).astype(np.int64) + 1) * radix
        radix *= size
    return keys


def _series_major_positions(parts: list[pd.DataFrame], series_columns: list[str]) -> list[np.ndarray]:
    """For each part, where its rows go in the combined table (each series' rows from the parts in turn)."""
    keys = _series_key(parts, series_columns)
    first = keys[0]
    run_starts = np.flatnonzero(np.r_[True, first[1:] != first[:-1]]) if len(first) else np.array([], dtype=np.int64)
    order_keys = first[run_starts]  # the series in table order
    if len(np.unique(order_keys)) != len(order_keys):
        raise ValueError("the first segment is not sorted by series: a series appears in two runs")
    sorter = np.argsort(order_keys, kind="stable")
    ranks = []
    for i, key in enumerate(keys):
        at = np.searchsorted(order_keys, key, sorter=sorter)
        at = np.minimum(at, max(len(order_keys) - 1, 0))
        rank = sorter[at] if len(order_keys) else np.zeros(len(key), dtype=np.int64)
        if len(key) and (not len(order_keys) or not np.array_equal(order_keys[rank], key)):
            raise ValueError(f"segment {i} holds a series the first segment does not")
        if len(rank) > 1 and bool(np.any(rank[1:] < rank[:-1])):
            raise ValueError(f"segment {i} is not in the order of the series")
        ranks.append(rank)
    n_series = len(order_keys)
    counts = np.stack([np.bincount(r, minlength=n_series) for r in ranks]) if ranks else np.zeros((0, n_series), dtype=np.int64)
    total = counts.sum(axis=0)
    series_start = np.concatenate([[0], np.cumsum(total)[:-1]]) if n_series else np.zeros(0, dtype=np.int64)
    before = np.cumsum(counts, axis=0) - counts  # rows of the series in earlier parts
    positions = []
    for i, rank in enumerate(ranks):
        part_start = np.concatenate([[0], np.cumsum(counts[i])[:-1]]) if n_series else np.zeros(0, dtype=np.int64)
        row = np.arange(len(rank), dtype=np.int64)
        positions.append(series_start[rank] + before[i][rank] + row - part_start[rank])
    return positions


def _dense_layout(parts: list[pd.DataFrame], series_columns: list[str], codes: dict[str, list[np.ndarray]]) -> list[int] | None:
    """Rows per series of each part when every part holds every series of the first part, the same number of
    rows each, in the same order (a grid: ``hierarchical_series``, and the bottom sales of M5-layout
    sources); None otherwise. ``codes``: each series column's codes per part, over shared categories."""
    n = len(parts[0])
    if n == 0 or not series_columns:
        return None
    first = [codes[c][0] for c in series_columns]
    differs = [c != c[0] for c in first]
    run = min((int(np.argmax(d)) for d in differs if d.any()), default=n)  # where the first series ends
    if n % run:
        return None
    n_series = n // run
    rows = []
    for column in first:
        grid = column.reshape(n_series, run)
        if not bool((grid == grid[:, :1]).all()):
            return None
        rows.append(grid[:, 0])
    distinct = np.unique(np.stack(rows), axis=1).shape[1] if n_series > 1 else 1
    if distinct != n_series:
        return None
    layout = [run]
    for i in range(1, len(parts)):
        length = len(parts[i])
        if length % n_series:
            return None
        per_series = length // n_series
        for column, expected in zip(series_columns, rows):
            grid = codes[column][i].reshape(n_series, per_series)
            if per_series and not (bool((grid == grid[:, :1]).all()) and np.array_equal(grid[:, 0], expected)):
                return None
        layout.append(per_series)
    return layout


def _place_grid(values: list[np.ndarray], layout: list[int], dtype) -> np.ndarray:
    """The parts' values side by side per series (row-major: series, then the parts' periods in turn)."""
    n_series = len(values[0]) // layout[0]
    out = np.empty((n_series, sum(layout)), dtype=dtype)
    at = 0
    for part, width in zip(values, layout):
        out[:, at:at + width] = part.reshape(n_series, width)
        at += width
    return out.reshape(-1)


def _expanded(categories: pd.Index, codes: np.ndarray) -> np.ndarray:
    """The object column a dictionary (categories, codes) stands for; code -1 is None."""
    return np.append(categories.to_numpy(dtype=object), None)[codes]


def _expand_dictionary_columns(frame: pd.DataFrame, plain_strings: set[str]) -> pd.DataFrame:
    """Plain string columns read as dictionaries back to object columns (the frame rebuilt without a copy)."""
    names = plain_strings & set(frame.columns)
    if not names:
        return frame
    columns = {n: (_expanded(frame[n].cat.categories, frame[n].cat.codes.to_numpy()) if n in names else frame[n]) for n in frame.columns}
    return pd.DataFrame(columns, copy=False)


def combine(layout: str, parts: list[pd.DataFrame], series_columns: list[str] | None = None) -> pd.DataFrame:
    """The segments as one frame: one after the other (``concat``) or interleaved by series (``series_major``).

    Parts read with ``keep_dictionary=True`` carry their plain string columns as categoricals (attribute
    ``plain_strings``); they come back as object columns, as a single file would read.
    """
    plain: set[str] = set().union(*(p.attrs.get("plain_strings", set()) for p in parts)) if parts else set()
    if not parts:
        raise ValueError("a table needs at least one segment")
    if len(parts) == 1:
        out = parts[0]
        out.attrs.pop("plain_strings", None)
        return _expand_dictionary_columns(out, plain)
    columns = list(parts[0].columns)
    if any(list(p.columns) != columns for p in parts[1:]):
        raise ValueError(f"segments with different columns: {[list(p.columns) for p in parts]}")
    total = sum(len(p) for p in parts)
    # categorical columns over shared categories: their codes per part
    unified: dict[str, tuple[pd.Index, list[np.ndarray]]] = {}
    for name in columns:
        pieces = [p[name] for p in parts]
        if all(isinstance(c.dtype, pd.CategoricalDtype) for c in pieces):
            categories = _unified_categories(pieces)
            unified[name] = (categories, [_codes(c, categories) for c in pieces])
    series_columns = list(series_columns or [])
    grid = None
    positions = None
    if layout == "series_major":
        if all(c in unified for c in series_columns):
            grid = _dense_layout(parts, series_columns, {c: unified[c][1] for c in series_columns})
        if grid is None:
            positions = _series_major_positions(parts, series_columns)

    def place(values: list[np.ndarray], dtype) -> np.ndarray:
        return _place_grid(values, grid, dtype) if grid is not None else _place(values, positions, total, dtype)

    out: dict[str, Any] = {}
    for name in columns:
        pieces = [p[name] for p in parts]
        if name in unified:
            categories, codes_list = unified[name]
            if grid is not None and name in series_columns and name in plain:
                # an id column of a grid: each series' id once per period, without placing codes first
                per_series = codes_list[0].reshape(-1, grid[0])[:, 0]
                out[name] = np.repeat(_expanded(categories, per_series), sum(grid))
                plain = plain - {name}
                continue
            dtype = np.result_type(*[c.dtype for c in codes_list])
            out[name] = pd.Categorical.from_codes(place(codes_list, dtype), dtype=pd.CategoricalDtype(categories, ordered=pieces[0].cat.ordered))
        else:
            dtypes = {c.dtype for c in pieces}
            if len(dtypes) != 1 or isinstance(pieces[0].dtype, pd.api.extensions.ExtensionDtype):
                if layout == "series_major":
                    raise ValueError(f"column {name!r}: segments of different or extension dtypes {dtypes}")
                out[name] = pd.concat(pieces, ignore_index=True)
                continue
            out[name] = place([c.to_numpy() for c in pieces], pieces[0].dtype)
    frame = pd.DataFrame(out, copy=False)
    return _expand_dictionary_columns(frame, plain)


def _place(values: list[np.ndarray], positions: list[np.ndarray] | None, total: int, dtype) -> np.ndarray:
    if positions is None:
        return np.concatenate(values).astype(dtype, copy=False)
    out = np.empty(total, dtype=dtype)
    for part, where in zip(values, positions):
        out[where] = part
    return out
