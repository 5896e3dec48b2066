"""The run a crawl belongs to, shared by the spider's middlewares, pipelines and extension.

Like zavod's context object: one place that knows the run id, where rows go and what time
it is. A replayed run's clock is the ``Date`` header of its first response, so fixtures
give the same statuses and timestamps whatever the calendar says.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Self

from scrapy.crawler import Crawler
from sqlalchemy import Engine

from core.registry import SourceDef
from storage.runlog import RunWriter
from storage.runs import set_clock


@dataclass
class RunContext:
    run_id: str
    source: SourceDef
    mode: str  # live · replay · record
    engine: Engine
    writer: RunWriter
    delist_after: int
    clock: datetime | None = None
    clock_origin: str | None = None

    def start_clock(self, at: datetime, origin: str) -> None:
        if self.clock is None:
            self.clock, self.clock_origin = at, origin
            set_clock(self.engine, self.run_id, at, origin)

    def observe_response(self, date_header: bytes | None, from_cassette: bool) -> datetime:
        """When this response was fetched; the first replayed one also sets the run clock."""
        fetched_at = http_date(date_header) if from_cassette else None
        if fetched_at is None:
            fetched_at = datetime.now(UTC)
        if self.mode == "replay":
            self.start_clock(fetched_at, "date-header" if from_cassette else "wall")
        return fetched_at


def http_date(value: bytes | str | None) -> datetime | None:
    if not value:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def run_context(crawler: Crawler) -> RunContext:
    ctx = getattr(crawler, "cw_run", None)
    if ctx is None:
        raise RuntimeError("creditwatch components need crawlers.extensions.RunExtension enabled")
    return ctx


class RunComponent:
    """Base of the middlewares and pipelines that write to the crawl's run."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        return cls(crawler)

    @property
    def run(self) -> RunContext:
        return run_context(self.crawler)
