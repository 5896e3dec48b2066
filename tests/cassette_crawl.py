"""Run one Scrapy crawl through CassetteMiddleware, for tests (one crawl per process).

Usage: ``python -m tests.cassette_crawl SPEC.json``. The spec names the cassette, its mode and
the requests; every response or failure is written to ``spec["out"]`` as JSON, keyed by the
request's ``id``, together with the crawl's ``cassette/*`` stats and the bridge's counters.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import scrapy
from scrapy.crawler import CrawlerProcess
from scrapy.http import HtmlResponse, JsonResponse, TextResponse
from twisted.python.failure import Failure

from crawlers.cassette import CassetteBridge

RESULTS: dict[str, Any] = {}
BRIDGE: CassetteBridge | None = None


async def init_page(page: Any, request: scrapy.Request) -> None:
    """playwright_page_init_callback: route the page through the crawl's cassette."""
    from crawlers.browser import route_through_cassette

    assert BRIDGE is not None
    await route_through_cassette(page, BRIDGE)


class CassetteCheckSpider(scrapy.Spider):
    """Issues the spec's requests and reports what came back."""

    name = "cassette_check"

    def __init__(self, spec: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec

    async def start(self):  # Scrapy 2.19 no longer calls start_requests()
        for item in self.spec["requests"]:
            yield self._request(item)

    def _request(self, item: dict[str, Any]) -> scrapy.Request:
        meta = {"cw_id": item["id"]}
        if item.get("playwright"):
            from scrapy_playwright.page import PageMethod

            meta |= {
                "playwright": True,
                "playwright_page_init_callback": init_page,
                "playwright_page_methods": [PageMethod("wait_for_selector", item["wait_for"])],
            }
        common = {
            "callback": self.parse,
            "errback": self.failed,
            "meta": meta,
            "headers": item.get("headers"),
            "dont_filter": True,
        }
        if "formdata" in item:
            return scrapy.FormRequest(item["url"], formdata=item["formdata"], **common)
        return scrapy.Request(item["url"], method=item.get("method", "GET"), **common)

    def parse(self, response: scrapy.http.Response) -> None:
        text = response.text if isinstance(response, TextResponse) else None
        RESULTS[response.meta["cw_id"]] = {
            "url": response.url,
            "status": response.status,
            "flags": response.flags,
            "class": type(response).__name__,
            "encoding": getattr(response, "encoding", None),
            "text": text,
            "json": response.json() if isinstance(response, JsonResponse) else None,
            "headers": {
                key.decode("latin-1"): [v.decode("latin-1") for v in values]
                for key, values in response.headers.items()
            },
            "redirect_urls": response.meta.get("redirect_urls", []),
            "cells": (
                response.css("table#companies td::text").getall()
                if isinstance(response, HtmlResponse)
                else []
            ),
        }

    def failed(self, failure: Failure) -> None:
        RESULTS[failure.request.meta["cw_id"]] = {
            "error": type(failure.value).__name__,
            "message": str(failure.value),
        }


def settings_for(spec: dict[str, Any]) -> dict[str, Any]:
    """Quiet, offline-friendly settings with the cassette middleware (and maybe Playwright)."""
    settings: dict[str, Any] = {
        "DOWNLOADER_MIDDLEWARES": {"crawlers.middlewares.CassetteMiddleware": 950},
        "CW_CASSETTE_FILTER_QUERY": spec.get("filter_query", []),
        "TELNETCONSOLE_ENABLED": False,
        "REMOTE_CONTROL_ENABLED": False,
        "ROBOTSTXT_OBEY": False,
        "RETRY_ENABLED": False,
        "LOG_LEVEL": "WARNING",
        "DOWNLOAD_TIMEOUT": 15,
    }
    if not spec.get("attach"):
        settings |= {"CW_CASSETTE": spec["cassette"], "CW_CASSETTE_MODE": spec["mode"]}
    if spec.get("playwright"):
        launch = {"headless": True, "args": spec["playwright"]["args"], "timeout": 20_000}
        if spec["playwright"].get("executable_path"):
            launch["executable_path"] = spec["playwright"]["executable_path"]
        handler = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
        settings |= {
            "DOWNLOAD_HANDLERS": {"http": handler, "https": handler},
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            "PLAYWRIGHT_LAUNCH_OPTIONS": launch,
            "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": 15_000,
        }
    return settings


def main(spec_path: str) -> None:
    global BRIDGE
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    process = CrawlerProcess(settings_for(spec))
    crawler = process.create_crawler(CassetteCheckSpider)
    if spec.get("attach"):
        BRIDGE = CassetteBridge.open(
            spec["cassette"],
            mode=spec["mode"],
            filter_query_parameters=spec.get("filter_query", []),
        )
        crawler.cw_cassette = BRIDGE  # a live object: never through (deep-copied) settings
    process.crawl(crawler, spec=spec)
    process.start()
    all_stats = crawler.stats.get_stats()
    stats = {k: v for k, v in all_stats.items() if k.startswith(("cassette/", "log_count/ERROR"))}
    bridge = {}
    if BRIDGE is not None:
        misses = [{"url": miss.url, "explanation": miss.explanation} for miss in BRIDGE.misses]
        bridge = {"played": BRIDGE.played, "recorded": BRIDGE.recorded, "misses": misses}
    output = {"results": RESULTS, "stats": stats, "bridge": bridge}
    with open(spec["out"], "w", encoding="utf-8") as handle:
        json.dump(output, handle, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
