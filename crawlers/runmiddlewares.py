"""Downloader middlewares that keep the run's record: the raw archive, the fetch log, and
retries that back off. Each has one job; priorities are set in ``crawlers.settings``."""

from __future__ import annotations

import hashlib
from typing import Any

from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.http import Request, Response
from scrapy.settings import BaseSettings
from scrapy.spiders import Spider
from scrapy.utils.defer import deferred_to_future
from twisted.internet import reactor, task

from core.outcomes import MalformedPage, outcome_for_status
from crawlers.responses import outcome_for_exception, undecodable
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

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Response:
        outcome = outcome_for_status(response.status)
        classify = getattr(self.crawler.spider, "classify_response", None)
        if outcome == "ok" and classify is not None:
            outcome = classify(response) or outcome
        read_as_text = not (
            request.meta.get("cw_bytes") or request.meta.get("dont_obey_robotstxt")
        )  # attachments are read from their bytes; robots.txt is Scrapy's own to judge
        garbled = undecodable(response) if outcome == "ok" and read_as_text else None
        self.run.writer.add_fetch(
            url=request.url,
            outcome="malformed" if garbled else outcome,
            list_id=request.meta.get("cw_list"),
            status=response.status,
            detail=garbled,
            sha256=hashlib.sha256(response.body).hexdigest(),
        )
        if garbled:
            # Archived already; kept from the spider so no value is read from it.
            raise MalformedPage(garbled)
        return response

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
