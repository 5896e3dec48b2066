"""Downloader middlewares that keep the run's record: the raw archive, the fetch log, and
retries that back off. Each has one job; priorities are set in ``crawlers.settings``."""

from __future__ import annotations

import hashlib
from typing import Any

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.spiders import Spider
from scrapy.utils.defer import deferred_to_future
from twisted.internet import reactor, task

from core.outcomes import outcome_for_status
from crawlers.responses import ChallengePage, incomplete, outcome_for_exception, undecodable
from crawlers.runcontext import RunComponent


class ArchiveMiddleware(RunComponent):
    """Stores every response received (redirects and retried errors included), after
    HTTP decompression, before anything reads it. Priority 580: below compression (590)."""

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Response:
        ctx = self.run
        from_cassette = "cassette" in response.flags
        fetched_at = ctx.observe_response(response.headers.get("Date"), from_cassette)
        ctx.writer.add_response(
            url=response.url,
            method=request.method,
            status=response.status,
            headers=[
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, values in response.headers.items()
                for value in values
            ],
            body=response.body,
            sha256=hashlib.sha256(response.body).hexdigest(),
            fetched_at=fetched_at,
            from_cassette=from_cassette,
        )
        return response


class FetchLogMiddleware(RunComponent):
    """Gives each request's final result (after retries and redirects) an outcome.

    Priority 50, next to the engine, so it sees what the spider will see. Requests carry
    ``meta["cw_list"]``: the list whose health they bear on (None: the whole source).
    """

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> FetchLogMiddleware:
        middleware = cls(crawler)
        crawler.signals.connect(middleware.request_dropped, signal=signals.request_dropped)
        return middleware

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Response:
        outcome = outcome_for_status(response.status)
        problem = self.page_problem(request, response) if outcome == "ok" else None
        self.run.writer.add_fetch(
            url=request.url,
            outcome=problem.outcome if problem else outcome,
            list_id=request.meta.get("cw_list"),
            status=response.status,
            detail=str(problem) if problem else None,
            sha256=hashlib.sha256(response.body).hexdigest(),
        )
        if problem:
            # Archived already; kept from the spider so no value is read from it.
            raise problem
        return response

    def page_problem(self, request: Request, response: Response) -> ChallengePage | None:
        """Why a page that came with a good status says nothing trustworthy: a challenge or
        captcha in its place (the spider's ``classify_response``), no content, a document cut
        short, or bytes invalid in its own encoding. None: the spider may read it."""
        classify = getattr(self.crawler.spider, "classify_response", None)
        if classify is not None and (named := classify(response)):
            return ChallengePage(named, f"HTTP {response.status}: a {named} page, not the data")
        if request.meta.get("cw_bytes") or request.meta.get("dont_obey_robotstxt"):
            return None  # attachments are read from their bytes; robots.txt is Scrapy's own
        if cut := incomplete(response):
            return ChallengePage(*cut)
        if garbled := undecodable(response):
            return ChallengePage("malformed", garbled)
        return None

    def request_dropped(self, request: Request, spider: Spider | None = None) -> None:
        """A redirect the scheduler dropped as a page already requested (a redirect loop):
        the page it stood for never arrived, and nothing else would say so, so a list
        read until a short page would end there, healthy and short."""
        redirected_from = request.meta.get("redirect_urls")
        if not redirected_from:
            return  # a link requested twice: the first request speaks for it
        self.run.writer.add_fetch(
            url=redirected_from[0],
            outcome="http_error",
            list_id=request.meta.get("cw_list"),
            detail=f"redirected to {request.url}, a page already requested: a redirect loop",
        )

    def process_exception(
        self, request: Request, exception: Exception, spider: Spider | None = None
    ) -> None:
        self.run.writer.add_fetch(
            url=request.url,
            outcome=outcome_for_exception(exception),
            list_id=request.meta.get("cw_list"),
            detail=f"{type(exception).__name__}: {exception}"[:1000],
        )


class BackoffRetryMiddleware(RetryMiddleware):
    """Scrapy's retries, spaced out: the n-th retry waits ``CW_RETRY_BACKOFF * 2**(n-1)`` s.

    ``CW_PACE`` s more before every request: a cassette answers ahead of the downloader, so
    ``DOWNLOAD_DELAY`` never slows a replay, and tests that stop or kill a crawl while it is
    still fetching need one that takes a while."""

    def __init__(self, settings: BaseSettings) -> None:
        super().__init__(settings)
        self.backoff = settings.getfloat("CW_RETRY_BACKOFF", 0.0)
        self.pace = settings.getfloat("CW_PACE", 0.0)

    def _retry(self, request: Request, reason: Any) -> Request | None:
        retry = super()._retry(request, reason)
        if retry is not None and self.backoff > 0:
            retry.meta["cw_retry_delay"] = self.backoff * 2 ** (retry.meta["retry_times"] - 1)
        return retry

    async def process_request(self, request: Request, spider: Spider | None = None) -> None:
        delay = request.meta.pop("cw_retry_delay", 0) + self.pace
        if delay:
            await deferred_to_future(task.deferLater(reactor, delay, lambda: None))
