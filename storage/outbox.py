"""The SQL of alerting: subscriptions, the events a run raised with their context, and the
outbox of alerts (``alerts`` table) that the sender works through.

Alerts are inserted in the transaction that raised their events (``pipeline.finalize``), so
an event is never left without its alerts nor an alert without its event. Delivery then
happens outside any transaction: a row is marked delivered only after its channel answered,
so a crash in between redelivers it under the same key rather than losing it.

A sender claims a row before delivering it: ``claim_next`` takes the channel's oldest due row
nobody holds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and stamps it with its owner and a
lease by an UPDATE that only succeeds while the row is still free, so of two senders at once
exactly one gets it. Marking the outcome drops the claim; a sender that dies leaves it to
run out (or to ``release_claims`` once its process is known to be gone).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.engine import Connection, Row

from storage.events import event_dict
from storage.models import (
    Alert,
    Event,
    RawResponse,
    Record,
    Run,
    RunList,
    SubscriptionRow,
    table_of,
)
from storage.sql import insert_ignore

ALERTS = table_of(Alert)
EVENTS = table_of(Event)
RECORDS = table_of(Record)
RESPONSES = table_of(RawResponse)
RUN_LISTS = table_of(RunList)
SUBSCRIPTIONS = table_of(SubscriptionRow)
RUNS = table_of(Run)
CHUNK = 500  # keys per IN (...) query
SENDABLE = ("pending", "blocked")  # blocked rows are tried again, untried ones behind them


# --- subscriptions -----------------------------------------------------------------------
def save_subscription(conn: Connection, data: dict[str, Any], origin: str, at: datetime) -> None:
    row = {"id": data["id"], "data": data, "origin": origin, "updated_at": at}
    if conn.execute(select(SUBSCRIPTIONS.c.id).where(SUBSCRIPTIONS.c.id == data["id"])).first():
        conn.execute(update(SUBSCRIPTIONS).where(SUBSCRIPTIONS.c.id == data["id"]).values(**row))
    else:
        conn.execute(SUBSCRIPTIONS.insert().values(**row))


def delete_subscription(conn: Connection, subscription_id: str) -> bool:
    deleted = conn.execute(SUBSCRIPTIONS.delete().where(SUBSCRIPTIONS.c.id == subscription_id))
    return bool(deleted.rowcount)


def subscription_rows(conn: Connection) -> Sequence[Row[Any]]:
    return conn.execute(select(SUBSCRIPTIONS).order_by(SUBSCRIPTIONS.c.id)).all()


def alert_subscriptions(conn: Connection) -> list[str]:
    """Subscriptions that have alerts in the outbox, removed ones included: their alerts
    are still delivered, so they can still be logged and retried."""
    query = select(ALERTS.c.subscription).distinct().where(ALERTS.c.subscription.is_not(None))
    return sorted(conn.execute(query).scalars())


# --- what a run raised -------------------------------------------------------------------
def run_event_context(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """The run's events, each with its record as stored now, the list's health in the run
    and when the evidence page was fetched: everything a message needs, frozen at enqueue."""
    events = [
        event_dict(row)
        for row in conn.execute(
            select(EVENTS).where(EVENTS.c.run_id == run_id).order_by(EVENTS.c.id)
        )
    ]
    if not events:
        return []
    keys = {(e["list"], e["record_key"]) for e in events}
    records: dict[tuple[str, str], dict[str, Any]] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), CHUNK):
        chunk = ordered[start : start + CHUNK]
        query = select(RECORDS.c.list, RECORDS.c.record_key, RECORDS.c.data).where(
            RECORDS.c.list.in_(sorted({lst for lst, _ in chunk})),
            RECORDS.c.record_key.in_(sorted({key for _, key in chunk})),
        )
        for row in conn.execute(query):
            if (row.list, row.record_key) in keys:
                records[(row.list, row.record_key)] = row.data
    health: dict[str, str | None] = {
        row.list: row.health
        for row in conn.execute(
            select(RUN_LISTS.c.list, RUN_LISTS.c.health).where(RUN_LISTS.c.run_id == run_id)
        )
    }
    shas: set[str] = {
        sha for e in events if (sha := (e.get("evidence") or {}).get("raw_sha256")) is not None
    }
    fetched = {
        row.sha256: row.fetched_at
        for row in conn.execute(
            select(RESPONSES.c.sha256, RESPONSES.c.fetched_at).where(
                RESPONSES.c.sha256.in_(sorted(shas))
            )
        )
        if row.fetched_at is not None
    }
    out = []
    for event in events:
        sha = (event.get("evidence") or {}).get("raw_sha256")
        at = fetched.get(sha)
        out.append(
            {
                "event": event,
                "record": records.get((event["list"], event["record_key"]), {}),
                "run_health": health.get(event["list"]),
                "fetched_at": at.isoformat() if at else None,
            }
        )
    return out


def insert_alerts(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert new alerts; a key already present (the same event for the same subscription
    and channel) is skipped, which is what makes enqueueing idempotent."""
    insert_ignore(conn, ALERTS, rows)


def due_digest_items(conn: Connection, now: datetime) -> Sequence[Row[Any]]:
    return conn.execute(
        select(ALERTS)
        .where(ALERTS.c.kind == "digest_item", ALERTS.c.status == "queued", ALERTS.c.due_at <= now)
        .order_by(ALERTS.c.id)
    ).all()


def bundle(
    conn: Connection, digest: dict[str, Any], items: Iterable[int], collapsed: Iterable[int]
) -> None:
    """One digest row for its window's items; items that cancel out are marked collapsed."""
    insert_ignore(conn, ALERTS, [digest])
    digest_id = conn.execute(
        select(ALERTS.c.id).where(ALERTS.c.alert_key == digest["alert_key"])
    ).scalar_one()
    for ids, status in ((list(items), "bundled"), (list(collapsed), "collapsed")):
        if ids:
            conn.execute(
                update(ALERTS)
                .where(ALERTS.c.id.in_(ids))
                .values(status=status, digest_id=digest_id)
            )


def _sendable(due_by: datetime, at: datetime) -> ColumnElement[bool]:
    """Rows a sender may take: due by ``due_by`` and held by no live claim at ``at``."""
    return and_(
        ALERTS.c.status.in_(SENDABLE),
        ALERTS.c.kind != "digest_item",
        ALERTS.c.next_attempt_at <= due_by,
        or_(ALERTS.c.claimed_until.is_(None), ALERTS.c.claimed_until < at),
    )


def due_channels(conn: Connection, due_by: datetime, at: datetime) -> list[str]:
    """The channels with something to send, the one waiting longest first."""
    query = (
        select(ALERTS.c.channel)
        .where(_sendable(due_by, at))
        .group_by(ALERTS.c.channel)
        .order_by(func.min(ALERTS.c.id))
    )
    return list(conn.execute(query).scalars())


def claim_next(
    conn: Connection, channel: str, owner: str, *, due_by: datetime, at: datetime, until: datetime
) -> Row[Any] | None:
    """Claim the channel's oldest sendable row for ``owner`` until ``until``; None when there
    is none left. The conditional UPDATE is the claim (its rowcount says whether this sender
    won the row); on PostgreSQL the row is locked first, so rivals skip it without waiting."""
    while True:
        row = conn.execute(
            select(ALERTS)
            .where(ALERTS.c.channel == channel, _sendable(due_by, at))
            .order_by(ALERTS.c.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if row is None:
            return None
        claimed = conn.execute(
            update(ALERTS)
            .where(ALERTS.c.id == row.id, _sendable(due_by, at))
            .values(claimed_by=owner, claimed_until=until)
        )
        if claimed.rowcount == 1:
            return row
        # Another sender claimed it between the two statements: it is no longer sendable.


def claim_owners(conn: Connection) -> list[str]:
    """Every sender holding a claim, so the caller can tell which of them are gone (claims
    live only on sendable rows: an outcome drops them, and the status index finds those)."""
    query = (
        select(ALERTS.c.claimed_by)
        .where(ALERTS.c.status.in_(SENDABLE), ALERTS.c.claimed_by.is_not(None))
        .distinct()
    )
    return list(conn.execute(query).scalars())


def release_claims(conn: Connection, owners: Sequence[str], alert_id: int | None = None) -> int:
    """Free the claims of ``owners`` (only on ``alert_id`` when given) before their lease
    runs out: their sender is gone, or gave the row up without an outcome."""
    if not owners:
        return 0
    query = update(ALERTS).where(
        ALERTS.c.status.in_(SENDABLE), ALERTS.c.claimed_by.in_(list(owners))
    )
    if alert_id is not None:
        query = query.where(ALERTS.c.id == alert_id)
    return conn.execute(query.values(claimed_by=None, claimed_until=None)).rowcount


def digest_items(conn: Connection, digest_id: int) -> Sequence[Row[Any]]:
    return conn.execute(
        select(ALERTS)
        .where(ALERTS.c.digest_id == digest_id, ALERTS.c.status == "bundled")
        .order_by(ALERTS.c.id)
    ).all()


def mark_delivered(conn: Connection, alert_id: int, at: datetime, receipt: str) -> None:
    conn.execute(
        update(ALERTS)
        .where(ALERTS.c.id == alert_id)
        .values(
            status="delivered",
            attempts=ALERTS.c.attempts + 1,
            delivered_at=at,
            receipt=receipt[:500],
            last_error=None,
            claimed_by=None,
            claimed_until=None,
        )
    )


def mark_attempt_failed(
    conn: Connection, alert_id: int, error: str, retry_at: datetime | None
) -> None:
    """A failed attempt: retried at ``retry_at`` (still ``pending``), or ``failed`` for good
    when None."""
    values: dict[str, Any] = {
        "attempts": ALERTS.c.attempts + 1,
        "last_error": error[:1000],
        "claimed_by": None,
        "claimed_until": None,
    }
    if retry_at is None:
        values["status"] = "failed"
    else:
        values.update(status="pending", next_attempt_at=retry_at)
    conn.execute(update(ALERTS).where(ALERTS.c.id == alert_id).values(**values))


def block_channel(
    conn: Connection, channel: str, owner: str, error: str, *, due_by: datetime, at: datetime
) -> int:
    """A configuration error on ``channel``: the row ``owner`` tried and the channel's other
    sendable rows become ``blocked`` with the error, no attempt counted, as none of them can
    go out before the fix and all of them can after it. Rows other senders hold are left to
    them. Returns how many rows are blocked."""
    held = and_(ALERTS.c.claimed_by == owner, ALERTS.c.status.in_(SENDABLE))
    query = (
        update(ALERTS)
        .where(ALERTS.c.channel == channel, or_(held, _sendable(due_by, at)))
        .values(status="blocked", last_error=error[:1000], claimed_by=None, claimed_until=None)
    )
    return conn.execute(query).rowcount


def requeue(
    conn: Connection, statuses: Sequence[str], subscription: str | None, now: datetime
) -> int:
    """Put ``blocked`` and/or ``failed`` alerts back to ``pending``, due at ``now``; a failed
    one starts its tries over, or its first new failure would be its last."""
    wanted = sorted(set(statuses) & {"blocked", "failed"})
    query = update(ALERTS).where(ALERTS.c.status.in_(wanted), ALERTS.c.kind != "digest_item")
    if subscription:
        query = query.where(ALERTS.c.subscription == subscription)
    attempts = case((ALERTS.c.status == "failed", 0), else_=ALERTS.c.attempts)
    values = {"status": "pending", "next_attempt_at": now, "attempts": attempts}
    return conn.execute(query.values(**values)).rowcount


def alert_log(
    conn: Connection, subscription: str | None = None, limit: int = 100
) -> Sequence[Row[Any]]:
    query = select(ALERTS).where(ALERTS.c.kind != "digest_item")
    if subscription:
        query = query.where(ALERTS.c.subscription == subscription)
    return conn.execute(query.order_by(ALERTS.c.id.desc()).limit(limit)).all()


def subscription_alerts(conn: Connection, subscription: str) -> Sequence[Row[Any]]:
    """Every event alert of a subscription, once per event (any channel): its feed."""
    return conn.execute(
        select(ALERTS)
        .where(
            and_(ALERTS.c.subscription == subscription, ALERTS.c.kind.in_(("event", "digest_item")))
        )
        .order_by(ALERTS.c.id)
    ).all()
