"""Announcements read so far: what a later run of an announcement source may skip or retry.

An announcement counts as read only through a run whose records were merged (any state but
``running`` or ``aborted``): a run that died after reading it merged nothing, so the next run
must read it again. ``needs_transcription`` counts as read too: the image is archived and
waits for a maintainer, fetching it again every run would add nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection

from storage.models import Announcement, Run, table_of

ANNOUNCEMENTS = table_of(Announcement)
RUNS = table_of(Run)
SETTLED = ("read", "needs_transcription")
MERGED_RUN_STATES = ("healthy", "degraded", "failed")


@dataclass(frozen=True)
class AnnouncementState:
    known: frozenset[str]  # URLs settled by an earlier run
    retry: tuple[tuple[str, str], ...]  # (url, title) that failed and were never settled since


def announcement_state(engine: Engine, source: str) -> AnnouncementState:
    """What earlier merged runs of ``source`` settled, and what they failed to read."""
    merged = select(RUNS.c.run_id).where(
        RUNS.c.source == source, RUNS.c.state.in_(MERGED_RUN_STATES)
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(ANNOUNCEMENTS.c.url, ANNOUNCEMENTS.c.title, ANNOUNCEMENTS.c.state)
            .where(ANNOUNCEMENTS.c.source == source, ANNOUNCEMENTS.c.run_id.in_(merged))
            .order_by(ANNOUNCEMENTS.c.id)
        ).all()
    known = {row.url for row in rows if row.state in SETTLED}
    retry: dict[str, str] = {}
    for row in rows:
        if row.state == "failed" and row.url not in known:
            retry[row.url] = row.title
    return AnnouncementState(frozenset(known), tuple(retry.items()))


def list_announcements(conn: Connection, source: str, state: str | None = None) -> list[Any]:
    """A source's announcements as every run read them, newest reading first."""
    query = select(ANNOUNCEMENTS).where(ANNOUNCEMENTS.c.source == source)
    if state is not None:
        query = query.where(ANNOUNCEMENTS.c.state == state)
    return list(conn.execute(query.order_by(ANNOUNCEMENTS.c.id.desc())).all())


def run_announcements(conn: Connection, run_id: str) -> list[dict[str, Any]]:
    """The announcements one run read, in the order it read them."""
    rows = conn.execute(
        select(ANNOUNCEMENTS).where(ANNOUNCEMENTS.c.run_id == run_id).order_by(ANNOUNCEMENTS.c.id)
    ).mappings()
    return [dict(row) for row in rows]


def announcement_summary(announcements: list[dict[str, Any]]) -> dict[str, Any]:
    """For the run summary: counts by state, and each problem spelled out for a maintainer."""
    summary: dict[str, Any] = {"read": 0, "needs_transcription": [], "failed": []}
    for item in announcements:
        if item["state"] == "read":
            summary["read"] += 1
        elif item["state"] == "needs_transcription":
            summary["needs_transcription"].append({"url": item["url"], "title": item["title"]})
        else:
            summary["failed"].append(
                {"url": item["url"], "title": item["title"], "error": item["error"]}
            )
    return summary
