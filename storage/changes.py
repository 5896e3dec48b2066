"""Events filtered and paged, newest first: the changes page, ``/api/events`` and their feed.

``storage.events.query_events`` streams a run's or a source's events oldest first for the
CLI and exports; the web asks another question, "which changes match these filters, one page
at a time", so the filtering, counting and paging happen in SQL here. Dates are Asia/Shanghai
calendar dates of the event's ``at`` (SCHEMA.md), turned into UTC bounds. Baseline listings
(a list's first run) are left out unless asked for, as ``creditwatch changes`` does, and
counted apart so a page can say how many it hides.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, select, true
from sqlalchemy.engine import Connection

from core.clock import SHANGHAI
from core.schema import RECORD_FIELDS
from storage.events import event_dict
from storage.models import Event, Record, table_of

EVENTS = table_of(Event)
RECORDS = table_of(Record)
# Why an entry left a list (SCHEMA.md, event `cause`).
DELISTING_CAUSES = ("published_removal", "expired", "disappeared")


@dataclass(frozen=True)
class EventFilter:
    """What a reader narrows the events to; None is "any". ``until`` is inclusive."""

    source: str | None = None
    list_id: str | None = None
    event: str | None = None
    cause: str | None = None
    since: date | None = None
    until: date | None = None
    baseline: bool = False

    def conditions(self) -> list[ColumnElement[bool]]:
        out: list[ColumnElement[bool]] = []
        if self.source:
            out.append(EVENTS.c.source == self.source)
        if self.list_id:
            out.append(EVENTS.c.list == self.list_id)
        if self.event:
            out.append(EVENTS.c.event == self.event)
        if self.cause:
            out.append(EVENTS.c.cause == self.cause)
        if self.since:
            out.append(EVENTS.c.at >= day_start(self.since))
        if self.until:
            out.append(EVENTS.c.at < day_start(self.until + timedelta(days=1)))
        if not self.baseline:
            out.append(EVENTS.c.baseline == false())
        return out


def day_start(day: date) -> datetime:
    """Midnight in Beijing of ``day``: where that calendar date's events begin."""
    return datetime.combine(day, time.min, SHANGHAI)


@dataclass
class EventPage:
    """One page of matching events, newest first, and what the filters hid."""

    total: int  # matching events, on every page
    events: list[dict[str, Any]] = field(default_factory=list)
    baseline_hidden: int = 0  # baseline listings the same filters would add


def count_events(conn: Connection, where: EventFilter) -> int:
    query = select(func.count()).select_from(EVENTS).where(and_(true(), *where.conditions()))
    return int(conn.execute(query).scalar_one())


def event_page(conn: Connection, where: EventFilter, *, offset: int, limit: int) -> EventPage:
    """The events matching ``where``, newest first (then latest raised), ``limit`` of them
    from ``offset``, in the schema's shape."""
    total = count_events(conn, where)
    rows = conn.execute(
        select(EVENTS)
        .where(and_(true(), *where.conditions()))
        .order_by(EVENTS.c.at.desc(), EVENTS.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    page = EventPage(total=total, events=[event_dict(row) for row in rows])
    if not where.baseline:
        shown = count_events(conn, replace(where, baseline=True))
        page.baseline_hidden = shown - total
    return page


def records_of_entities(
    conn: Connection, entity_ids: Iterable[str]
) -> dict[str, list[dict[str, Any]]]:
    """Each entity's records as schema records (whatever their status), for redacting its
    events as its entity page does: whether it is a person, and the names to scrub."""
    wanted = sorted(set(entity_ids))
    out: dict[str, list[dict[str, Any]]] = {entity_id: [] for entity_id in wanted}
    if not wanted:
        return out
    rows = conn.execute(
        select(RECORDS.c.entity_id, RECORDS.c.data)
        .where(RECORDS.c.entity_id.in_(wanted))
        .order_by(RECORDS.c.list, RECORDS.c.record_key)
    )
    for row in rows:
        out[row.entity_id].append({name: row.data.get(name) for name in RECORD_FIELDS})
    return out
