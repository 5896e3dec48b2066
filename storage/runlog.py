"""What a crawl writes while it runs: archived responses, the fetch log, list pages and the
staged records. Rows are buffered and written in batches; nothing here touches ``records``
or ``events``, so a crawl that dies leaves the visible data as it was."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import orjson
from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from core.schema import NON_CONTENT_FIELDS, PROVENANCE_EXTRA_KEYS
from storage.archive import BODIES, RESPONSES, body_row
from storage.models import (
    Announcement,
    Fetch,
    ListPage,
    RunFill,
    RunRecord,
    RunRemoval,
    table_of,
)
from storage.sql import insert_ignore, upsert_adding

FETCHES = table_of(Fetch)
LIST_PAGES = table_of(ListPage)
RUN_RECORDS = table_of(RunRecord)
RUN_REMOVALS = table_of(RunRemoval)
RUN_FILL = table_of(RunFill)
RECORDS_FIELD = "*"  # the ``run_fill`` row that counts a list's records
EMPTY: tuple[Any, ...] = (None, "", [], {})
ANNOUNCEMENTS = table_of(Announcement)


def staged_record(run_id: str, record: dict[str, Any], content_hash: str) -> dict[str, Any]:
    """A ``run_records`` row: the record, and the columns change detection reads from it."""
    removal = (record.get("extra") or {}).get("removal")
    return {
        "run_id": run_id,
        "list": record["list"],
        "record_key": record["record_key"],
        "source": record["source"],
        "entity_id": record["entity_id"],
        "content_hash": content_hash,
        "valid_until": _date_or_none(record.get("valid_until")),
        "removed": removal is not None,
        "removed_on": _date_or_none(removal.get("removed_on")) if removal else None,
        "data": record,
        "prov_hash": provenance_hash(record),
    }


PROVENANCE_FIELDS = sorted(NON_CONTENT_FIELDS - {"status", "first_seen", "last_seen"})


def provenance_hash(record: dict[str, Any]) -> str:
    """Digest of where the record was read (the schema's non-content fields and
    ``extra.pages``): with the content hash, what tells an entry read again unchanged from
    one whose stored provenance must move on."""
    extra = record.get("extra") or {}
    where = [record.get(name) for name in PROVENANCE_FIELDS]
    where.append({key: extra.get(key) for key in sorted(PROVENANCE_EXTRA_KEYS)})
    return hashlib.sha256(orjson.dumps(where, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]


class RunWriter:
    """Buffers one run's rows and writes them in batches of ``batch_size``."""

    def __init__(self, engine: Engine, run_id: str, batch_size: int = 200) -> None:
        self.engine = engine
        self.run_id = run_id
        self.batch_size = batch_size
        self._bodies: dict[str, dict[str, Any]] = {}
        self._responses: list[dict[str, Any]] = []
        self._fetches: list[dict[str, Any]] = []
        self._pages: list[dict[str, Any]] = []
        self._records: list[dict[str, Any]] = []
        self._removals: list[dict[str, Any]] = []
        self._announcements: list[dict[str, Any]] = []
        self._filled: dict[str, Counter[str]] = {}  # list -> field -> records filling it

    def add_response(
        self,
        *,
        url: str,
        method: str,
        status: int,
        headers: list[list[str]],
        body: bytes,
        sha256: str,
        fetched_at: datetime | None,
        from_cassette: bool,
    ) -> None:
        if sha256 not in self._bodies:
            self._bodies[sha256] = body_row(body, sha256)
        self._responses.append(
            {
                "run_id": self.run_id,
                "sha256": sha256,
                "url": url,
                "method": method,
                "status": status,
                "headers": headers,
                "fetched_at": fetched_at,
                "from_cassette": from_cassette,
            }
        )
        self._maybe_flush()

    def add_fetch(
        self,
        *,
        url: str,
        outcome: str,
        list_id: str | None,
        status: int | None = None,
        detail: str | None = None,
        sha256: str | None = None,
    ) -> None:
        self._fetches.append(
            {
                "run_id": self.run_id,
                "list": list_id,
                "url": url,
                "outcome": outcome,
                "status": status,
                "detail": detail,
                "sha256": sha256,
            }
        )
        self._maybe_flush()

    def add_list_page(self, **page: Any) -> None:
        self._pages.append({"run_id": self.run_id, **page})
        self._maybe_flush()

    def add_record(self, record: dict[str, Any], content_hash: str) -> None:
        self._records.append(staged_record(self.run_id, record, content_hash))
        filled = self._filled.get(record["list"])
        if filled is None:
            filled = self._filled[record["list"]] = Counter()
        filled[RECORDS_FIELD] += 1
        filled.update(name for name, value in record.items() if value not in EMPTY)
        self._maybe_flush()

    def add_removal(self, record: dict[str, Any]) -> None:
        """A removal announcement's row, normalised like an entry so it matches one."""
        removal = (record.get("extra") or {}).get("removal") or {}
        self._removals.append(
            {
                "run_id": self.run_id,
                "list": record["list"],
                "record_key": record["record_key"],
                "source": record["source"],
                "entity_id": record["entity_id"],
                "by_case": record.get("case_number_key") is not None,
                "removed_on": _date_or_none(removal.get("removed_on")),
                "data": record,
            }
        )
        self._maybe_flush()

    def add_announcement(self, **row: Any) -> None:
        row["published_on"] = _date_or_none(row.get("published_on"))
        self._announcements.append({"run_id": self.run_id, **row})
        self._maybe_flush()

    def _buffers(self) -> tuple[list[dict[str, Any]], ...]:
        return (
            self._responses,
            self._fetches,
            self._pages,
            self._records,
            self._removals,
            self._announcements,
        )

    def _pending(self) -> int:
        return sum(len(rows) for rows in self._buffers())

    def _maybe_flush(self) -> None:
        if self._pending() >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """The archive and fetch log first, in their own transaction, so a batch of staged
        records the database refuses cannot take the evidence down with it."""
        if not (self._pending() or self._bodies):
            return
        logged = (
            (RESPONSES, self._responses),
            (FETCHES, self._fetches),
            (LIST_PAGES, self._pages),
            (ANNOUNCEMENTS, self._announcements),
        )
        with self.engine.begin() as conn:
            insert_ignore(conn, BODIES, list(self._bodies.values()))
            for table, rows in logged:
                if rows:
                    conn.execute(table.insert(), [_without_nul(row) for row in rows])
        self._bodies.clear()
        for _, rows in logged:
            rows.clear()
        with self.engine.begin() as conn:
            _stage_records(conn, self._records)
            insert_ignore(conn, RUN_REMOVALS, self._removals)
            upsert_adding(
                conn,
                RUN_FILL,
                [
                    {"run_id": self.run_id, "list": list_id, "field": name, "filled": count}
                    for list_id, counts in sorted(self._filled.items())
                    for name, count in sorted(counts.items())
                ],
                add=["filled"],
            )
        self._records.clear()
        self._removals.clear()
        self._filled.clear()


def _stage_records(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Stage records, the first of each key kept. A key that comes again (in this batch or
    an earlier one) counts a repeat, and a collision when its content differs: the finish
    step judges those (``storage.runs.repeated_keys``), so nothing is held in memory."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        key = (row["list"], row["record_key"])
        kept = first.get(key)
        if kept is None:
            first[key] = {**row, "repeats": 0, "collided": False}
        else:
            kept["repeats"] += 1
            kept["collided"] = kept["collided"] or kept["content_hash"] != row["content_hash"]
    if not first:
        return
    for key in _stored_as_staged(conn, first):
        first[key]["data"] = None
    if conn.dialect.name == "postgresql":
        _copy_records(conn, list(first.values()))
    else:
        _insert_records_sqlite(conn, list(first.values()))


STATE_PROBE = 500  # keys per lookup of the hot state


def _stored_as_staged(
    conn: Connection, rows: dict[tuple[str, str], dict[str, Any]]
) -> list[tuple[str, str]]:
    """Keys whose hot state (``entry_state``) holds the staged content and provenance digests:
    their record is the stored one, so staging keeps only their key and digests, and change
    detection reads the record from ``records`` (and checks the digests still agree). Looked
    up a few hundred keys at a time on the driver's cursor, in key order."""
    by_list: dict[str, list[str]] = {}
    for list_id, record_key in sorted(rows):
        by_list.setdefault(list_id, []).append(record_key)
    raw = conn.connection.driver_connection
    assert raw is not None
    postgres = conn.dialect.name == "postgresql"
    same: list[tuple[str, str]] = []
    for list_id, keys in by_list.items():
        for start in range(0, len(keys), STATE_PROBE):
            chunk = keys[start : start + STATE_PROBE]
            if postgres:
                query = "list = %s AND record_key = ANY(%s)"
                params: tuple[Any, ...] = (list_id, chunk)
            else:
                query = f"list = ? AND record_key IN ({', '.join('?' * len(chunk))})"
                params = (list_id, *chunk)
            cursor = raw.cursor()
            try:
                cursor.execute(
                    f"SELECT record_key, content_hash, prov_hash FROM entry_state WHERE {query}",
                    params,
                )
                found = cursor.fetchall()
            finally:
                cursor.close()
            for record_key, content, provenance in found:
                row = rows[(list_id, record_key)]
                if row["content_hash"] == content and row["prov_hash"] == provenance:
                    same.append((list_id, record_key))
    return same


STAGED_COLUMNS = (
    "run_id", "list", "record_key", "source", "entity_id", "content_hash", "valid_until",
    "removed", "removed_on", "data", "repeats", "collided", "prov_hash",
)  # fmt: skip


def _copy_records(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """PostgreSQL: ``COPY`` the batch into a temporary table, then merge it into the staging
    in one statement (a key staged by an earlier batch counts a repeat, as on SQLite). COPY
    is what makes staging ten million entries a matter of seconds, not minutes."""
    dumps: Callable[[Any], str] = getattr(conn.dialect, "_json_serializer", None) or json.dumps
    columns = ", ".join(STAGED_COLUMNS)
    conn.execute(
        text(
            "CREATE TEMP TABLE IF NOT EXISTS cw_incoming "
            "(LIKE run_records INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        )
    )
    raw = conn.connection.driver_connection
    assert raw is not None
    with raw.cursor() as cursor, cursor.copy(f"COPY cw_incoming ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(
                [
                    dumps(row[name]) if name == "data" and row[name] is not None else row[name]
                    for name in STAGED_COLUMNS
                ]
            )
    conn.execute(
        text(
            f"INSERT INTO run_records ({columns}) SELECT {columns} FROM cw_incoming "
            "ON CONFLICT (run_id, list, record_key) DO UPDATE SET "
            "repeats = run_records.repeats + excluded.repeats + 1, "
            "collided = run_records.collided OR excluded.collided "
            "OR run_records.content_hash <> excluded.content_hash"
        )
    )
    conn.execute(text("TRUNCATE cw_incoming"))


def _insert_records_sqlite(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """SQLite: one prepared INSERT run over the batch on the driver's cursor, values in the
    forms SQLAlchemy stores (ISO dates, 0/1, JSON text); a key staged by an earlier batch
    counts a repeat. SQLAlchemy's per-row parameter handling cost more than SQLite's insert."""
    dumps: Callable[[Any], str] = getattr(conn.dialect, "_json_serializer", None) or json.dumps
    columns = ", ".join(STAGED_COLUMNS)
    marks = ", ".join("?" for _ in STAGED_COLUMNS)
    raw = conn.connection.driver_connection
    assert raw is not None
    raw.executemany(
        f"INSERT INTO run_records ({columns}) VALUES ({marks}) "
        "ON CONFLICT (run_id, list, record_key) DO UPDATE SET "
        "repeats = run_records.repeats + excluded.repeats + 1, "
        "collided = run_records.collided OR excluded.collided "
        "OR run_records.content_hash <> excluded.content_hash",
        [
            (
                row["run_id"],
                row["list"],
                row["record_key"],
                row["source"],
                row["entity_id"],
                row["content_hash"],
                _iso(row["valid_until"]),
                int(row["removed"]),
                _iso(row["removed_on"]),
                None if row["data"] is None else dumps(row["data"]),
                row["repeats"],
                int(row["collided"]),
                row["prov_hash"],
            )
            for row in rows
        ],
    )


def _iso(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def _without_nul(value: Any) -> Any:
    """NUL replaced by U+FFFD in every string of a log row (URLs, headers, details, titles):
    PostgreSQL refuses NUL in text and JSON, and other readers cut the text there. Records
    need no such pass: normalisation removes control characters and says so in ``extra``."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_nul(v) for v in value]
    return value


def _date_or_none(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)
