"""Reading records and events back out, in the schema's shape, as JSON Lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from storage.asof import iso, records_as_of
from storage.models import Event
from storage.schema import EVENT_FIELDS

EVENTS = Event.__table__


def export_records(
    conn: Connection,
    source: str,
    lists: Iterable[str],
    *,
    include_removed: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each list's entries as its latest healthy run left them (values and status then;
    ``storage.asof`` says what that means for database and announcement lists), sorted by
    list then record_key; and the lists no healthy run vouches for yet."""
    records, _, unvouched = records_as_of(conn, source, lists, include_removed=include_removed)
    return records, unvouched


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
