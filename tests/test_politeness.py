"""Politeness settings from the registry, and retries that back off."""

from __future__ import annotations

import pytest
from scrapy.http import Request, Response
from scrapy.settings import Settings
from scrapy.utils.test import get_crawler

from crawlers.runmiddlewares import BackoffRetryMiddleware
from crawlers.sources.xmtravel.spider import XmtravelSpider


def polite_settings(**cmdline: str) -> Settings:
    settings = Settings()
    settings.setmodule("crawlers.settings", priority="project")
    settings.setdict(cmdline, priority="cmdline")
    XmtravelSpider.update_settings(settings)
    return settings


def test_live_crawls_take_the_registry_politeness() -> None:
    settings = polite_settings()
    polite = XmtravelSpider.source().politeness
    assert settings.getfloat("DOWNLOAD_DELAY") == polite.download_delay
    assert settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN") == polite.concurrency
    assert settings.getbool("AUTOTHROTTLE_ENABLED") is True
    assert settings.getbool("ROBOTSTXT_OBEY") is True
    assert settings.get("USER_AGENT").startswith("creditwatch/")
    assert settings.getfloat("CW_RETRY_BACKOFF") == polite.retry_backoff


def test_replays_have_no_host_to_spare() -> None:
    settings = polite_settings(CW_CASSETTE="day1.yaml")
    assert settings.getfloat("DOWNLOAD_DELAY") == 0
    assert settings.getbool("AUTOTHROTTLE_ENABLED") is False
    assert settings.getfloat("CW_RETRY_BACKOFF") == 0
    recording = polite_settings(CW_CASSETTE="new.yaml", CW_CASSETTE_MODE="record")
    assert recording.getfloat("DOWNLOAD_DELAY") > 0  # recording is live: polite again


@pytest.mark.parametrize(("attempt", "delay"), [(1, 5.0), (2, 10.0), (3, 20.0)])
def test_each_retry_waits_twice_as_long(attempt: int, delay: float) -> None:
    crawler = get_crawler(XmtravelSpider, {"CW_RETRY_BACKOFF": 5.0, "RETRY_TIMES": 3})
    crawler.spider = XmtravelSpider.from_crawler(crawler)
    middleware = BackoffRetryMiddleware.from_crawler(crawler)
    request = Request("http://example.test/", meta={"retry_times": attempt - 1})
    retry = middleware.process_response(request, Response(request.url, status=503))
    assert isinstance(retry, Request)
    assert retry.meta["cw_retry_delay"] == delay


def test_retries_give_up_after_retry_times() -> None:
    crawler = get_crawler(XmtravelSpider, {"CW_RETRY_BACKOFF": 5.0, "RETRY_TIMES": 3})
    crawler.spider = XmtravelSpider.from_crawler(crawler)
    middleware = BackoffRetryMiddleware.from_crawler(crawler)
    request = Request("http://example.test/", meta={"retry_times": 3})
    response = Response(request.url, status=503)
    assert middleware.process_response(request, response) is response
