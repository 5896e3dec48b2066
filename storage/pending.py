"""Delistings held by the mass-delisting guard, and a maintainer's decision on them.

``storage.lifecycle`` holds a healthy run's ``disappeared`` delistings in
``pending_delistings`` when they are too many for the list (its ``delisting_guard``); the
records stay as they were. A maintainer then decides, per holding run, list, source or all:

* **release**: the portal really dropped them. Each held active entry gets the ``delisted``
  event (cause ``disappeared``) its holding run would have raised: the same deterministic
  ``event_id``, ``run_id`` the holding run, ``at`` the holding run's clock (the absence was
  observed then, so ``changes --since`` and as-of views place it there; the decision time is
  the row's ``decided_at``), evidence the holding run's list pages. Held expired entries are
  removed without an event (their delisting was reported when they expired). Records become
  ``removed``. One transaction; releasing again finds nothing pending and does nothing.
* **discard**: the run lied (a broken query, a truncated export). No event; the entries'
  ``absent_runs`` restart at 0, so only later healthy absences count (and a later run that
  misses them as massively is held again).

Rows a run ended by itself (``returned``: seen again; ``superseded``: removed by a published
removal) and decided rows are never touched again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, select, update
from sqlalchemy.engine import Connection, Row

from storage.lifecycle import EVENT_COLUMNS, delisting_of_record, sync_hot_state
from storage.models import Event, PendingDelisting, Record, table_of

PENDING = table_of(PendingDelisting)
RECORDS = table_of(Record)
EVENTS = table_of(Event)
STATES = ("pending", "released", "discarded", "returned", "superseded")


@dataclass(frozen=True)
class Selection:
    """Which held entries a decision is about; at least one of them, or ``everything``."""

    run_id: str | None = None
    list_id: str | None = None
    source: str | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        if not (self.run_id or self.list_id or self.source or self.everything):
            raise ValueError("say which held delistings: a run, a list, a source or all")

    def where(self) -> Any:
        p = PENDING.c
        clauses = [p.state == "pending"]
        if self.run_id:
            clauses.append(p.run_id == self.run_id)
        if self.list_id:
            clauses.append(p.list == self.list_id)
        if self.source:
            clauses.append(p.source == self.source)
        return and_(*clauses)


@dataclass
class Decision:
    """What a release or discard did: rows decided per (holding run, list), and for a
    release the ``event_id`` of each ``delisted`` event raised, per holding run."""

    rows: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: dict[str, list[str]] = field(default_factory=dict)
    alerts: int = 0  # set by whoever queues the events' alerts

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    @property
    def event_count(self) -> int:
        return sum(len(ids) for ids in self.events.values())


def list_pending(
    conn: Connection,
    *,
    source: str | None = None,
    list_id: str | None = None,
    run_id: str | None = None,
    state: str | None = "pending",
) -> Sequence[Row[Any]]:
    """Held rows, by holding run then list then record_key; ``state`` None: every state."""
    p = PENDING.c
    query = select(PENDING)
    if state:
        query = query.where(p.state == state)
    if source:
        query = query.where(p.source == source)
    if list_id:
        query = query.where(p.list == list_id)
    if run_id:
        query = query.where(p.run_id == run_id)
    return conn.execute(query.order_by(p.held_at, p.run_id, p.list, p.record_key)).all()


def held_summary(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """What one run held, per list: held delistings (active entries), held expired entries,
    and the guard's measure (``active``, ``would_delist``, ``share``, ``min_count``)."""
    p = PENDING.c
    rows = conn.execute(
        select(p.list, p.status_before, func.count())
        .where(p.run_id == run_id)
        .group_by(p.list, p.status_before)
        .order_by(p.list)
    ).all()
    by_list: dict[str, dict[str, Any]] = {}
    for list_id, status, count in rows:
        entry = by_list.setdefault(list_id, {"list": list_id, "held": 0, "held_expired": 0})
        entry["held" if status == "active" else "held_expired"] += count
    for list_id, entry in by_list.items():
        guard = conn.execute(
            select(p.guard).where(p.run_id == run_id, p.list == list_id).limit(1)
        ).scalar_one()
        entry.update(guard or {})
    return list(by_list.values())


def _same_entry() -> Any:
    p, rec = PENDING.c, RECORDS.c
    return and_(p.list == rec.list, p.record_key == rec.record_key)


def _chosen(selection: Selection) -> Any:
    """For a correlated ``exists``: a chosen held row of the stored entry."""
    return and_(selection.where(), _same_entry())


def _tally(conn: Connection, selection: Selection) -> Counter[tuple[str, str]]:
    p = PENDING.c
    rows = conn.execute(
        select(p.run_id, p.list, func.count()).where(selection.where()).group_by(p.run_id, p.list)
    ).all()
    return Counter({(run_id, list_id): count for run_id, list_id, count in rows})


def release(
    conn: Connection,
    selection: Selection,
    *,
    by: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Decision:
    """Release held delistings, in the caller's transaction (see the module docstring).
    Alerts for the events are the caller's: ``alerts.outbox.enqueue_run(conn, run_id,
    event_ids=...)`` per holding run of ``Decision.events``."""
    now = now or datetime.now(UTC)
    p, rec = PENDING.c, RECORDS.c
    decision = Decision(rows=_tally(conn, selection))
    if not decision.rows:
        return decision
    # The event the holding run would have raised (same ``event_id``), at its clock.
    columns = delisting_of_record("disappeared", run_id=p.run_id, at=p.held_at, evidence=p.evidence)
    new_id = columns[EVENT_COLUMNS.index("event_id")]
    joined = PENDING.join(RECORDS, _same_entry())
    raising = and_(
        selection.where(), rec.status == "active", ~exists().where(EVENTS.c.event_id == new_id)
    )
    order = (p.held_at, p.run_id, rec.list, rec.record_key)
    ids = conn.execute(
        select(p.run_id, new_id).select_from(joined).where(raising).order_by(*order)
    ).all()
    conn.execute(
        insert(EVENTS).from_select(
            EVENT_COLUMNS,
            select(*columns).select_from(joined).where(raising).order_by(*order),
        )
    )
    for run_id, event_id in ids:
        decision.events.setdefault(run_id, []).append(event_id)
    conn.execute(
        update(RECORDS)
        .where(rec.status.in_(("active", "expired")), exists().where(_chosen(selection)))
        .values(status="removed")
    )
    sync_hot_state(conn, exists().where(_chosen(selection)))
    _decide(conn, selection, "released", by, note, now)
    return decision


def discard(
    conn: Connection,
    selection: Selection,
    *,
    by: str | None = None,
    note: str | None = None,
    now: datetime | None = None,
) -> Decision:
    """Discard held delistings: no event, and their entries' absences count from zero."""
    now = now or datetime.now(UTC)
    rec = RECORDS.c
    decision = Decision(rows=_tally(conn, selection))
    if not decision.rows:
        return decision
    conn.execute(
        update(RECORDS)
        .where(rec.status.in_(("active", "expired")), exists().where(_chosen(selection)))
        .values(absent_runs=0)
    )
    sync_hot_state(conn, exists().where(_chosen(selection)))
    _decide(conn, selection, "discarded", by, note, now)
    return decision


def _decide(
    conn: Connection,
    selection: Selection,
    state: str,
    by: str | None,
    note: str | None,
    now: datetime,
) -> None:
    conn.execute(
        update(PENDING)
        .where(selection.where())
        .values(state=state, decided_at=now, decided_by=by, note=note)
    )
