"""Opens and closes a creditwatch run around a Scrapy crawl.

``creditwatch crawl`` creates the run and passes ``CW_RUN_ID``; a bare ``scrapy crawl``
creates its own. When the spider finishes, the run is judged and change detection runs;
a crawl that ends any other way is recorded as ``aborted`` and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any, Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.spiders import Spider
from twisted.python.failure import Failure

from core.outcomes import PageProblem
from crawlers.runcontext import RunContext, run_context
from crawlers.spiders.base import PortalSpider
from pipeline.finalize import finalize_run
from storage.engine import get_engine, upgrade
from storage.runlog import RunWriter
from storage.runs import create_run, fail_run

logger = logging.getLogger(__name__)


def crawl_mode(settings: Any) -> str:
    if not settings.get("CW_CASSETTE"):
        return "live"
    return "record" if settings.get("CW_CASSETTE_MODE", "replay") == "record" else "replay"


class RunExtension:
    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        if not crawler.settings.getbool("CW_RUN_ENABLED", True):
            raise NotConfigured
        ext = cls(crawler)
        crawler.signals.connect(ext.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(ext.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(ext.spider_error, signal=signals.spider_error)
        return ext

    def spider_opened(self, spider: Spider) -> None:
        if not isinstance(spider, PortalSpider):
            raise NotConfigured(f"{spider.name} is not a creditwatch PortalSpider")
        settings = self.crawler.settings
        engine = get_engine()
        source = spider.source()
        mode = crawl_mode(settings)
        delist_after = settings.getint("CW_DELIST_AFTER", 2)
        run_id = settings.get("CW_RUN_ID")
        if not run_id:
            upgrade()
            run_id = create_run(
                engine,
                source,
                mode=mode,
                cassette=settings.get("CW_CASSETTE"),
                delist_after=delist_after,
            )
        ctx = RunContext(
            run_id=run_id,
            source=source,
            mode=mode,
            engine=engine,
            writer=RunWriter(engine, run_id),
            delist_after=delist_after,
        )
        if mode != "replay":
            ctx.start_clock(datetime.now(UTC), "wall")
        self.crawler.cw_run = ctx  # type: ignore[attr-defined]
        logger.info("creditwatch run %s (%s)", run_id, mode)

    def spider_error(self, failure: Failure, response: Response, spider: Spider) -> None:
        """A callback that could not read its page: the page's outcome, not a crash."""
        exc = failure.value
        outcome = exc.outcome if isinstance(exc, PageProblem) else "malformed"
        run_context(self.crawler).writer.add_fetch(
            url=response.request.url if response.request else response.url,
            outcome=outcome,
            list_id=response.meta.get("cw_list"),
            status=response.status,
            detail=f"{type(exc).__name__}: {exc}"[:1000],
        )

    def spider_closed(self, spider: Spider, reason: str) -> None:
        ctx = run_context(self.crawler)
        try:
            ctx.writer.flush()
            if reason == "finished":
                ctx.start_clock(datetime.now(UTC), "wall")  # a replay that fetched nothing
                finalize_run(ctx.engine, ctx.run_id)
            else:
                fail_run(
                    ctx.engine, ctx.run_id, "aborted", f"crawl ended: {reason}", datetime.now(UTC)
                )
        except Exception as exc:
            # Scrapy only logs a signal handler's error and exits 0: the run row must say
            # what happened, or the parent can only report "exited with status 0".
            logger.exception("creditwatch run %s could not be finished", ctx.run_id)
            fail_run(
                ctx.engine,
                ctx.run_id,
                "failed",
                f"finishing the run failed: {type(exc).__name__}: {exc}"[:1000],
                datetime.now(UTC),
            )
