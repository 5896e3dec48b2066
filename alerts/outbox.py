"""Turning a run's events into outbox rows, inside the transaction that raised them.

Each (subscription, channel, event) gets one alert whose key is a hash of the three, so
enqueueing twice changes nothing and no event alerts a subscription's channel twice.
Immediate subscriptions get ``pending`` rows; digest subscriptions (hourly, daily) get
``queued`` items due when the window holding the event's time closes; the sender bundles them.
Everything a message needs (the event, its record, the evidence) is frozen into the row, so
a message says what was true when the event was raised, however late it is sent.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from alerts.matching import match_all
from alerts.model import EventContext, Evidence, Match, MatchedEvent
from alerts.subscriptions import Subscription, SubscriptionError
from core.registry import RegistryError, get_source
from storage.outbox import (
    insert_alerts,
    run_event_context,
    subscription_rows,
)
from storage.pending import held_summary
from storage.source_state import source_state

log = logging.getLogger(__name__)
FAILING_AFTER_RUNS = 3  # SCHEMA.md's K: a source unhealthy this many runs running is failing


def alert_key(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode("utf-8")).hexdigest()[:32]


def subscriptions(conn: Connection) -> list[Subscription]:
    """The stored subscriptions still valid against today's registry; one naming a list
    that no longer exists is skipped with a warning rather than stopping detection."""
    valid = []
    for row in subscription_rows(conn):
        try:
            valid.append(Subscription.from_dict(row.data))
        except SubscriptionError as exc:
            log.warning("subscription %s skipped: %s", row.id, exc)
    return valid


def window(at: datetime, mode: str, timezone: str) -> tuple[datetime, datetime]:
    """The digest window (start, end) holding ``at``: a clock hour or a calendar day in the
    subscription's time zone, returned in UTC."""
    local = at.astimezone(ZoneInfo(timezone))
    if mode == "hourly":
        start = local.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
    else:
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        end = (start + timedelta(days=1, hours=2)).replace(hour=0)  # DST-safe next midnight
    return start.astimezone(UTC), end.astimezone(UTC)


def _names(list_id: str, source: str) -> tuple[str, str, str, str]:
    """The list's and the source's names (zh, en), empty for what the registry lacks."""
    try:
        src = get_source(source)
    except RegistryError:
        return "", "", "", ""
    try:
        lst = src.list(list_id)
    except RegistryError:
        return "", "", src.name_zh, src.name_en
    return lst.name_zh, lst.name_en, src.name_zh, src.name_en


def to_context(item: dict[str, Any]) -> EventContext:
    """An ``EventContext`` from what ``storage.outbox.run_event_context`` (or a frozen
    payload) holds."""
    event = item["event"]
    evidence = event.get("evidence") or {}
    zh, en, source_zh, source_en = _names(event["list"], event["source"])
    return EventContext(
        event=event,
        record=item.get("record") or {},
        evidence=Evidence(
            source_url=evidence.get("source_url"),
            raw_sha256=evidence.get("raw_sha256"),
            run_id=event["run_id"],
            run_health=item.get("run_health"),
            fetched_at=item.get("fetched_at"),
        ),
        list_name_zh=zh,
        list_name_en=en,
        source_name_zh=source_zh,
        source_name_en=source_en,
    )


def frozen(item: dict[str, Any], match: Match, language: str) -> dict[str, Any]:
    return {"context": item, "match": asdict(match), "language": language}


def thawed(payload: dict[str, Any]) -> MatchedEvent:
    return MatchedEvent(to_context(payload["context"]), Match(**payload["match"]))


def enqueue_run(
    conn: Connection,
    run_id: str,
    now: datetime | None = None,
    *,
    event_ids: Collection[str] | None = None,
) -> int:
    """Outbox rows for every subscription that matches an event of the run (only those of
    ``event_ids`` when given: the delistings a maintainer released long after their run,
    which must not alert subscriptions added since about the run's other events)."""
    subs = subscriptions(conn)
    if not subs:
        return 0
    raw = run_event_context(conn, run_id)
    if event_ids is not None:
        wanted = set(event_ids)
        raw = [item for item in raw if item["event"]["event_id"] in wanted]
    by_id = {item["event"]["event_id"]: item for item in raw}
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for sub, matched in match_all(subs, [to_context(item) for item in raw]):
        event = matched.context.event
        item = by_id[event["event_id"]]
        for channel in sub.channels:
            row = {
                "alert_key": alert_key(sub.id, channel, event["event_id"]),
                "subscription": sub.id,
                "channel": channel,
                "run_id": run_id,
                "event_ids": [event["event_id"]],
                "match": asdict(matched.match),
                "payload": frozen(item, matched.match, sub.language),
                "attempts": 0,
                "created_at": now,
            }
            if sub.mode == "immediate":
                row.update(kind="event", status="pending", due_at=now, next_attempt_at=now)
            else:
                at = datetime.fromisoformat(event["at"])
                start, end = window(at, sub.mode, sub.timezone)
                row.update(
                    kind="digest_item",
                    status="queued",
                    window_start=start,
                    due_at=end,
                    next_attempt_at=end,
                )
            rows.append(row)
    insert_alerts(conn, rows)
    return len(rows)


def enqueue_health(
    conn: Connection,
    *,
    run_id: str,
    source: str,
    layout_drift: list[dict[str, Any]],
    failing_after: int = FAILING_AFTER_RUNS,
    now: datetime | None = None,
    held: dict[str, int] | None = None,
) -> int:
    """Source-health alerts for maintainers' subscriptions (``health: true``, scoped by their
    ``sources``): layout drift in this run; the delistings the mass-delisting guard held in
    this run (``held``: list → count, ``RunDetection.held``), one alert for all its lists;
    and a source whose last ``failing_after`` runs were all unhealthy (raised once, on the
    run that completes the streak)."""
    problems: list[tuple[str, str, list[dict[str, Any]]]] = []
    if layout_drift:
        urls = ", ".join(sorted({f["url"] for f in layout_drift})[:5])
        problems.append(("layout_drift", f"{len(layout_drift)} page(s): {urls}", layout_drift))
    if held and any(held.values()):
        problems.append(("mass_delisting_held", *_held_problem(conn, run_id, source, held)))
    state = source_state(conn, source, failing_after)
    if state.newly_failing:
        problems.append(("failing", state.detail, []))
    maintainers = [
        sub
        for sub in subscriptions(conn)
        if sub.health and (not sub.sources or source in sub.sources)
    ]
    if not problems or not maintainers:
        return 0
    now = now or datetime.now(UTC)
    rows = [
        {
            "alert_key": alert_key(sub.id, channel, run_id, problem),
            "subscription": sub.id,
            "channel": channel,
            "kind": "health",
            "status": "pending",
            "run_id": run_id,
            "payload": {
                "source": source,
                "problem": problem,
                "detail": detail,
                "findings": findings[:20],
                "language": sub.language,
            },
            "attempts": 0,
            "created_at": now,
            "due_at": now,
            "next_attempt_at": now,
        }
        for problem, detail, findings in problems
        for sub in maintainers
        for channel in sub.channels
    ]
    insert_alerts(conn, rows)
    return len(rows)


def _held_problem(
    conn: Connection, run_id: str, source: str, held: dict[str, int]
) -> tuple[str, list[dict[str, Any]]]:
    """Detail and findings of a ``mass_delisting_held`` alert: per list, how many delistings
    were held out of how many active entries, the guard, and the commands that decide."""
    measured = {entry["list"]: entry for entry in held_summary(conn, run_id)}
    release = f"creditwatch pending release --run {run_id}"
    discard = f"creditwatch pending discard --run {run_id}"
    findings, parts = [], []
    for list_id, count in sorted(held.items()):
        if not count:
            continue
        entry = {"list": list_id, **measured.get(list_id, {}), "held": count}
        entry.update(release=release, discard=discard)
        findings.append(entry)
        active, share = entry.get("active"), entry.get("share")
        part = f"{list_id}: {count} entries would be delisted as disappeared"
        if active:
            part += f", {count / active:.0%} of its {active} active entries"
        if share is not None:
            part += f" (guard: more than {share:.0%} and at least {entry.get('min_count')})"
        parts.append(part)
    detail = (
        f"{'; '.join(parts)}. Held as pending: no delisted events until a maintainer decides. "
        f"Review with `creditwatch pending list --source {source}`, then `{release}` (raises "
        f"the delisted events) or `{discard}` (the run was wrong)."
    )
    return detail, findings
