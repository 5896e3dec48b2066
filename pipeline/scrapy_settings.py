"""Scrapy settings of a bare ``scrapy crawl`` from the repository root (``scrapy.cfg``): the
crawler's own, plus the finish step.

``creditwatch crawl`` waits for its Scrapy child and finishes the run itself (it passes
``CW_RUN_ID`` and ``crawlers.settings``). A bare ``scrapy crawl`` has no such conductor, so
this extension is one: once the engine has stopped (after ``RunExtension`` marked the run
``fetched``), it runs the finish step in that same process.
"""

from __future__ import annotations

from typing import Self

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from crawlers.settings import *  # noqa: F403  (every setting of the crawler)
from crawlers.settings import EXTENSIONS as CRAWLER_EXTENSIONS
from pipeline.finalize import finish_fetched

EXTENSIONS = {**CRAWLER_EXTENSIONS, "pipeline.scrapy_settings.FinishBareCrawl": 10}


class FinishBareCrawl:
    """Finishes the run of a crawl no conductor waits for (no ``CW_RUN_ID``)."""

    def __init__(self, crawler: Crawler) -> None:
        self.crawler = crawler

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> Self:
        settings = crawler.settings
        if settings.get("CW_RUN_ID") or not settings.getbool("CW_RUN_ENABLED", True):
            raise NotConfigured
        ext = cls(crawler)
        # engine_stopped comes after every spider_closed handler, RunExtension's included.
        crawler.signals.connect(ext.engine_stopped, signal=signals.engine_stopped)
        return ext

    def engine_stopped(self) -> None:
        ctx = getattr(self.crawler, "cw_run", None)
        if ctx is not None:
            finish_fetched(ctx.engine, ctx.run_id)
