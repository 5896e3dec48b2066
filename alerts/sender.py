"""Delivering the outbox: bundle due digests, then send what is pending, one alert at a time.

An alert is marked delivered only after its channel confirmed it, in its own transaction.
A sender that dies between the two sends that alert again on its next pass, under the same
key: webhooks carry it as ``Idempotency-Key`` and e-mails as their ``Message-ID``, so those
receivers apply it exactly once; apprise services cannot deduplicate and are at-least-once.
Failed attempts back off (1 min, doubling, at most 6 h) until ``MAX_ATTEMPTS``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection, Row

from alerts.channels import Channel, ChannelError, parse_channel
from alerts.messages import digest_message, event_message, health_message
from alerts.model import AlertMessage, MatchedEvent
from alerts.outbox import alert_key, thawed
from storage.outbox import (
    bundle,
    digest_items,
    due_digest_items,
    mark_attempt_failed,
    mark_delivered,
    pending_alerts,
)

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)


def retry_delay(attempts: int) -> timedelta:
    return min(FIRST_RETRY * 2**attempts, LONGEST_WAIT)


def net_changes(items: list[MatchedEvent]) -> dict[str, list[Any]]:
    """The changes a run of ``modified`` events adds up to: first old value, last new one,
    fields that came back to where they started dropped."""
    net: dict[str, list[Any]] = {}
    for item in items:
        for name, (old, new) in (item.context.event.get("changes") or {}).items():
            net[name] = [net[name][0] if name in net else old, new]
    return {name: pair for name, pair in net.items() if pair[0] != pair[1]}


def collapse(rows: list[Row[Any]]) -> tuple[list[int], list[int]]:
    """Digest items to keep and to drop: an entry modified and then reverted inside the
    window says nothing, so its ``modified`` items cancel out."""
    modified: dict[tuple[str, str], list[Row[Any]]] = defaultdict(list)
    for row in rows:
        event = row.payload["context"]["event"]
        if event["event"] == "modified":
            modified[(event["list"], event["record_key"])].append(row)
    dropped: set[int] = set()
    for group in modified.values():
        if len(group) > 1 and not net_changes([thawed(r.payload) for r in group]):
            dropped.update(r.id for r in group)
    kept = [r.id for r in rows if r.id not in dropped]
    return kept, sorted(dropped)


def bundle_due(conn: Connection, now: datetime) -> int:
    """One ``digest`` alert per subscription, channel and closed window."""
    groups: dict[tuple[str, str, datetime, datetime], list[Row[Any]]] = defaultdict(list)
    for row in due_digest_items(conn, now):
        groups[(row.subscription, row.channel, row.window_start, row.due_at)].append(row)
    for (subscription, channel, start, end), rows in groups.items():
        kept, dropped = collapse(rows)
        digest = {
            "alert_key": alert_key(subscription, channel, start.isoformat(), end.isoformat()),
            "subscription": subscription,
            "channel": channel,
            "kind": "digest",
            "status": "pending" if kept else "collapsed",
            "event_ids": [
                event_id for r in rows if r.id in set(kept) for event_id in r.event_ids or []
            ],
            "payload": {"language": rows[0].payload.get("language", "zh")},
            "window_start": start,
            "due_at": end,
            "next_attempt_at": now,
            "attempts": 0,
            "created_at": now,
        }
        bundle(conn, digest, kept, dropped)
    return len(groups)


def compose(conn: Connection, row: Row[Any]) -> AlertMessage:
    payload = row.payload or {}
    language = payload.get("language", "zh")
    if row.kind == "event":
        return event_message(
            thawed(payload), subscription_id=row.subscription, language=language, key=row.alert_key
        )
    if row.kind == "digest":
        items = [thawed(item.payload) for item in digest_items(conn, row.id)]
        return digest_message(
            items,
            subscription_id=row.subscription,
            language=language,
            key=row.alert_key,
            window=(row.window_start, row.due_at),
        )
    return health_message(
        source=payload["source"],
        problem=payload["problem"],
        detail=payload["detail"],
        runs=[{"run_id": row.run_id, "findings": payload.get("findings", [])}],
        language=language,
        key=row.alert_key,
    )


def send_pending(
    engine: Engine,
    *,
    now: datetime | None = None,
    channel_for: Callable[[str], Channel] = parse_channel,
) -> Counter[str]:
    """One pass over the outbox; returns how many alerts were delivered, retried, failed."""
    now = now or datetime.now(UTC)
    report: Counter[str] = Counter()
    with engine.begin() as conn:
        report["digests"] = bundle_due(conn, now)
    with engine.connect() as conn:
        rows = pending_alerts(conn, now)
    for row in rows:
        with engine.connect() as conn:
            message = compose(conn, row)
        try:
            receipt = channel_for(row.channel).deliver(message)
        except (ChannelError, ValueError) as exc:
            retryable = getattr(exc, "retryable", False)
            final = not retryable or row.attempts + 1 >= MAX_ATTEMPTS
            retry_at = None if final else datetime.now(UTC) + retry_delay(row.attempts)
            with engine.begin() as conn:
                mark_attempt_failed(conn, row.id, f"{type(exc).__name__}: {exc}", retry_at)
            report["failed" if final else "retry"] += 1
            continue
        with engine.begin() as conn:
            mark_delivered(conn, row.id, datetime.now(UTC), receipt)
        report["delivered"] += 1
    return report
