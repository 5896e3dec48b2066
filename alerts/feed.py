"""A subscription's Atom feed: every event that matched it, one entry each, newest first.

Built from the outbox, so the feed says exactly what the subscription's channels were told
(in its language), whatever the channels; readers deduplicate entries by their stable id.

A redacting server (``creditwatch serve --redact``) serves the same entries redacted: the
event and its record go through ``core.redact`` as on every other page, and a name the
subscription matched on is shortened when the subject is a person (the subscriber typed the
full name, but the feed's readers may be anyone). Entry ids stay the same.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy.engine import Connection

from alerts import links
from alerts.channels import write_atom
from alerts.messages import event_message
from alerts.model import MatchedEvent
from alerts.outbox import alert_key, thawed
from alerts.subscriptions import Subscription
from core.redact import PERSON, redact_entity, replacements, scrub, short_name
from storage.outbox import subscription_alerts

NAME_CRITERIA = ("name", "fuzzy_name")


def feed_document(
    conn: Connection,
    subscription: Subscription,
    *,
    redact: bool = False,
    base_url: str | None = None,
    self_url: str | None = None,
) -> bytes:
    """The whole feed, each entry ``redacted`` when the server redacts (the channels were told
    the unredacted alert; a feed on a redacting server may be read by anyone).

    Entries link to the web app at ``base_url`` (default: the subscription's, else
    ``CREDITWATCH_BASE_URL``, else ``DEFAULT_BASE_URL``); a redacted entry links to the
    person's pseudonymous page. ``self_url`` is where the feed itself is served."""
    base = base_url or links.base_url(subscription.base_url)
    seen: set[str] = set()
    entries = []
    for row in reversed(subscription_alerts(conn, subscription.id)):
        event_id = (row.event_ids or [""])[0]
        if event_id in seen:  # one entry per event, whatever the number of channels
            continue
        seen.add(event_id)
        item = thawed(row.payload)
        entries.append(
            event_message(
                redacted(item) if redact else item,
                subscription_id=subscription.id,
                language=subscription.language,
                key=alert_key(subscription.id, "feed", event_id),
                base_url=base,
                timezone=subscription.timezone,
            )
        )
    own = [("alternate", f"{base}/")] + ([("self", self_url)] if self_url else [])
    return write_atom(
        entries,
        feed_id=f"urn:creditwatch:subscription:{subscription.id}",
        title=subscription.feed_title,
        updated=datetime.now(UTC),
        links=own,
    )


def redacted(item: MatchedEvent) -> MatchedEvent:
    """An alert as a redacting server shows it: its event and record redacted together, its
    evidence and matched value scrubbed of what they named. An event whose record is gone is
    taken for a person's (the safe reading: nothing else says whose it is)."""
    ctx = item.context
    person = not ctx.record or ctx.record.get("entity_type") == PERSON
    record = {**ctx.record, "entity_type": PERSON} if person else ctx.record
    [shown], [event] = redact_entity([record], [ctx.event])
    if ctx.record:
        shown["entity_type"] = ctx.record.get("entity_type")
    pairs = replacements([record, {"entity_name": ctx.event.get("entity_name")}], person)
    value = scrub(item.match.value, pairs)
    if person and item.match.criterion in NAME_CRITERIA:
        value = short_name(value)  # a fuzzy name is the subscriber's spelling of this person
    context = replace(
        ctx,
        event=event,
        record=shown if ctx.record else {},
        evidence=replace(ctx.evidence, source_url=scrub(ctx.evidence.source_url, pairs)),
    )
    return replace(item, context=context, match=replace(item.match, value=value))
