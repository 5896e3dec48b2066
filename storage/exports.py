"""Reading records and events back out, in the schema's shape, as JSON Lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from typing import IO, Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Connection

from crawlers.registry import get_source
from storage.models import Event, Record, RecordHistory
from storage.runs import latest_healthy_runs
from storage.schema import EVENT_FIELDS, RECORD_FIELDS

RECORDS = Record.__table__
HISTORY = RecordHistory.__table__
EVENTS = Event.__table__


def iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _record(data: dict[str, Any], status: str, first_seen: datetime, last_seen: datetime) -> dict:
    merged = {**data, "status": status, "first_seen": iso(first_seen), "last_seen": iso(last_seen)}
    return {name: merged.get(name) for name in RECORD_FIELDS}


def export_records(
    conn: Connection,
    source: str,
    lists: Iterable[str],
    *,
    include_removed: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each list's entries as its latest healthy run saw them (values and status then).

    A list published as announcements is not shown again by every run: its entries are
    every announced one, with the status detection gave it since (expired, removed).
    Returns the records, sorted by list then record_key, and the lists that have no
    healthy run yet (nothing of theirs can be vouched for).
    """
    healthy = latest_healthy_runs(conn, source)
    announced = {lst.id for lst in get_source(source).lists if not lst.diffs_absence}
    out: list[dict[str, Any]] = []
    unvouched = []
    for list_id in sorted(lists):
        run = healthy.get(list_id)
        if list_id in announced:
            shown = ("active", "expired", "removed") if include_removed else ("active", "expired")
            rows = conn.execute(
                select(RECORDS).where(RECORDS.c.list == list_id, RECORDS.c.status.in_(shown))
            ).all()
            out.extend(_record(r.data, r.status, r.first_seen, r.last_seen) for r in rows)
            continue
        if run is None:
            unvouched.append(list_id)
        else:
            rows = conn.execute(
                select(HISTORY.c.data, HISTORY.c.status, RECORDS.c.first_seen, RECORDS.c.last_seen)
                .join(RECORDS, RECORDS.c.id == HISTORY.c.record_id)
                .where(
                    HISTORY.c.list == list_id,
                    and_(HISTORY.c.first_run_seq <= run.seq, HISTORY.c.last_run_seq >= run.seq),
                    # Shown with its own removal (GSXT's 移出 fields): one of the removed below.
                    HISTORY.c.status != "removed",
                )
            ).all()
            out.extend(_record(r.data, r.status, r.first_seen, r.last_seen) for r in rows)
        if include_removed:
            rows = conn.execute(
                select(RECORDS).where(RECORDS.c.list == list_id, RECORDS.c.status == "removed")
            ).all()
            out.extend(_record(r.data, r.status, r.first_seen, r.last_seen) for r in rows)
    out.sort(key=lambda r: (r["list"], r["record_key"]))
    return out, unvouched


def event_dict(row: Any) -> dict[str, Any]:
    return {name: iso(getattr(row, name)) for name in EVENT_FIELDS}


def query_events(
    conn: Connection,
    *,
    source: str | None = None,
    run_id: str | None = None,
    since: datetime | None = None,
) -> Iterator[dict[str, Any]]:
    query = select(EVENTS).order_by(EVENTS.c.at, EVENTS.c.id)
    if source:
        query = query.where(EVENTS.c.source == source)
    if run_id:
        query = query.where(EVENTS.c.run_id == run_id)
    if since:
        query = query.where(EVENTS.c.at >= since)
    for row in conn.execute(query):
        yield event_dict(row)


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


def csv_cell(value: Any) -> Any:
    """SCHEMA.md: null is the empty cell; lists and objects are JSON in their cell."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_csv(rows: Iterable[dict[str, Any]], out: IO[str], fields: tuple[str, ...]) -> int:
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    count = 0
    for row in rows:
        writer.writerow({name: csv_cell(row.get(name)) for name in fields})
        count += 1
    return count
