"""What a crawl writes while it runs: archived responses, the fetch log, list pages and the
staged records. Rows are buffered and written in batches; nothing here touches ``records``
or ``events``, so a crawl that dies leaves the visible data as it was."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine

from storage.archive import BODIES, RESPONSES, body_row
from storage.models import Announcement, Fetch, ListPage, RunRecord, RunRemoval
from storage.sql import insert_ignore

FETCHES = Fetch.__table__
LIST_PAGES = ListPage.__table__
RUN_RECORDS = RunRecord.__table__
RUN_REMOVALS = RunRemoval.__table__
ANNOUNCEMENTS = Announcement.__table__


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
        removal = (record.get("extra") or {}).get("removal")
        self._records.append(
            {
                "run_id": self.run_id,
                "list": record["list"],
                "record_key": record["record_key"],
                "source": record["source"],
                "entity_id": record["entity_id"],
                "content_hash": content_hash,
                "valid_until": _date_or_none(record.get("valid_until")),
                "removed": removal is not None,
                "removed_on": _date_or_none(removal["removed_on"]) if removal else None,
                "data": record,
            }
        )
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
        if not (self._pending() or self._bodies):
            return
        with self.engine.begin() as conn:
            insert_ignore(conn, BODIES, list(self._bodies.values()))
            for table, rows in (
                (RESPONSES, self._responses),
                (FETCHES, self._fetches),
                (LIST_PAGES, self._pages),
                (ANNOUNCEMENTS, self._announcements),
            ):
                if rows:
                    conn.execute(table.insert(), rows)
            # A key seen twice in one run keeps its first occurrence.
            insert_ignore(conn, RUN_RECORDS, self._records)
            insert_ignore(conn, RUN_REMOVALS, self._removals)
        self._bodies.clear()
        for rows in self._buffers():
            rows.clear()


def _date_or_none(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(value)
