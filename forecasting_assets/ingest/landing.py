"""The landing folder: new sales files are taken in exactly once, archived or rejected with a reason.

Layout (default ``data/landing``)::

    data/landing/                 drop new sales files here (long: id columns, date, sales; or M5 wide: ids, d_N)
    data/landing/archive/         accepted files, renamed ``<sha256[:12]>__<name>``, never modified again
    data/landing/archive/manifest.json   one entry per accepted file: its batch key, hash, days, rows
    data/landing/rejected/        refused files, each with ``<name>.reason.txt`` beside it

A file is picked up only when it is complete: hidden names (``.name``) and names ending in ``.tmp``,
``.part`` or ``.partial`` are ignored (write under such a name, then rename), and the file must not have
been modified for ``settle_seconds``. Symbolic links and anything that is not a regular file inside the
folder are rejected, never followed. A file whose content (SHA-256) was already accepted is rejected as a
duplicate, so re-dropping a file never ingests it twice.

Each accepted file becomes one *landing batch*: a partition of the ``landed_sales`` asset keyed
``<first day>_<last day>_<sha256[:8]>``. A late file for an older day is a new batch; only that batch and
what depends on it is re-materialized, and its rows supersede older rows with the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from forecasting_assets.ingest.sources import SourceError, file_columns, infer_frequency, load_source_spec, read_raw_sales
from forecasting_assets.spec import SourceSpec, freq_family
from forecasting_assets.storage.files import write_json, write_text

LANDING_SUFFIXES = (".csv", ".csv.gz", ".parquet")
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial")
ARCHIVE = "archive"
REJECTED = "rejected"
MANIFEST = "manifest.json"
DAY_COLUMN = re.compile(r"^d_\d+$")  # the day columns of the M5 wide format
LARGE_FILE_FACTOR = 5.0  # rows per day above this multiple of the earlier batches' median are flagged
UNUSUALLY_LARGE = "unusually large"  # how a batch's notes flag such a file (the landing sensor alerts on it)


@dataclass
class LandingBatch:
    """One accepted landing file."""

    key: str  # partition key of landed_sales
    sha256: str
    original_name: str
    archived_name: str
    first_day: str
    last_day: str
    days: int
    rows: int
    archived_at: str
    notes: str = ""  # what was unusual but not wrong (ignored columns, an unusually large file)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class LandingScan:
    """What one look at the landing folder found and did."""

    accepted: list[LandingBatch] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    waiting: list[str] = field(default_factory=list)  # still being written (not settled)


def landing_spec(spec: SourceSpec, files: list[str]) -> SourceSpec:
    """How landing files are read: long format with the source's id columns, ``date`` and ``sales``
    (or the long source's own date/target column names)."""
    long_source = spec.format == "long"
    return replace(
        spec,
        format="long",
        files=files,
        date_column=spec.date_column if long_source else "date",
        target_column=spec.target_column if long_source else "sales",
        price_column=spec.price_column if long_source else None,
    )


def content_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_landing_name(name: str) -> bool:
    """A complete sales file name (not hidden, not a temp name, a supported suffix)."""
    return not name.startswith(".") and not name.endswith(IN_PROGRESS_SUFFIXES) and name.endswith(LANDING_SUFFIXES)


def read_manifest(folder: Path) -> list[LandingBatch]:
    path = Path(folder) / ARCHIVE / MANIFEST
    if not path.exists():
        return []
    return [LandingBatch(**entry) for entry in json.loads(path.read_text())]


def _write_manifest(folder: Path, batches: list[LandingBatch]) -> None:
    write_json([b.to_dict() for b in batches], Path(folder) / ARCHIVE / MANIFEST)


def find_batch(folder: Path, key: str) -> LandingBatch:
    """The manifest entry of a landing batch (raises KeyError naming the key when unknown)."""
    for batch in read_manifest(folder):
        if batch.key == key:
            return batch
    raise KeyError(f"landing batch {key!r} is not in {Path(folder) / ARCHIVE / MANIFEST}")


def source_spec_for_landing(source_folder: Path) -> SourceSpec:
    """The source folder's spec with its calendar as an absolute path, so that a wide (M5) landing file
    elsewhere can map its ``d_N`` columns to dates with the source's calendar."""
    spec = load_source_spec(Path(source_folder))
    if spec.calendar_file is not None:
        spec = replace(spec, calendar_file=str((Path(source_folder) / spec.calendar_file).resolve()))
    return spec


def read_landing_file(folder: Path, name: str, spec: SourceSpec) -> pd.DataFrame:
    """Rows of one landing file in the raw-sales contract (see ``read_raw_sales``). Either format: a file
    with ``d_N`` columns is a wide M5 fragment (dates from the source's calendar, see
    ``source_spec_for_landing``); any other is long (id columns, ``date``, ``sales``)."""
    folder = Path(folder)
    if any(DAY_COLUMN.match(c) for c in file_columns(folder / name)):
        return read_raw_sales(folder, replace(spec, format="m5", files=[name], prices_file=None))
    return read_raw_sales(folder, landing_spec(spec, [name]))


def read_landing(folder: Path, spec: SourceSpec) -> pd.DataFrame | None:
    """Every complete sales file directly in ``folder``, read together, or None when there is none."""
    folder = Path(folder)
    names = [p.name for p in sorted(folder.iterdir()) if p.is_file() and is_landing_name(p.name)] if folder.is_dir() else []
    return read_raw_sales(folder, landing_spec(spec, names)) if names else None


def _inspect(folder: Path, name: str, spec: SourceSpec) -> tuple[int, list[str]]:
    """Rows and distinct sales days (ISO dates) of a landing file. Unparsable dates are left to validation,
    but a file is refused (``SourceError``) when it cannot be read, when no date parses, or when its dates
    follow another frequency than the source's (weekly totals in a daily source would read as one day's
    sales followed by six days without any)."""
    rows = read_landing_file(folder, name, spec)
    dates = pd.to_datetime(pd.Series(rows["ds"].astype(str).unique()), errors="coerce").dropna()
    date_column = landing_spec(spec, []).date_column
    if dates.empty:
        examples = ", ".join(map(str, rows["ds"].astype(str).unique()[:3]))
        raise SourceError(f"{Path(folder) / name}: no parsable date in column {date_column!r} (examples: {examples})")
    if dates.nunique() >= 3:
        frequency = infer_frequency(dates)
        if freq_family(frequency) != freq_family(spec.frequency):
            examples = ", ".join(d.date().isoformat() for d in sorted(dates)[:3])
            raise SourceError(
                f"{Path(folder) / name}, column {date_column!r}: the dates follow frequency {frequency} "
                f"but the source's frequency is {spec.frequency} (first dates: {examples}); "
                "aggregate or split the file to the source's frequency"
            )
    return len(rows), sorted({d.date().isoformat() for d in dates})


def ignored_columns(folder: Path, name: str, spec: SourceSpec) -> list[str]:
    """Columns of a landing file that the pipeline does not read."""
    header = file_columns(Path(folder) / name)
    if any(DAY_COLUMN.match(c) for c in header):
        used = set(spec.hierarchy_columns) | {"id"}
        return [c for c in header if c not in used and not DAY_COLUMN.match(c)]
    long = landing_spec(spec, [])
    used = set(spec.hierarchy_columns) | {long.date_column, long.target_column} | ({long.price_column} if long.price_column else set())
    return [c for c in header if c not in used]


def _notes(folder: Path, name: str, spec: SourceSpec, rows: int, days: list[str], earlier: list[LandingBatch]) -> str:
    """What is unusual about an accepted file: columns it carries that are not read, and a row count per day
    far above the earlier batches' (a repeated export, a wider extract): the rows are still validated."""
    notes = []
    extra = ignored_columns(folder, name, spec)
    if extra:
        notes.append(f"ignored columns: {', '.join(extra)}")
    if earlier:
        usual = float(pd.Series([b.rows / max(b.days, 1) for b in earlier]).median())
        per_day = rows / max(len(days), 1)
        if usual > 0 and per_day > LARGE_FILE_FACTOR * usual:
            notes.append(
                f"{UNUSUALLY_LARGE}: {per_day:.0f} rows per day, {per_day / usual:.1f}x the median of the earlier "
                f"batches ({usual:.0f})"
            )
    return "; ".join(notes)


def _unique_target(folder: Path, name: str) -> Path:
    target = folder / name
    if not target.exists() and not target.with_name(target.name + ".reason.txt").exists():
        return target
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return folder / f"{stamp}__{name}"


def reject(folder: Path, path: Path, reason: str) -> Path:
    """Move ``path`` to ``rejected/`` with ``<name>.reason.txt`` beside it."""
    rejected = Path(folder) / REJECTED
    rejected.mkdir(parents=True, exist_ok=True)
    target = _unique_target(rejected, path.name)
    write_text(reason.rstrip() + "\n", target.with_name(target.name + ".reason.txt"))
    if path.is_symlink():
        path.unlink()  # the link itself, never its target
    else:
        shutil.move(str(path), str(target))
    return target


def _problem(folder: Path, path: Path) -> str | None:
    """Why ``path`` must not be taken in (None: it may)."""
    if path.is_symlink():
        return "symbolic links are not followed; copy the file into the landing folder"
    if not path.is_file():
        return "not a regular file"
    if path.resolve().parent != Path(folder).resolve():
        return "resolves outside the landing folder"
    return None


def _batch(sha: str, original_name: str, archived_name: str, days: list[str], rows: int, notes: str = "") -> LandingBatch:
    return LandingBatch(
        key=f"{days[0]}_{days[-1]}_{sha[:8]}",
        sha256=sha,
        original_name=original_name,
        archived_name=archived_name,
        first_day=days[0],
        last_day=days[-1],
        days=len(days),
        rows=rows,
        archived_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        notes=notes,
    )


def _recover_orphans(folder: Path, spec: SourceSpec, manifest: list[LandingBatch]) -> list[LandingBatch]:
    """Archived files missing from the manifest (a crash between the move and the manifest write): added to
    ``manifest`` (and written); returns the recovered batches."""
    archive = folder / ARCHIVE
    known = {b.archived_name for b in manifest}
    orphans = [p for p in sorted(archive.glob("*__*")) if is_landing_name(p.name) and p.name not in known] if archive.is_dir() else []
    recovered = []
    for path in orphans:
        rows, days = _inspect(archive, path.name, spec)
        recovered.append(_batch(content_hash(path), path.name.split("__", 1)[1], path.name, days, rows))
    if recovered:
        manifest.extend(recovered)
        _write_manifest(folder, manifest)
    return recovered


def scan_landing(
    folder: Path, spec: SourceSpec, settle_seconds: float = 5.0, now: float | None = None
) -> LandingScan:
    """Archive every settled new file (or reject it with a reason) and record it in the manifest."""
    folder = Path(folder)
    scan = LandingScan()
    if not folder.is_dir():
        return scan
    now = datetime.now(timezone.utc).timestamp() if now is None else now
    manifest = read_manifest(folder)
    # accepted by a tick that crashed before writing the manifest: reported as accepted now (decision log)
    scan.accepted.extend(_recover_orphans(folder, spec, manifest))
    by_hash = {b.sha256: b for b in manifest}
    for path in sorted(folder.iterdir()):
        if not is_landing_name(path.name):  # also skips archive/ and rejected/
            continue
        problem = _problem(folder, path)
        if problem is None and now - path.stat().st_mtime < settle_seconds:
            scan.waiting.append(path.name)
            continue
        if problem is None:
            sha = content_hash(path)
            if sha in by_hash:
                problem = f"duplicate: the same content was already ingested as {by_hash[sha].archived_name} (batch {by_hash[sha].key})"
        if problem is None:
            try:
                rows, days = _inspect(folder, path.name, spec)
            except SourceError as error:
                problem = str(error)
        if problem is not None:
            reject(folder, path, problem)
            scan.rejected.append((path.name, problem))
            continue
        batch = _batch(sha, path.name, f"{sha[:12]}__{path.name}", days, rows, _notes(folder, path.name, spec, rows, days, manifest))
        archive = folder / ARCHIVE
        archive.mkdir(parents=True, exist_ok=True)
        os.replace(path, archive / batch.archived_name)
        manifest.append(batch)
        by_hash[sha] = batch
        _write_manifest(folder, manifest)  # after each move: a crash never loses an archived file
        scan.accepted.append(batch)
    return scan
