"""What the parts of ``alerts`` hand each other: an event with its context, and a delivery.

Matching (``matching.py``) reads ``EventContext``; messages (``messages.py``) turn one or more
of them into an ``AlertMessage``; channels (``channels.py``) deliver an ``AlertMessage`` under
its idempotency key; the outbox (``storage/outbox.py``) and the sender (``sender.py``) decide
when, and remember what was delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Evidence:
    """What an alert cites: the archived page and the run that read it."""

    source_url: str | None
    raw_sha256: str | None
    run_id: str
    run_health: str | None  # the list's health in that run (healthy · degraded · failed)
    fetched_at: str | None  # ISO datetime the page was fetched (the run clock in replays)


@dataclass(frozen=True)
class EventContext:
    """One event (SCHEMA.md's event object) with the record it is about.

    ``record`` is the schema record as stored when the event was raised (uscc, region_code,
    reason, measure, list_kind ... are read from it); it may be ``{}`` for an entry whose
    record is gone. ``list_name`` and ``source_name`` are the list's and its source's Chinese
    and English names from the registry (empty when it no longer has them).
    """

    event: dict[str, Any]
    record: dict[str, Any]
    evidence: Evidence
    list_name_zh: str = ""
    list_name_en: str = ""
    source_name_zh: str = ""
    source_name_en: str = ""


@dataclass(frozen=True)
class Match:
    """Why a subscription matched an event: which criterion, and the fuzzy score if any."""

    criterion: str  # uscc · name · fuzzy_name · keyword · region · list (scope only)
    value: str  # the subscription's value that matched
    score: float | None = None  # rapidfuzz score (0-100) for fuzzy names


@dataclass(frozen=True)
class MatchedEvent:
    context: EventContext
    match: Match


@dataclass(frozen=True)
class AlertMessage:
    """One message, ready in every medium; channels pick the one they speak.

    Every scraped text in ``html`` and ``markdown`` is escaped for that medium; ``text`` is
    plain; ``data`` is the JSON body of webhooks (events as schema objects, evidence, match).
    ``key`` is the idempotency key: webhooks send it as ``Idempotency-Key``, emails derive
    their ``Message-ID`` from it, so a receiver can apply a redelivery once. ``link`` is the
    web app's page to act on (the entity's, a list's): an Atom entry's ``alternate`` link;
    ``feed_title`` the title of its subscription's feeds (a feed file takes it).
    """

    key: str
    subject: str
    text: str
    html: str
    markdown: str
    data: dict[str, Any] = field(default_factory=dict)
    language: str = "zh"
    link: str | None = None
    feed_title: str | None = None
