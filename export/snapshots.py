"""Snapshots for researchers: dated, reproducible files of every list, with a manifest.

``write_snapshot`` writes one file per list (Parquet, CSV, JSON Lines or XLSX; or one FollowTheMoney
file per source), a data dictionary generated from the schema, and ``manifest.json``: schema
and software version, the as-of date, each list's vouching run with its health, row counts,
and the sha256 of every file. Nothing in them depends on when or where they were written, so
the same database, arguments and software give the same bytes.

Records stream from ``storage.asof`` list by list; Parquet is converted ``CHUNK`` rows at a
time and written in row groups of ``ROW_GROUP`` rows, so memory stays flat however long a
list is. The stored JSON goes to Arrow's JSON reader as it comes from the database (no
Python dict per record): that is what makes a million records take seconds, not a minute.
Redacted snapshots, and batches the reader cannot take exactly, go through Python records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson
import pyarrow as pa
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from sqlalchemy.engine import Connection

from core.redact import redact_record
from core.registry import get_source
from core.schema import RECORD_FIELDS, SCHEMA_VERSION
from export.dictionary import data_dictionary
from export.formats import write_csv, write_jsonl, write_xlsx
from export.parquet import (
    DATE_FIELDS,
    MONEY,
    MONEY_FIELDS,
    PARQUET_SCHEMA,
    TIME,
    TIME_FIELDS,
    parquet_type,
)
from storage.asof import JsonRow, Row, Vouch, iter_json_rows, iter_rows, vouching_runs

FORMATS = ("parquet", "csv", "jsonl", "xlsx", "ftm")
ROW_GROUP = 100_000
CHUNK = 5_000
MANIFEST = "manifest.json"
DICTIONARY = "data-dictionary.md"
CENT = Decimal("0.01")
T = TypeVar("T")


def software_version() -> str:
    try:
        return version("creditwatch")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


class SnapshotError(ValueError):
    """Arguments that cannot make a snapshot (an unknown list, a bad format)."""


# -- one file per list, by format ---------------------------------------------------------


def _money(value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    return Decimal(str(value)).quantize(CENT)


def _extra(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def parquet_column(name: str, values: list[Any]) -> pa.Array:
    """One column of a batch; dates and times parsed by Arrow from their ISO text."""
    if name in DATE_FIELDS or name in TIME_FIELDS:
        return pa.array(values, pa.string()).cast(parquet_type(name))
    if name in MONEY_FIELDS:
        return pa.array([_money(v) for v in values], MONEY)
    if name == "extra":
        return pa.array([_extra(v) for v in values], pa.string())
    return pa.array(values, parquet_type(name))


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _table(rows: list[Row]) -> pa.Table:
    # Transposed in C (map, zip): this loop is most of the time of the Python path.
    transposed = zip(*(map(row.data.get, RECORD_FIELDS) for row in rows), strict=True)
    values = dict(zip(RECORD_FIELDS, transposed, strict=True))
    columns = [
        _lifecycle_column(name, rows) or parquet_column(name, list(values[name]))
        for name in RECORD_FIELDS
    ]
    return pa.Table.from_arrays(columns, schema=PARQUET_SCHEMA)


def _lifecycle_column(name: str, rows: list[Row] | list[JsonRow]) -> pa.Array | None:
    """``status`` and the seen times, kept apart from ``data`` in both kinds of row; None for
    any other field."""
    if name == "status":
        return pa.array([row.status for row in rows], pa.string())
    if name in TIME_FIELDS:  # aware datetimes: Arrow stores them as UTC instants
        return pa.array([getattr(row, name) for row in rows], TIME)
    return None


# The fields Arrow's JSON reader takes straight from the stored text: everything but the
# lifecycle fields (kept apart from ``data``), ``extra`` (its keys differ by record; written
# as JSON text) and dates (read as text, then cast: the reader does not parse dates).
_FROM_JSON = [name for name in RECORD_FIELDS if name not in (*TIME_FIELDS, "status", "extra")]
_JSON_SCHEMA = pa.schema(
    [pa.field(n, pa.string() if n in DATE_FIELDS else parquet_type(n)) for n in _FROM_JSON]
)
_JSON_OPTIONS = pa_json.ParseOptions(
    explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="ignore"
)


def _json_table(rows: list[JsonRow]) -> pa.Table:
    """``_table`` of the same rows, decoded by Arrow's JSON reader (C, every core) instead of
    Python. A batch it cannot take exactly (money with more than 2 decimals, which the Python
    path rounds; a value of the wrong type, which the Python path reports) goes that way."""
    lines = b"\n".join(row.data for row in rows)
    try:
        parsed = pa_json.read_json(pa.BufferReader(lines), parse_options=_JSON_OPTIONS)
    except pa.ArrowInvalid:
        return _table([row.decoded() for row in rows])
    parsed = parsed.combine_chunks()
    columns = []
    for name in RECORD_FIELDS:
        lifecycle = _lifecycle_column(name, rows)
        if lifecycle is not None:
            columns.append(lifecycle)
        elif name == "extra":
            columns.append(pa.array([_extra_text(row.extra) for row in rows], pa.string()))
        elif name in DATE_FIELDS:
            columns.append(parsed.column(name).cast(pa.date32()))
        else:
            columns.append(parsed.column(name))
    return pa.Table.from_arrays(columns, schema=PARQUET_SCHEMA)


def _extra_text(text: str | None) -> str | None:
    """``extra`` as ``_extra`` writes it (compact, keys sorted) from the database's text."""
    if text is None or text == "null":
        return None
    return _extra(orjson.loads(text))


def write_parquet(tables: Iterable[pa.Table], path: Path) -> int:
    """Batches of rows (``_table``, ``_json_table``) to a Parquet file in row groups of
    ``ROW_GROUP`` rows, so few rows are in memory at once; returns the count."""
    count = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    with pq.ParquetWriter(path, PARQUET_SCHEMA, compression="zstd") as writer:
        for table in tables:
            pending.append(table)
            pending_rows += table.num_rows
            count += table.num_rows
            if pending_rows >= ROW_GROUP:
                writer.write_table(pa.concat_tables(pending), row_group_size=ROW_GROUP)
                pending, pending_rows = [], 0
        if pending or count == 0:  # an empty list still gets a file with its columns
            table = pa.concat_tables(pending) if pending else PARQUET_SCHEMA.empty_table()
            writer.write_table(table, row_group_size=ROW_GROUP)
    return count


def _write_text(path: Path, write: Callable[[IO[str]], int], *, bom: bool = False) -> int:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
        return write(out)


# -- the snapshot ---------------------------------------------------------------------------


@dataclass
class ListPart:
    """One list in a snapshot: the run that vouches for it and what was written."""

    source: str
    list: str
    vouch: Vouch | None
    file: str | None = None
    rows: int = 0


@dataclass
class Snapshot:
    out: Path
    fmt: str
    as_of: date | None
    redact: bool
    bom: bool
    raw: bool = False  # CSV cells verbatim, formula-like ones included
    parts: list[ListPart] = field(default_factory=list)
    files: dict[str, int] = field(default_factory=dict)  # name → rows


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _clear_previous(out: Path) -> None:
    """Files an earlier snapshot wrote into ``out`` (its manifest says which) go, so the
    directory holds exactly one snapshot."""
    manifest = out / MANIFEST
    if not manifest.exists():
        return
    try:
        old = json.loads(manifest.read_text(encoding="utf-8"))
        names = [item["path"] for item in old.get("files", [])]
    except (ValueError, KeyError, TypeError):
        return
    for name in names:
        path = out / name
        if path.parent == out and path.is_file():
            path.unlink()
    manifest.unlink()


def _rows(conn: Connection, part: ListPart, announced: bool, redact: bool) -> Iterator[Row]:
    assert part.vouch is not None
    for row in iter_rows(conn, part.list, part.vouch, announced=announced):
        yield row._replace(data=redact_record(row.data)) if redact else row


def _records(rows: Iterable[Row]) -> Iterator[dict[str, Any]]:
    return (row.record() for row in rows)


def write_snapshot(
    conn: Connection,
    out: Path,
    *,
    sources: list[str],
    lists: list[str] | None = None,
    as_of: date | None = None,
    fmt: str = "parquet",
    redact: bool = False,
    bom: bool = False,
    raw: bool = False,
) -> dict[str, Any]:
    """Write the snapshot into ``out``; returns its manifest (also written as manifest.json).

    ``lists`` narrows to those list ids (full ids); every list of the sources otherwise.
    CSV cells a spreadsheet would run as formulas are neutralised unless ``raw``
    (``export.formats.neutralise``); the manifest says which.
    """
    if fmt not in FORMATS:
        raise SnapshotError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    declared = {lst.id: (src, lst) for src in map(get_source, sources) for lst in src.lists}
    chosen = sorted(declared) if not lists else sorted(lists)
    for list_id in chosen:
        if list_id not in declared:
            raise SnapshotError(f"list {list_id!r} is not a list of {', '.join(sources)}")
    out.mkdir(parents=True, exist_ok=True)
    _clear_previous(out)
    snap = Snapshot(out, fmt, as_of, redact, bom, raw)
    for source in sources:
        ids = [lst for lst in chosen if declared[lst][0].id == source]
        if not ids:
            continue
        vouches = vouching_runs(conn, source, ids, as_of)
        parts = [ListPart(source, lst, vouches.get(lst)) for lst in ids]
        snap.parts.extend(parts)
        if fmt == "ftm":
            _write_ftm(conn, snap, source, parts, declared)
            continue
        for part in parts:
            if part.vouch is None:
                continue
            announced = not declared[part.list][1].diffs_absence
            part.file = f"{part.list}.{fmt}"
            path = out / part.file
            rows = _rows(conn, part, announced, redact)  # lazy: read only by the Python paths
            if fmt == "parquet" and not redact:
                json_rows = iter_json_rows(conn, part.list, part.vouch, announced=announced)
                part.rows = write_parquet(map(_json_table, _batches(json_rows, CHUNK)), path)
            elif fmt == "parquet":
                part.rows = write_parquet(map(_table, _batches(rows, CHUNK)), path)
            elif fmt == "csv":
                records = _records(rows)
                part.rows = _write_text(
                    path, lambda f, rs=records: write_csv(rs, f, RECORD_FIELDS, raw=raw), bom=bom
                )
            elif fmt == "xlsx":
                part.rows = write_xlsx(_records(rows), path, RECORD_FIELDS, sheet=part.list)
            else:
                records = _records(rows)
                part.rows = _write_text(path, lambda f, rs=records: write_jsonl(rs, f))
            snap.files[part.file] = part.rows
    (out / DICTIONARY).write_text(data_dictionary(fmt), encoding="utf-8")
    snap.files[DICTIONARY] = 0
    manifest = _manifest(snap, declared)
    (out / MANIFEST).write_text(
        json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return manifest


def _write_ftm(
    conn: Connection,
    snap: Snapshot,
    source: str,
    parts: list[ListPart],
    declared: dict[str, Any],
) -> None:
    """One FollowTheMoney file per source: subjects merged across its lists, ids in one
    ``creditwatch`` namespace so the same company has the same id in every source's file."""
    from export.ftm import export, names_from_sources  # followthemoney loads on import

    counts: dict[str, int] = {}

    def records() -> Iterator[dict[str, Any]]:
        for part in parts:
            if part.vouch is None:
                continue
            announced = not declared[part.list][1].diffs_absence
            for record in _records(_rows(conn, part, announced, snap.redact)):
                counts[part.list] = counts.get(part.list, 0) + 1
                yield record

    name = f"{source}.ftm.json"
    with (snap.out / name).open("w", encoding="utf-8", newline="") as handle:
        entities = 0
        for entity in export(records(), names=names_from_sources([get_source(source)])):
            handle.write(json.dumps(entity, ensure_ascii=False, sort_keys=True) + "\n")
            entities += 1
    for part in parts:
        part.rows = counts.get(part.list, 0)
        part.file = name if part.vouch is not None else None
    snap.files[name] = entities


def _manifest(snap: Snapshot, declared: dict[str, Any]) -> dict[str, Any]:
    sources: dict[str, dict[str, Any]] = {}
    for part in snap.parts:
        src, lst = declared[part.list]
        entry = sources.setdefault(
            src.id,
            {"source": src.id, "name_zh": src.name_zh, "name_en": src.name_en, "lists": []},
        )
        entry["lists"].append(
            {
                "list": lst.id,
                "name_zh": lst.name_zh,
                "name_en": lst.name_en,
                "list_kind": lst.list_kind,
                "publication": lst.publication,
                "run": part.vouch.as_dict() if part.vouch else None,
                "rows": part.rows,
                "file": part.file,
                "note": None if part.vouch else "no healthy run on or before the as-of date",
            }
        )
    files = [
        {
            "path": name,
            "sha256": sha256_file(snap.out / name),
            "bytes": (snap.out / name).stat().st_size,
            "rows": rows if name != DICTIONARY else None,
        }
        for name, rows in sorted(snap.files.items())
    ]
    return {
        "creditwatch": software_version(),
        "schema_version": SCHEMA_VERSION,
        "format": snap.fmt,
        "as_of": snap.as_of.isoformat() if snap.as_of else None,
        "redacted": snap.redact,
        "csv_bom": snap.bom if snap.fmt == "csv" else None,
        "csv_formulas_neutralised": not snap.raw if snap.fmt == "csv" else None,
        "sources": list(sources.values()),
        "files": files,
    }


def verify(out: Path) -> list[str]:
    """Problems with a snapshot directory: files missing, or not the bytes the manifest
    names. Empty when it verifies."""
    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    problems = []
    for item in manifest["files"]:
        path = out / item["path"]
        if not path.is_file():
            problems.append(f"{item['path']}: missing")
        elif sha256_file(path) != item["sha256"]:
            problems.append(f"{item['path']}: sha256 differs from the manifest")
    return problems
