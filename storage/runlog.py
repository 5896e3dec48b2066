"""What a crawl writes while it runs: archived responses, the fetch log, list pages and the
staged records. Rows are buffered and written in batches; nothing here touches ``records``
or ``events``, so a crawl that dies leaves the visible data as it was."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from storage.archive import BODIES, RESPONSES, body_row
from storage.models import Announcement, Fetch, ListPage, RunRecord, RunRemoval, table_of
from storage.sql import insert_ignore

FETCHES = table_of(Fetch)
LIST_PAGES = table_of(ListPage)
RUN_RECORDS = table_of(RunRecord)
RUN_REMOVALS = table_of(RunRemoval)
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
    }


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
        self._records.clear()
        self._removals.clear()


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
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(RUN_RECORDS)
    staged, new = RUN_RECORDS.c, insert.excluded
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=[staged.run_id, staged.list, staged.record_key],
            set_={
                "repeats": staged.repeats + new.repeats + 1,
                "collided": or_(
                    staged.collided, new.collided, staged.content_hash != new.content_hash
                ),
            },
        ),
        list(first.values()),
    )


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
