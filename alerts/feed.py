"""A subscription's Atom feed: every event that matched it, one entry each, newest first.

Built from the outbox, so the feed says exactly what the subscription's channels were told
(in its language), whatever the channels; readers deduplicate entries by their stable id.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from alerts.channels import write_atom
from alerts.messages import event_message
from alerts.outbox import alert_key, thawed
from alerts.subscriptions import Subscription
from storage.outbox import subscription_alerts


def feed_document(conn: Connection, subscription: Subscription) -> bytes:
    seen: set[str] = set()
    entries = []
    for row in reversed(subscription_alerts(conn, subscription.id)):
        event_id = (row.event_ids or [""])[0]
        if event_id in seen:  # one entry per event, whatever the number of channels
            continue
        seen.add(event_id)
        entries.append(
            event_message(
                thawed(row.payload),
                subscription_id=subscription.id,
                language=subscription.language,
                key=alert_key(subscription.id, "feed", event_id),
            )
        )
    return write_atom(
        entries,
        feed_id=f"urn:creditwatch:subscription:{subscription.id}",
        title=f"creditwatch: {subscription.id}",
        updated=datetime.now(UTC),
    )
