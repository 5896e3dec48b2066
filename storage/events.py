"""The event log read back in the schema's shape (SCHEMA.md event fields, ISO times)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from core.schema import EVENT_FIELDS
from storage.asof import iso
from storage.models import Event, table_of

EVENTS = table_of(Event)


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
