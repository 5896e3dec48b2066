"""Delivering the outbox: bundle due digests, then send what is pending, each channel in
its own thread (a receiver that hangs until its timeout holds up only its own channel), each
channel's alerts in order, one at a time.

A sender claims an alert before delivering it (``storage.outbox.claim_next``), so two senders
at once (processes, or threads with their own connections) never deliver one alert twice.
The claim is a lease of ``LEASE``: a sender that dies leaves its alerts to the next pass once
the lease runs out, or at once when its process, on this host, is seen to be gone.

An alert is marked delivered only after its channel confirmed it, in its own transaction.
A sender that dies between the two sends that alert again on a later pass, under the same
key: webhooks carry it as ``Idempotency-Key`` and e-mails as their ``Message-ID``, so those
receivers apply it exactly once; apprise services cannot deduplicate and are at-least-once.
Failed attempts back off (1 min, doubling, at most 6 h) until ``MAX_ATTEMPTS``. A
configuration error (``ConfigError``) is no attempt: the channel's alerts become ``blocked``
with the error and are tried again by every pass, so fixing the configuration sends them.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection, Row

from alerts import links
from alerts.channels import Channel, ChannelError, ConfigError, parse_channel
from alerts.messages import digest_message, event_message, health_message
from alerts.model import AlertMessage, MatchedEvent
from alerts.outbox import alert_key, thawed
from alerts.subscriptions import Subscription, SubscriptionError
from core.clock import TIMEZONE_NAME
from core.registry import RegistryError, get_source
from storage.outbox import (
    block_channel,
    bundle,
    claim_next,
    claim_owners,
    digest_items,
    due_channels,
    due_digest_items,
    mark_attempt_failed,
    mark_delivered,
    release_claims,
    subscription_rows,
)
from storage.runs import pid_running, this_host

MAX_ATTEMPTS = 8
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=6)
# Longer than any one delivery can take (the channels' timeouts are 15 to 60 s): a claim is
# taken per alert, just before it is sent.
LEASE = timedelta(minutes=15)
PARALLEL_CHANNELS = 4  # channels delivered at once


class SendReport(Counter[str]):
    """How many alerts were delivered, retried, failed, blocked (and digests bundled), and
    ``problems``: each distinct error that blocked or failed alerts, for the operator."""

    def __init__(self, counts: Mapping[str, int] | None = None) -> None:
        super().__init__(counts or {})
        self.problems: dict[str, str] = {}  # error message → "blocked" or "failed"

    def add(self, other: SendReport) -> None:
        self.update(other)
        self.problems.update(other.problems)


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


def _subscription(conn: Connection, subscription_id: str) -> Subscription | None:
    """The alert's subscription as stored now (None once removed, or invalid today)."""
    for row in subscription_rows(conn):
        if row.id == subscription_id:
            try:
                return Subscription.from_dict(row.data)
            except SubscriptionError:
                return None
    return None


def registry_names(source: str, language: str) -> tuple[str, dict[str, str]]:
    """The source's name and its lists' names in ``language`` (empty when unknown)."""
    try:
        src = get_source(source)
    except RegistryError:
        return "", {}
    pick = (lambda zh, en: zh) if language == "zh" else (lambda zh, en: en or zh)
    return pick(src.name_zh, src.name_en), {
        lst.id: pick(lst.name_zh, lst.name_en) for lst in src.lists
    }


def compose(conn: Connection, row: Row[Any]) -> AlertMessage:
    """The message of an outbox row, in the subscription's language and time zone, linking
    to the web app at its ``base_url`` (else ``CREDITWATCH_BASE_URL``, else the default)."""
    payload = row.payload or {}
    language = payload.get("language", "zh")
    sub = _subscription(conn, row.subscription)
    base = links.base_url(sub.base_url if sub else None)
    timezone = sub.timezone if sub else TIMEZONE_NAME
    title = sub.feed_title if sub else None
    message: AlertMessage
    if row.kind == "event":
        message = event_message(
            thawed(payload),
            subscription_id=row.subscription,
            language=language,
            key=row.alert_key,
            base_url=base,
            timezone=timezone,
        )
    elif row.kind == "digest":
        items = [thawed(item.payload) for item in digest_items(conn, row.id)]
        message = digest_message(
            items,
            subscription_id=row.subscription,
            language=language,
            key=row.alert_key,
            window=(row.window_start, row.due_at),
            base_url=base,
            timezone=timezone,
        )
    else:
        source_name, list_names = registry_names(payload["source"], language)
        message = health_message(
            source=payload["source"],
            problem=payload["problem"],
            detail=payload["detail"],
            runs=[{"run_id": row.run_id, "findings": payload.get("findings", [])}],
            language=language,
            key=row.alert_key,
            base_url=base,
            timezone=timezone,
            source_name=source_name,
            list_names=list_names,
        )
    return replace(message, feed_title=title)


def _sender_id() -> str:
    """``HOST:PID:TOKEN``: unique per pass, and says where to look whether it is alive."""
    return f"{this_host()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _sender_gone(owner: str) -> bool:
    """Whether the sender that holds a claim is known to be dead: only a process on this
    host can be looked at; this process's own passes (other threads) are alive."""
    host, _, rest = owner.rpartition(":")[0].rpartition(":")
    try:
        pid = int(rest)
    except ValueError:
        return False
    if host != this_host() or pid == os.getpid():
        return False
    return not pid_running(pid)


def _release_gone(engine: Engine) -> None:
    with engine.connect() as conn:
        gone = [owner for owner in claim_owners(conn) if _sender_gone(owner)]
    if gone:
        with engine.begin() as conn:
            release_claims(conn, gone)


def _send_channel(
    engine: Engine,
    channel: str,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    channel_for: Callable[[str], Channel],
) -> SendReport:
    """Deliver a channel's due alerts in order, claiming each just before sending it; stop
    at a configuration error, which blocks the channel's remaining alerts with it."""
    report = SendReport()
    while True:
        at = datetime.now(UTC)
        with engine.begin() as conn:
            row = claim_next(conn, channel, owner, due_by=now, at=at, until=at + lease)
        if row is None:
            return report
        try:
            with engine.connect() as conn:
                message = compose(conn, row)
            receipt = channel_for(row.channel).deliver(message)
        except ConfigError as exc:
            with engine.begin() as conn:
                blocked = block_channel(
                    conn,
                    channel,
                    owner,
                    f"{type(exc).__name__}: {exc}",
                    due_by=now,
                    at=datetime.now(UTC),
                )
            report["blocked"] += blocked
            report.problems[str(exc)] = "blocked"
            return report
        except (ChannelError, ValueError) as exc:
            retryable = getattr(exc, "retryable", False)
            final = not retryable or row.attempts + 1 >= MAX_ATTEMPTS
            retry_at = None if final else datetime.now(UTC) + retry_delay(row.attempts)
            with engine.begin() as conn:
                mark_attempt_failed(conn, row.id, f"{type(exc).__name__}: {exc}", retry_at)
            report["failed" if final else "retry"] += 1
            if final:
                report.problems[str(exc)] = "failed"
            continue
        except BaseException:
            with engine.begin() as conn:  # no outcome: let the next pass have it at once
                release_claims(conn, [owner], row.id)
            raise
        with engine.begin() as conn:
            mark_delivered(conn, row.id, datetime.now(UTC), receipt)
        report["delivered"] += 1


def send_pending(
    engine: Engine,
    *,
    now: datetime | None = None,
    channel_for: Callable[[str], Channel] = parse_channel,
    lease: timedelta = LEASE,
) -> SendReport:
    """One pass over the outbox; returns how many alerts were delivered, retried, failed,
    blocked by their channel's configuration, and what went wrong."""
    now = now or datetime.now(UTC)
    report = SendReport()
    with engine.begin() as conn:
        report["digests"] = bundle_due(conn, now)
    _release_gone(engine)
    with engine.connect() as conn:
        channels = due_channels(conn, now, datetime.now(UTC))
    if not channels:
        return report
    owner = _sender_id()
    with ThreadPoolExecutor(
        max_workers=min(PARALLEL_CHANNELS, len(channels)), thread_name_prefix="alerts-send"
    ) as pool:
        futures = [
            pool.submit(
                _send_channel,
                engine,
                channel,
                owner=owner,
                now=now,
                lease=lease,
                channel_for=channel_for,
            )
            for channel in channels
        ]
        for future in futures:
            report.add(future.result())
    return report
