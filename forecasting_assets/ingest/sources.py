"""Reading a source folder: its ``SourceSpec`` (from ``source.yaml`` or inferred), raw sales and calendar.

Two layouts are understood:

* **m5** — one row per bottom series, the id columns (``item_id, dept_id, cat_id, store_id, state_id`` or a
  subset) and one column per day ``d_1 … d_N``. Day ``d_k`` is dated with the folder's ``calendar.csv[.gz]``
  (columns ``d`` and ``date``); without a calendar, ``d_1`` is 2011-01-29 (the first M5 day) and ``d_k`` is
  ``k - 1`` days later. When the bottom is item × store and ``sell_prices.csv[.gz]`` is present, the weekly
  ``sell_price`` is joined through the calendar's ``wm_yr_wk``.
* **long** — one row per series and period: id columns, a date column, a target column, optionally a price
  column; CSV (optionally gzipped) or Parquet; several files are concatenated.

``read_raw_sales`` returns the rows *as read* (dates as strings, values unparsed where they are not numbers);
parsing and row-level checks happen in :mod:`forecasting_assets.ingest.validation`.

Memory: id columns, ``ds`` and ``source_file`` of the raw frame are pandas ``Categorical`` columns whose
categories are the exact strings of the file (a 59 M-row M5 item-level frame takes ~1.7 GB, 2.2 GB with
prices); the M5 melt is a numpy reshape. ``y``/``price`` are float64, or, when some value is not a number, text
(``str``/``None`` only, so the frame stores as Parquet). Combine raw frames with ``concat_raw_sales``. Fully empty lines (a blank line, or only delimiters) carry no data and are skipped; the line
numbers of the other rows stay exact (``source_row`` counts the header as line 1; for Parquet it is the 1-based
row number). Quoted fields spanning several lines would shift the line numbers.
"""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from forecasting_assets.spec import (
    M5_ID_COLUMNS,
    M5_LEVELS,
    SourceSpec,
    default_horizon,
    default_season_length,
)

SOURCE_YAML = "source.yaml"
M5_FIRST_DAY = "2011-01-29"  # date of d_1 when a folder has no calendar (the M5 competition's first day)
SALES_SUFFIXES = (".csv", ".csv.gz", ".parquet")
ALLOWED_KEYS = (
    "format",
    "file",
    "date_column",
    "target_column",
    "price_column",
    "frequency",
    "levels",
    "season_length",
    "horizon",
    "calendar_file",
    "prices_file",
)
# SourceSpec fields in declaration order (the order of ``spec.inferred``).
_SPEC_FIELDS = (
    "format",
    "files",
    "frequency",
    "levels",
    "season_length",
    "horizon",
    "date_column",
    "target_column",
    "price_column",
    "calendar_file",
    "prices_file",
)
# Strings read as a missing number in target / price columns (pandas' defaults).
NA_STRINGS = ["", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "null", "NULL", "None", "#N/A", "<NA>"]
DATE_COLUMN_NAMES = ("date", "ds", "day", "week", "week_start", "week_ending", "month", "period", "timestamp")
TARGET_COLUMN_NAMES = ("sales", "y", "units", "unit_sales", "quantity", "qty", "demand", "volume", "value")
PRICE_COLUMN_NAMES = ("price", "sell_price", "unit_price", "avg_price")

_DAY_COLUMN = re.compile(r"^d_(\d+)$")
_CALENDAR_FILE = re.compile(r"^calendar.*\.csv(\.gz)?$", re.IGNORECASE)
_PRICES_FILE = re.compile(r"^sell_prices.*\.csv(\.gz)?$", re.IGNORECASE)
_ID_NAME = re.compile(r"(^|_)(id|nbr|no|num|number|code|key)$", re.IGNORECASE)
_DELIMITERS = (";", "\t", "|")
_N_EXAMPLES = 3


class SourceError(ValueError):
    """A source file that cannot be read; the message names the file, the column and shows example lines."""


# --------------------------------------------------------------------------------------------------------------
# Low-level file access and error messages
# --------------------------------------------------------------------------------------------------------------


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(".parquet")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _example_lines(path: Path, n: int = _N_EXAMPLES) -> str:
    """The header and first ``n`` data lines (or Parquet rows) of a file, indented, for error messages."""
    try:
        if _is_parquet(path):
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(path).iter_batches(batch_size=n), None)
            if batch is None:
                return "  (no rows)"
            return "\n".join("  " + _shorten(line) for line in batch.to_pandas().to_string().splitlines())
        lines = []
        with _open_binary(path) as fh:
            for lineno, raw in enumerate(fh, start=1):
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n").lstrip("\ufeff")
                lines.append(f"  line {lineno}: {_shorten(text)}")
                if lineno > n:
                    break
        return "\n".join(lines) if lines else "  (no lines)"
    except Exception as exc:  # pragma: no cover - best effort inside an error path
        return f"  (could not show example lines: {exc})"


def _error(path: Path, problem: str, column: str | None = None, examples: bool = True) -> SourceError:
    """A SourceError naming the file, the column and showing the first lines."""
    where = f"{path.name}" + (f", column '{column}'" if column else "")
    message = f"{where}: {problem}"
    if examples:
        message += f"\nFirst lines of {path.name}:\n{_example_lines(path)}"
    return SourceError(message)


def _utf8_error(path: Path) -> SourceError:
    """Locate the first non-UTF-8 line of a file (only called after a decode failure)."""
    offset = 0
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad = raw[exc.start]
                text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                return _error(
                    path,
                    f"line {lineno} is not valid UTF-8: byte 0x{bad:02x} at position {exc.start + 1} of the line "
                    f"(byte offset {offset + exc.start} of the file): {_shorten(text)!r}. Save the file as UTF-8.",
                )
            offset += len(raw)
    return _error(path, "is not valid UTF-8. Save the file as UTF-8.")


def _head_lines(path: Path, n: int = 3) -> list[str]:
    """The first ``n`` non-blank lines of a text file, strictly decoded as UTF-8 (BOM removed)."""
    lines: list[str] = []
    try:
        with _open_binary(path) as fh:
            for raw in fh:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise _utf8_error(path) from None
                text = text.lstrip("\ufeff").rstrip("\r\n")
                if text.strip():
                    lines.append(text)
                if len(lines) >= n:
                    break
    except SourceError:
        raise
    except (OSError, EOFError) as exc:
        raise _error(path, f"cannot be read ({exc})", examples=False) from None
    return lines


def _parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        schema = pq.read_schema(path)
    except Exception as exc:
        raise _error(path, f"is not a readable Parquet file ({exc})", examples=False) from None
    if meta.num_rows == 0:
        raise _error(path, f"has columns {schema.names} but no data rows", examples=False)
    return list(schema.names)


def file_columns(path: Path) -> list[str]:
    """The column names of a sales file, checking it is non-empty, UTF-8, comma-delimited and has data rows."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path.name}: no such file in {path.parent}")
    if _is_parquet(path):
        return _parquet_columns(path)
    lines = _head_lines(path, n=2)
    if not lines:
        raise _error(path, "is empty (no header line)", examples=False)
    header = next(csv.reader([lines[0]]))
    if len(header) == 1:
        for delim in _DELIMITERS:
            if delim in header[0]:
                shown = "\\t" if delim == "\t" else delim
                raise _error(
                    path,
                    f"the header is a single column {_shorten(header[0], 80)!r} containing '{shown}': the file seems "
                    f"to be delimited by '{shown}', but comma-separated values are expected",
                    column=header[0] if len(header[0]) < 80 else None,
                )
    if len(lines) < 2:
        raise _error(path, f"has a header ({', '.join(header)}) but no data rows")
    return header


def _missing_columns_error(path: Path, missing: list[str], found: list[str], role: str = "required") -> SourceError:
    return _error(
        path,
        f"missing {role} column{'s' if len(missing) > 1 else ''} {', '.join(repr(c) for c in missing)} "
        f"(columns found: {', '.join(found)})",
        column=missing[0],
    )


def _day_columns(columns: Iterable[str]) -> list[str]:
    """The ``d_<k>`` columns, sorted by ``k``."""
    days = [c for c in columns if _DAY_COLUMN.match(c)]
    return sorted(days, key=lambda c: int(c[2:]))


# --------------------------------------------------------------------------------------------------------------
# source.yaml and spec inference
# --------------------------------------------------------------------------------------------------------------


def _read_source_yaml(folder: Path) -> dict[str, Any]:
    """The keys of ``folder/source.yaml`` ({} when absent), checked for unknown keys and basic types."""
    path = folder / SOURCE_YAML
    if not path.is_file():
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"{SOURCE_YAML}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError(f"{SOURCE_YAML}: expected a mapping of keys, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in ALLOWED_KEYS)
    if unknown:
        raise SourceError(
            f"{SOURCE_YAML}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
            f"(allowed: {', '.join(ALLOWED_KEYS)})"
        )
    if "format" in data and data["format"] not in ("m5", "long"):
        raise SourceError(f"{SOURCE_YAML}: format must be 'm5' or 'long', got {data['format']!r}")
    if "file" in data:
        files = data["file"]
        files = [files] if isinstance(files, str) else files
        if not isinstance(files, list) or not files or not all(isinstance(f, str) for f in files):
            raise SourceError(f"{SOURCE_YAML}: file must be a file name or a list of file names, got {data['file']!r}")
        data["file"] = files
    if "frequency" in data:
        from pandas.tseries.frequencies import to_offset

        try:
            to_offset(str(data["frequency"]))
        except ValueError:
            raise SourceError(f"{SOURCE_YAML}: frequency {data['frequency']!r} is not a pandas offset alias") from None
        data["frequency"] = str(data["frequency"])
    if "levels" in data:
        levels = data["levels"]
        if not isinstance(levels, list) or not all(
            isinstance(lv, list) and all(isinstance(c, str) for c in lv) for lv in (levels or [None])
        ):
            raise SourceError(f"{SOURCE_YAML}: levels must be a list of lists of column names, got {levels!r}")
    for key in ("season_length", "horizon"):
        if key in data and (not isinstance(data[key], int) or isinstance(data[key], bool) or data[key] < 1):
            raise SourceError(f"{SOURCE_YAML}: {key} must be a positive integer, got {data[key]!r}")
    for key in ("date_column", "target_column", "price_column", "calendar_file", "prices_file"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise SourceError(f"{SOURCE_YAML}: {key} must be a string, got {data[key]!r}")
    return data


def _detect_file(folder: Path, pattern: re.Pattern[str], preferred: tuple[str, ...]) -> str | None:
    for name in preferred:
        if (folder / name).is_file():
            return name
    matches = sorted(p.name for p in folder.iterdir() if p.is_file() and pattern.match(p.name))
    return matches[0] if matches else None


def detect_calendar_file(folder: Path) -> str | None:
    """``calendar.csv`` / ``calendar.csv.gz`` (else the first ``calendar*.csv[.gz]``) in ``folder``, or None."""
    return _detect_file(Path(folder), _CALENDAR_FILE, ("calendar.csv", "calendar.csv.gz"))


def detect_prices_file(folder: Path) -> str | None:
    """``sell_prices.csv`` / ``.csv.gz`` (else the first ``sell_prices*.csv[.gz]``) in ``folder``, or None."""
    return _detect_file(Path(folder), _PRICES_FILE, ("sell_prices.csv", "sell_prices.csv.gz"))


def candidate_sales_files(folder: Path, exclude: Iterable[str | None] = ()) -> list[str]:
    """Every ``*.csv``, ``*.csv.gz``, ``*.parquet`` of ``folder`` except calendar and prices files, sorted."""
    excluded = {e for e in exclude if e}
    names = []
    for path in sorted(Path(folder).iterdir()):
        name = path.name
        if not path.is_file() or name in excluded or not name.lower().endswith(SALES_SUFFIXES):
            continue
        if _CALENDAR_FILE.match(name) or _PRICES_FILE.match(name):
            continue
        names.append(name)
    return names


def _resolve_files(folder: Path, patterns: list[str]) -> list[str]:
    """File names (relative to ``folder``) named by ``source.yaml``'s ``file``; glob patterns allowed."""
    names: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            found = sorted(str(p.relative_to(folder)) for p in folder.glob(pattern) if p.is_file())
            if not found:
                raise SourceError(f"{SOURCE_YAML}: file pattern {pattern!r} matches no file in {folder}")
            names.extend(f for f in found if f not in names)
        else:
            if not (folder / pattern).is_file():
                raise SourceError(f"{SOURCE_YAML}: file {pattern!r} does not exist in {folder}")
            names.append(pattern)
    return names


def infer_levels(columns: Iterable[str], id_columns: Iterable[str] | None = None) -> list[list[str]]:
    """Hierarchy levels from the columns of a file.

    The ``M5_LEVELS`` (in order) whose columns are all present; if no M5 id column is present,
    ``[[]] + [[c] for c in id_columns] + [id_columns]`` (duplicates removed).
    """
    present = list(columns)
    if any(c in present for c in M5_ID_COLUMNS):
        return [list(cols) for cols in M5_LEVELS.values() if all(c in present for c in cols)]
    ids = list(id_columns) if id_columns is not None else []
    levels: list[list[str]] = [[]]
    for level in [[c] for c in ids] + [ids]:
        if level and level not in levels:
            levels.append(level)
    return levels


_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def infer_frequency(dates: Iterable[Any]) -> str:
    """A pandas offset alias for a set of dates (duplicates and NaT ignored).

    ``pd.infer_freq`` on the sorted unique dates when it answers; otherwise (gaps) the most common difference
    is mapped: 1 day → ``D``, 7 days → ``W-<weekday>``, 28–31 days → ``MS`` (``ME`` when the dates are month
    ends), 89–92 days → ``QS-<month>`` (``QE-<month>``), 365/366 days → ``YS-<month>`` (``YE-<month>``),
    else ``<n>D``. Fewer than two dates → ``D``.
    """
    index = pd.DatetimeIndex(dates).unique().dropna().sort_values()
    if len(index) < 2:
        return "D"
    if len(index) >= 3:
        freq = pd.infer_freq(index)
        if freq:
            return freq
    diffs = pd.Series(np.diff(index.asi8) // 86_400_000_000_000)
    step = int(diffs.mode().iloc[0])
    month_start = bool(index.is_month_start.mean() >= 0.5)
    month_end = bool(index.is_month_end.mean() >= 0.5) and not month_start
    first_month = _MONTHS[int(pd.Series(index.month).mode().iloc[0]) - 1]
    if step == 1:
        return "D"
    if step == 7:
        return f"W-{_WEEKDAYS[int(pd.Series(index.dayofweek).mode().iloc[0])]}"
    if 28 <= step <= 31:
        return "ME" if month_end else "MS"
    if 89 <= step <= 92:
        anchor = _MONTHS[(index[0].month - 1) % 12]
        return f"QE-{anchor}" if month_end else f"QS-{anchor}"
    if 365 <= step <= 366:
        return f"YE-{first_month}" if month_end else f"YS-{first_month}"
    return f"{step}D"


def _sample(path: Path, columns: list[str], nrows: int = 2000) -> pd.DataFrame:
    """The first rows of a file, every column as text (Parquet: as stored)."""
    if _is_parquet(path):
        import pyarrow.parquet as pq

        batch = next(pq.ParquetFile(path).iter_batches(batch_size=nrows, columns=columns), None)
        return batch.to_pandas() if batch is not None else pd.DataFrame(columns=columns)
    try:
        return pd.read_csv(
            path, usecols=columns, nrows=nrows, dtype=str, keep_default_na=False, encoding="utf-8-sig"
        )
    except UnicodeDecodeError:
        raise _utf8_error(path) from None


def _is_numeric_sample(values: pd.Series) -> bool:
    """True when the non-empty values of a sample all parse as numbers (numeric dtypes are numeric)."""
    if pd.api.types.is_bool_dtype(values):
        return False
    if pd.api.types.is_numeric_dtype(values):
        return True
    if not (pd.api.types.is_object_dtype(values) or pd.api.types.is_string_dtype(values)):
        return False
    text = values.dropna().astype(str).str.strip()
    text = text[~text.isin(NA_STRINGS)]
    return bool(len(text)) and bool(pd.to_numeric(text, errors="coerce").notna().all())


def _is_date_sample(values: pd.Series) -> bool:
    from forecasting_assets.ingest.validation import parse_date_strings

    if pd.api.types.is_datetime64_any_dtype(values):
        return True
    text = values.dropna().astype(str).str.strip()
    text = text[text != ""]
    if not len(text) or _is_numeric_sample(text):
        return False
    parsed, _ = parse_date_strings(pd.unique(text))
    return bool(pd.notna(parsed).mean() >= 0.9)


def _infer_long_columns(path: Path, header: list[str], given: dict[str, Any]) -> dict[str, Any]:
    """date/target/price columns and id columns of a long file (given ones kept)."""
    lower = {c.lower(): c for c in header}
    sample = _sample(path, header)
    out: dict[str, Any] = {}
    date_col = given.get("date_column")
    if date_col is None:
        date_col = next((lower[n] for n in DATE_COLUMN_NAMES if n in lower), None)
        if date_col is None:
            date_col = next((c for c in header if _is_date_sample(sample[c])), None)
        if date_col is None:
            raise _error(path, f"cannot infer the date column (columns found: {', '.join(header)}); "
                               f"set date_column in {SOURCE_YAML}")
    out["date_column"] = date_col
    price_col = given.get("price_column", "__infer__")
    if price_col == "__infer__":
        price_col = next((lower[n] for n in PRICE_COLUMN_NAMES if n in lower and lower[n] != date_col), None)
    out["price_column"] = price_col
    target_col = given.get("target_column")
    if target_col is None:
        target_col = next((lower[n] for n in TARGET_COLUMN_NAMES if n in lower and lower[n] != date_col), None)
    if target_col is None:
        numeric = [
            c
            for c in header
            if c not in (date_col, price_col) and not _ID_NAME.search(c) and _is_numeric_sample(sample[c])
        ]
        if len(numeric) != 1:
            raise _error(
                path,
                f"cannot infer the target column (numeric columns: {', '.join(numeric) or 'none'}); "
                f"set target_column in {SOURCE_YAML}",
            )
        target_col = numeric[0]
    out["target_column"] = target_col
    others = [c for c in header if c not in (date_col, target_col, price_col)]
    out["id_columns"] = [c for c in others if _ID_NAME.search(c) or not _is_numeric_sample(sample[c])]
    return out


def _unique_date_strings(folder: Path, files: list[str], column: str) -> np.ndarray:
    """The distinct values of a date column over several files, as strings."""
    values: list[np.ndarray] = []
    for name in files:
        path = folder / name
        if _is_parquet(path):
            col = pd.read_parquet(path, columns=[column])[column]
            values.append(np.asarray(pd.unique(_date_series_as_text(col).dropna())))
        else:
            try:
                col = pd.read_csv(
                    path, usecols=[column], dtype={column: "category"}, keep_default_na=False, encoding="utf-8-sig"
                )[column]
            except UnicodeDecodeError:
                raise _utf8_error(path) from None
            values.append(np.asarray(col.cat.categories.astype(str)))
    return np.unique(np.concatenate(values)) if values else np.array([], dtype=object)


def _primary_long_file(candidates: list[str], headers: dict[str, list[str]], given: dict[str, Any]) -> str:
    """The file the long-format columns are inferred from: the first holding the given date/target columns and,
    when the target is not given, a column with a usual target name (so lookup tables such as ``stores.csv``
    or ``holidays.csv`` are passed over); else the first file."""

    def fits(name: str) -> bool:
        cols = headers[name]
        if any(given.get(k) and given[k] not in cols for k in ("date_column", "target_column")):
            return False
        return bool(given.get("target_column")) or any(c.lower() in TARGET_COLUMN_NAMES for c in cols)

    return next((n for n in candidates if fits(n)), candidates[0])


def load_source_spec(folder: Path) -> SourceSpec:
    """The ``SourceSpec`` of a folder: ``source.yaml`` keys where given, every other key inferred.

    Inferred keys are listed in ``spec.inferred`` (``SourceSpec`` field names, e.g. ``files`` for the
    ``file`` key). Raises ``SourceError`` for unknown keys, missing files or unreadable sales files.
    """
    from forecasting_assets.ingest.validation import parse_date_strings

    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: source folder does not exist")
    given = _read_source_yaml(folder)
    values: dict[str, Any] = {}

    for key, detect in (("calendar_file", detect_calendar_file), ("prices_file", detect_prices_file)):
        if key in given:
            if given[key] is not None and not (folder / given[key]).is_file():
                raise SourceError(f"{SOURCE_YAML}: {key} {given[key]!r} does not exist in {folder}")
            values[key] = given[key]
        else:
            values[key] = detect(folder)

    if "file" in given:
        candidates = _resolve_files(folder, given["file"])
    else:
        candidates = candidate_sales_files(folder, exclude=(values["calendar_file"], values["prices_file"]))
        if not candidates:
            raise SourceError(f"{folder}: no sales file (*.csv, *.csv.gz, *.parquet other than calendar/prices)")
    headers = {name: file_columns(folder / name) for name in candidates}

    fmt = given.get("format") or ("m5" if any(_day_columns(h) for h in headers.values()) else "long")
    values["format"] = fmt

    if fmt == "m5":
        files = candidates if "file" in given else [n for n in candidates if _day_columns(headers[n])]
        if not files:
            raise SourceError(f"{folder}: format m5 but no file has d_1, d_2, … columns ({', '.join(candidates)})")
        for name in files:
            if not _day_columns(headers[name]):
                raise _missing_columns_error(folder / name, ["d_1"], headers[name], role="day")
        common = [c for c in headers[files[0]] if all(c in headers[n] for n in files) and not _DAY_COLUMN.match(c)]
        values["date_column"] = given.get("date_column", "date")
        values["target_column"] = given.get("target_column", "sales")
        item_store = "item_id" in common and "store_id" in common
        values["price_column"] = given.get(
            "price_column", "sell_price" if values["prices_file"] and item_store else None
        )
        values["levels"] = given["levels"] if "levels" in given else infer_levels(
            common, [c for c in common if c != "id"]
        )
        values["frequency"] = given.get("frequency", "D")
    else:
        primary = _primary_long_file(candidates, headers, given)
        cols = _infer_long_columns(folder / primary, headers[primary], given)
        needed = [cols["date_column"], cols["target_column"]]
        if "file" in given or len(candidates) == 1:
            files = candidates
        else:  # several candidate files: keep those holding the date and target columns (skip lookup tables)
            files = [n for n in candidates if all(c in headers[n] for c in needed)]
        for name in files:
            missing = [c for c in needed if c not in headers[name]]
            if missing:
                raise _missing_columns_error(folder / name, missing, headers[name])
        values.update({k: cols[k] for k in ("date_column", "target_column", "price_column")})
        values["levels"] = given["levels"] if "levels" in given else infer_levels(headers[primary], cols["id_columns"])
        if "frequency" in given:
            values["frequency"] = given["frequency"]
        else:
            parsed, _ = parse_date_strings(_unique_date_strings(folder, files, cols["date_column"]))
            values["frequency"] = infer_frequency(parsed)
    values["files"] = files
    values["season_length"] = given.get("season_length", default_season_length(values["frequency"]))
    values["horizon"] = given.get("horizon", default_horizon(values["frequency"]))
    yaml_to_field = {"file": "files"}
    given_fields = {yaml_to_field.get(k, k) for k in given}
    inferred = [f for f in _SPEC_FIELDS if f not in given_fields]
    return SourceSpec(
        format=values["format"],
        files=values["files"],
        frequency=values["frequency"],
        levels=values["levels"],
        season_length=int(values["season_length"]),
        horizon=int(values["horizon"]),
        date_column=values["date_column"],
        target_column=values["target_column"],
        price_column=values["price_column"],
        calendar_file=values["calendar_file"],
        prices_file=values["prices_file"],
        inferred=inferred,
    )


# --------------------------------------------------------------------------------------------------------------
# Raw sales
# --------------------------------------------------------------------------------------------------------------


def _as_string_categorical(values: Any) -> pd.Categorical:
    """A Categorical with sorted string categories (missing values stay missing; numbers become their text)."""
    if isinstance(values, (pd.Series, pd.Index)) and isinstance(values.dtype, pd.CategoricalDtype):
        cat = pd.Categorical(values)
    elif isinstance(values, pd.Categorical):
        cat = values
    else:
        cat = pd.Categorical(values)
    cats = cat.categories
    if len(cats) and pd.api.types.infer_dtype(cats, skipna=True) != "string":
        integral = pd.api.types.is_float_dtype(cats) and bool(np.all(np.mod(cats, 1) == 0))
        text = cats.astype(np.int64).astype(str) if integral else cats.astype(str)  # 1.0 → '1'
        text = pd.Index(text)
        if text.is_unique:
            cat = cat.rename_categories(text)
        else:  # e.g. 1 and "1": merge them
            codes = cat.codes
            cat = pd.Categorical(np.where(codes >= 0, np.asarray(text, dtype=object)[np.maximum(codes, 0)], None))
        cats = cat.categories
    if not cats.is_monotonic_increasing:
        cat = cat.reorder_categories(sorted(cats))
    return cat


def _date_series_as_text(col: pd.Series) -> pd.Series:
    """A date column as text: datetimes as ISO dates (with time when any has one), others as ``str``."""
    if pd.api.types.is_datetime64_any_dtype(col):
        has_time = bool((col.dropna() != col.dropna().dt.normalize()).any())
        return col.dt.strftime("%Y-%m-%d %H:%M:%S" if has_time else "%Y-%m-%d")
    if col.dtype == object:
        return col.map(lambda v: v.isoformat() if hasattr(v, "isoformat") else (None if v is None else str(v)))
    return col.astype(str).where(col.notna(), None)


def _text_values(col: pd.Series) -> pd.Series:
    """Values as text: an object column holding only ``str`` (``None`` where missing), so it stores as Parquet."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.astype(object)
    if pd.api.types.is_float_dtype(col):
        text = col.astype(str).str.replace(r"\.0$", "", regex=True)  # 3.0 → '3'
        return text.astype(object).where(col.notna(), None)
    obj = col.astype(object)
    missing = obj.isna()
    if pd.api.types.infer_dtype(obj, skipna=True) not in ("string", "empty"):
        obj = obj.astype(str)
    return obj.where(~missing, None)


def _values_column(col: pd.Series) -> pd.Series:
    """A target/price column: float64 when every value parses as a number, else its text (see ``_text_values``)."""
    if pd.api.types.is_bool_dtype(col):
        return _text_values(col.astype(str))
    if pd.api.types.is_numeric_dtype(col):
        return col.astype(np.float64)
    text = col.astype(object)
    present = text.notna() & ~text.astype(str).str.strip().isin(NA_STRINGS)
    numbers = pd.to_numeric(text.where(present), errors="coerce")
    if bool(numbers[present].notna().all()):
        return numbers.astype(np.float64)
    return _text_values(col)


def _drop_empty_rows(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Drop rows whose every field is empty or missing (blank lines)."""
    empty = np.ones(len(df), dtype=bool)
    for c in columns:
        col = df[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            blank_cats = np.asarray(col.cat.categories.astype(str).str.strip() == "")
            codes = col.cat.codes.to_numpy()
            empty &= (codes < 0) | blank_cats[np.maximum(codes, 0)] & (codes >= 0)
        elif col.dtype == object:
            empty &= (col.isna() | (col.astype(str).str.strip() == "")).to_numpy()
        else:
            empty &= col.isna().to_numpy()
        if not empty.any():
            return df
    return df.loc[~empty].reset_index(drop=True)


def _read_csv_checked(path: Path, **kwargs: Any) -> pd.DataFrame:
    """``pd.read_csv`` keeping empty cells as text, with errors turned into SourceErrors naming the file."""
    try:
        return pd.read_csv(path, keep_default_na=False, skip_blank_lines=False, encoding="utf-8-sig", **kwargs)
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise _error(path, f"cannot be parsed as CSV ({exc})") from None


def _read_long_file(folder: Path, name: str, spec: SourceSpec) -> pd.DataFrame:
    """One long CSV/Parquet file → hierarchy columns, ds, y, [price], source_file, source_row."""
    path = folder / name
    header = file_columns(path)
    hier = spec.hierarchy_columns
    wanted = hier + [spec.date_column, spec.target_column] + ([spec.price_column] if spec.price_column else [])
    missing = [c for c in wanted if c not in header]
    if missing:
        raise _missing_columns_error(path, missing, header)
    if _is_parquet(path):
        df = pd.read_parquet(path, columns=wanted)
        df.insert(len(df.columns), "source_row", np.arange(1, len(df) + 1, dtype=np.int64))
        for c in hier:
            df[c] = _as_string_categorical(df[c])
        df[spec.date_column] = _as_string_categorical(_date_series_as_text(df[spec.date_column]))
    else:
        dtypes: dict[str, Any] = {c: "category" for c in hier + [spec.date_column]}
        value_cols = [spec.target_column] + ([spec.price_column] if spec.price_column else [])
        df = _read_csv_checked(path, usecols=wanted, dtype=dtypes, na_values={c: NA_STRINGS for c in value_cols})
        df["source_row"] = np.arange(2, len(df) + 2, dtype=np.int64)
        df = _drop_empty_rows(df, wanted)
        if df.empty:
            raise _error(path, "has a header but no data rows")
        for c in hier + [spec.date_column]:
            df[c] = _as_string_categorical(df[c])
    out = pd.DataFrame({c: df[c] for c in hier})
    out["ds"] = df[spec.date_column].array
    out["y"] = _values_column(df[spec.target_column])
    if spec.price_column:
        out["price"] = _values_column(df[spec.price_column])
    out["source_file"] = pd.Categorical.from_codes(np.zeros(len(df), dtype=np.int8), categories=[name])
    out["source_row"] = df["source_row"].to_numpy()
    return out


def _calendar_days(folder: Path, spec: SourceSpec, day_cols: list[str]) -> tuple[list[str], np.ndarray | None]:
    """Date strings of the ``d_k`` columns (from the calendar, else from 2011-01-29) and their ``wm_yr_wk``."""
    cal_name = spec.calendar_file
    if cal_name is not None:
        path = folder / cal_name
        try:
            cal = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        except UnicodeDecodeError:
            raise _utf8_error(path) from None
        if "d" in cal.columns and "date" in cal.columns:
            by_day = cal.set_index("d")
            missing = [d for d in day_cols if d not in by_day.index]
            if missing:
                raise _error(
                    path,
                    f"has no date for {len(missing)} day column(s) of the sales ({', '.join(missing[:5])}…)",
                    column="d",
                )
            dates = by_day.loc[day_cols, "date"].tolist()
            weeks = None
            if "wm_yr_wk" in cal.columns:
                weeks = pd.to_numeric(by_day.loc[day_cols, "wm_yr_wk"], errors="coerce").to_numpy()
            return dates, weeks
    first = pd.Timestamp(M5_FIRST_DAY)
    numbers = np.array([int(d[2:]) for d in day_cols])
    dates = (first + pd.to_timedelta(numbers - 1, unit="D")).strftime("%Y-%m-%d").tolist()
    return dates, None


def _price_matrix(folder: Path, spec: SourceSpec, ids: pd.DataFrame, weeks: np.ndarray | None) -> np.ndarray:
    """Daily prices (rows × days, flattened) of item × store rows from ``sell_prices`` via ``wm_yr_wk``."""
    path = folder / str(spec.prices_file)
    if weeks is None:
        raise _error(path, "cannot be joined: the calendar (with d, date, wm_yr_wk) is missing", examples=False)
    header = file_columns(path)
    needed = ["store_id", "item_id", "wm_yr_wk", "sell_price"]
    missing = [c for c in needed if c not in header]
    if missing:
        raise _missing_columns_error(path, missing, header)
    try:
        prices = pd.read_csv(
            path,
            usecols=needed,
            dtype={"store_id": str, "item_id": str},
            keep_default_na=False,
            na_values={"sell_price": NA_STRINGS, "wm_yr_wk": NA_STRINGS},
            encoding="utf-8-sig",
        )
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    rows = pd.DataFrame(
        {"store_id": ids["store_id"].astype(str).to_numpy(), "item_id": ids["item_id"].astype(str).to_numpy()}
    )
    rows["_row"] = np.arange(len(rows))
    joined = prices.merge(rows, on=["store_id", "item_id"], how="inner")
    week_index = pd.Index(pd.unique(weeks[~np.isnan(weeks)]))
    w = week_index.get_indexer(pd.to_numeric(joined["wm_yr_wk"], errors="coerce"))
    keep = w >= 0
    value = _values_column(joined["sell_price"])
    numeric = isinstance(value, pd.Series) and value.dtype == np.float64
    shape = (len(rows), len(week_index) + 1)
    matrix = np.full(shape, np.nan, dtype=np.float64) if numeric else np.full(shape, None, dtype=object)
    matrix[joined["_row"].to_numpy()[keep], w[keep]] = np.asarray(value)[keep]
    day_week = week_index.get_indexer(weeks)  # -1 → the all-NaN last column
    return matrix[:, day_week].reshape(-1)


def _read_m5_file(folder: Path, name: str, spec: SourceSpec) -> pd.DataFrame:
    """One M5 wide file melted (numpy reshape) → hierarchy columns, ds, y, [price], source_file, source_row."""
    path = folder / name
    header = file_columns(path)
    hier = spec.hierarchy_columns
    missing = [c for c in hier if c not in header]
    if missing:
        raise _missing_columns_error(path, missing, header)
    day_cols = _day_columns(header)
    if not day_cols:
        raise _missing_columns_error(path, ["d_1"], header, role="day")
    wide = _read_csv_checked(path, usecols=hier + day_cols, dtype={c: str for c in hier}, na_values={d: NA_STRINGS for d in day_cols})
    wide["_line"] = np.arange(2, len(wide) + 2, dtype=np.int64)
    wide = _drop_empty_rows(wide, hier + day_cols)
    if wide.empty:
        raise _error(path, "has a header but no data rows")
    n_rows, n_days = len(wide), len(day_cols)
    dates, weeks = _calendar_days(folder, spec, day_cols)

    out: dict[str, Any] = {}
    for c in hier:
        cat = _as_string_categorical(wide[c])
        out[c] = pd.Categorical.from_codes(np.repeat(cat.codes, n_days), categories=cat.categories)
    date_codes, date_cats = pd.factorize(pd.Index(dates), sort=True)
    out["ds"] = pd.Categorical.from_codes(np.tile(date_codes.astype(np.int32), n_rows), categories=date_cats)
    block = wide[day_cols]
    if all(pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in block.dtypes):
        out["y"] = block.to_numpy(dtype=np.float64).reshape(-1)
        del block
    else:  # some day column holds text: keep the exact text of every cell (rare; costs memory)
        del block
        text = pd.read_csv(
            path,
            usecols=day_cols,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
        out["y"] = text[day_cols].to_numpy(dtype=object)[wide["_line"].to_numpy() - 2].reshape(-1)
        del text
    if spec.prices_file and "item_id" in hier and "store_id" in hier:
        out["price"] = _price_matrix(folder, spec, wide[["store_id", "item_id"]], weeks)
    out["source_file"] = pd.Categorical.from_codes(np.zeros(n_rows * n_days, dtype=np.int8), categories=[name])
    out["source_row"] = np.repeat(wide["_line"].to_numpy(), n_days)
    return pd.DataFrame(out)


def concat_raw_sales(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate raw sales frames (e.g. the source and the landing folder) keeping the raw-frame contract.

    Use it instead of ``pd.concat``: text columns are merged as Categoricals (``pd.concat`` turns categoricals
    with different categories into object columns), ``y``/``price`` stay float64 when every part is numeric and
    otherwise become text in every part (a column mixing floats and strings cannot be written to Parquet), a
    column missing from some parts (``price``) is filled with NaN.
    """
    frames = [f for f in frames if f is not None]
    if len(frames) == 1:
        return frames[0]
    from pandas.api.types import union_categoricals

    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    out: dict[str, Any] = {}
    for c in columns:
        parts = [f[c] if c in f.columns else pd.Series(np.nan, index=f.index) for f in frames]
        if c in ("y", "price"):
            parts = [_values_column(p) for p in parts]
            if all(p.dtype == np.float64 for p in parts):
                out[c] = np.concatenate([p.to_numpy() for p in parts])
            else:
                out[c] = pd.concat([_text_values(p) for p in parts], ignore_index=True)
        elif c == "source_row":
            out[c] = np.concatenate([p.to_numpy() for p in parts])
        else:
            out[c] = union_categoricals([_as_string_categorical(p) for p in parts], sort_categories=True)
    return pd.DataFrame(out)


def parse_cache_key(folder: Path, name: str, spec: SourceSpec) -> tuple[str, str]:
    """What one parsed sales file depends on, as (what is read and how, which version of it): the file's path,
    the spec and this module's code; and the size, modification time and inode of the file, the calendar and
    the prices file (M5 wide files are dated and priced from them)."""
    import hashlib
    import json

    reading = hashlib.sha256(Path(__file__).read_bytes())
    reading.update(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode())
    reading.update(str((Path(folder) / name).resolve()).encode())
    version = hashlib.sha256()
    for part in dict.fromkeys([name, spec.calendar_file, spec.prices_file]):
        if part:
            path = (Path(folder) / part).resolve()
            stat = path.stat() if path.exists() else None
            identity = f"{path}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}" if stat else f"{path}:absent"
            version.update(identity.encode())
    return reading.hexdigest()[:12], version.hexdigest()[:16]


def read_parsed(folder: Path, name: str, spec: SourceSpec, reader) -> pd.DataFrame:
    """``reader(folder, name, spec)``, through a Parquet cache of the parsed rows in ``data/.cache/sources``.

    Parsing an M5-size wide CSV (30,490 rows × 1,941 days, with its prices) takes ~20 s every run, the
    nightly refresh included, although the source folder rarely changes; its Parquet copy reads in a few
    seconds. An entry is keyed by :func:`parse_cache_key`, so a changed file (or spec, or parser) is parsed
    again; one entry is kept per file and way of reading it (two specs reading one file do not evict each
    other). A file whose values did not all parse as numbers
    is never cached (its text is kept as text, and its errors are reported from the file itself).
    """
    from forecasting_assets.paths import data_dir
    from forecasting_assets.storage.files import write_parquet

    folder = Path(folder)
    cache = data_dir() / ".cache" / "sources"
    reading, version = parse_cache_key(folder, name, spec)
    prefix = f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}__{reading}"
    entry = cache / f"{prefix}__{version}.parquet"
    if entry.exists():
        try:
            return pd.read_parquet(entry)
        except Exception:  # noqa: BLE001 — an unreadable entry is parsed again and replaced
            entry.unlink(missing_ok=True)
    frame = reader(folder, name, spec)
    for stale in cache.glob(f"{prefix}__*.parquet"):  # of an earlier version of the files
        stale.unlink(missing_ok=True)
    if all(frame[c].dtype == np.float64 for c in ("y", "price") if c in frame.columns):
        write_parquet(frame, entry)
    return frame


def read_raw_sales(folder: Path, spec: SourceSpec, cached: bool = False) -> pd.DataFrame:
    """The bottom-level rows of the sales files as read, in long form.

    Columns: every hierarchy column of ``spec`` and ``ds`` (the date text of the file) as Categoricals of
    strings, ``y`` (float64 when every value parses as a number, else object holding the raw strings),
    ``price`` (only with a price source; same rule), ``source_file`` (categorical file name) and ``source_row``
    (1-based line number, header = line 1; for M5 wide files the line of the wide row; for Parquet the row
    number). Raises ``SourceError`` for an empty file, a header without rows, a wrong delimiter, non-UTF-8
    bytes or a missing column.

    ``cached``: through the parse cache (:func:`read_parsed`), for a source folder read on every run; landing
    files are read once or twice each and are not cached.
    """
    folder = Path(folder)
    if not spec.files:
        raise SourceError(f"{folder}: the spec names no sales file")
    reader = _read_m5_file if spec.format == "m5" else _read_long_file
    frames = [read_parsed(folder, name, spec, reader) if cached else reader(folder, name, spec) for name in spec.files]
    raw = concat_raw_sales(frames)
    order = spec.hierarchy_columns + ["ds", "y"] + (["price"] if "price" in raw.columns else [])
    return raw[order + ["source_file", "source_row"]]


# --------------------------------------------------------------------------------------------------------------
# Calendar
# --------------------------------------------------------------------------------------------------------------


def _join_nonempty(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Row-wise ``'|'.join`` of the non-empty values of ``columns`` (vectorized)."""
    result = pd.Series("", index=frame.index, dtype=object)
    for c in columns:
        value = frame[c].fillna("").astype(str).str.strip()
        joined = result.where(value == "", result + "|" + value)
        result = value.where(result == "", joined)
    return result


def read_calendar(folder: Path, spec: SourceSpec) -> pd.DataFrame | None:
    """The folder's calendar: ``ds`` (datetime64[ns]), ``event_name``, ``event_type``, ``snap_<STATE>`` (int8).

    Event names (types) of a day are joined with ``|`` (empty string when none). Every calendar row is kept,
    including days past the sales (known future). None when ``spec.calendar_file`` is None (no calendar).
    """
    from forecasting_assets.ingest.validation import parse_date_strings

    folder = Path(folder)
    if spec.calendar_file is None:
        return None
    path = folder / spec.calendar_file
    header = file_columns(path)
    date_col = next((c for c in ("date", "ds") if c in header), None)
    if date_col is None:
        raise _missing_columns_error(path, ["date"], header)
    try:
        cal = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _utf8_error(path) from None
    parsed, fmt = parse_date_strings(cal[date_col].to_numpy())
    bad = np.flatnonzero(pd.isna(parsed))
    if len(bad):
        raise _error(
            path,
            f"{len(bad)} unparsable date(s), e.g. {cal[date_col].iloc[bad[0]]!r} on line {bad[0] + 2} "
            f"(expected format {fmt})",
            column=date_col,
        )
    out = pd.DataFrame({"ds": pd.DatetimeIndex(parsed).astype("datetime64[ns]")})
    name_cols = sorted(c for c in cal.columns if re.fullmatch(r"event_name(_\d+)?", c))
    type_cols = sorted(c for c in cal.columns if re.fullmatch(r"event_type(_\d+)?", c))
    out["event_name"] = _join_nonempty(cal, name_cols).to_numpy() if name_cols else ""
    out["event_type"] = _join_nonempty(cal, type_cols).to_numpy() if type_cols else ""
    for c in (c for c in cal.columns if c.startswith("snap_")):
        values = pd.to_numeric(cal[c].replace("", "0"), errors="coerce")
        if values.isna().any():
            i = int(np.flatnonzero(values.isna())[0])
            raise _error(path, f"non-numeric value {cal[c].iloc[i]!r} on line {i + 2}", column=c)
        out[c] = values.astype(np.int8).to_numpy()
    return out.sort_values("ds", kind="stable").reset_index(drop=True)
