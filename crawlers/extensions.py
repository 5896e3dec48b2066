"""Opens and closes the fetch of a creditwatch run around a Scrapy crawl.

``creditwatch crawl`` creates the run and passes ``CW_RUN_ID``; a bare ``scrapy crawl``
creates its own. When the spider finishes, the run's fetch log and staging are complete and
the run is marked ``fetched``: judging it, change detection and alerts are the finish step's
(``pipeline/finalize.py``), run by the process that started this one once it has exited. A
crawl that ends any other way is recorded as ``aborted`` and changes nothing.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured
from scrapy.http import Response
from scrapy.spiders import Spider
from twisted.python.failure import Failure

from core.outcomes import PageProblem
from crawlers.cassette import crawl_mode
from crawlers.runcontext import RunContext, run_context
from crawlers.spiders.base import PortalSpider
from storage.engine import get_engine, upgrade
from storage.runlog import RunWriter
from storage.runs import create_run, fail_run, mark_fetched

logger = logging.getLogger(__name__)


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
                if not mark_fetched(ctx.engine, ctx.run_id):
                    logger.warning("creditwatch run %s was no longer running", ctx.run_id)
            else:
                fail_run(
                    ctx.engine, ctx.run_id, "aborted", f"crawl ended: {reason}", datetime.now(UTC)
                )
        except Exception as exc:
            # Scrapy only logs a signal handler's error and exits 0: the run row must say
            # what happened, or the parent can only report "exited with status 0".
            logger.exception("creditwatch run %s could not record its fetch", ctx.run_id)
            fail_run(
                ctx.engine,
                ctx.run_id,
                "failed",
                f"recording the fetch failed: {type(exc).__name__}: {exc}"[:1000],
                datetime.now(UTC),
            )
