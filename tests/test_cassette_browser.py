"""Playwright pages answered from the same vcrpy cassette (crawlers.browser).

A page whose JavaScript fetches JSON (GET with a volatile ``_t``, and a POST form) and builds
a table is recorded from the local fake portal, then replayed with the portal stopped. A
cassette missing the POST interaction must abort that fetch, never reach the portal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from crawlers.browser import CHROMIUM_ARGS, route_through_cassette
from crawlers.cassette import CassetteBridge
from tests.cassette_support import (
    APP_ROWS,
    NAME,
    chromium_executable,
    playwright_browser_available,
    portal,
    run_crawl,
)

VOLATILE = ["_t"]
_AVAILABLE, _WHY_NOT = playwright_browser_available()
if not _AVAILABLE:
    print(f"\nskipping Playwright cassette tests: {_WHY_NOT}")
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not _AVAILABLE, reason=_WHY_NOT)]


@dataclass(frozen=True)
class Rendered:
    """What the page showed, and the bridge that served it."""

    title: str
    status: str
    rows: list[list[str]]
    bridge: CassetteBridge


def launch_options() -> dict[str, Any]:
    options: dict[str, Any] = {"headless": True, "args": CHROMIUM_ARGS, "timeout": 20_000}
    if chromium_executable():
        options["executable_path"] = chromium_executable()
    return options


async def _render(url: str, cassette: Path, mode: str) -> Rendered:
    from playwright.async_api import async_playwright

    bridge = CassetteBridge.open(cassette, mode=mode, filter_query_parameters=VOLATILE)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(**launch_options())
        try:
            page = await browser.new_page()
            await route_through_cassette(page, bridge)
            await page.goto(url, timeout=15_000)
            done = "document.getElementById('status').textContent !== 'loading'"
            await page.wait_for_function(done, timeout=10_000)
            rows = await page.eval_on_selector_all(
                "table#companies tr",
                "trs => trs.map(tr => Array.from(tr.cells).map(c => c.textContent))",
            )
            title = await page.text_content("#title") or ""
            status = await page.text_content("#status") or ""
        finally:
            await browser.close()
    bridge.save()
    return Rendered(title, status, rows, bridge)


def render(url: str, cassette: Path, mode: str = "replay") -> Rendered:
    return asyncio.run(_render(url, cassette, mode))


def without(source: Path, target: Path, uri_part: str) -> Path:
    """A copy of a cassette lacking the interactions whose URI contains ``uri_part``."""
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["interactions"] = [i for i in data["interactions"] if uri_part not in i["request"]["uri"]]
    target.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return target


@dataclass(frozen=True)
class BrowserCassette:
    path: Path
    url: str
    truncated: Rendered
    hits_during_truncated_replay: list[tuple[str, str]]


@pytest.fixture(scope="module")
def browser_cassette(tmp_path_factory: pytest.TempPathFactory) -> BrowserCassette:
    """Record the JS page live; while the portal still runs, replay a cassette lacking the POST."""
    workdir = tmp_path_factory.mktemp("browser")
    path = workdir / "app.yaml"
    with portal() as server:
        url = server.url("/app.html")
        recorded = render(url, path, mode="record")
        assert recorded.rows == APP_ROWS and recorded.bridge.recorded == 3
        assert [method for method, _ in server.hits] == ["GET", "GET", "POST"]

        server.hits.clear()
        truncated = render(url, without(path, workdir / "no-post.yaml", "/api/search"))
        hits = list(server.hits)
    return BrowserCassette(path, url, truncated, hits)


def test_recorded_page_replays_offline(browser_cassette: BrowserCassette) -> None:
    replayed = render(browser_cassette.url, browser_cassette.path)  # portal is stopped
    assert replayed.status == "ok" and replayed.title == "企业列表"
    assert replayed.rows == APP_ROWS
    assert replayed.bridge.played == 3 and replayed.bridge.misses == []


def test_browser_cassette_is_scrubbed_vcrpy_yaml(browser_cassette: BrowserCassette) -> None:
    data = yaml.safe_load(browser_cassette.path.read_text(encoding="utf-8"))
    assert data["version"] == 1
    uris = [i["request"]["uri"] for i in data["interactions"]]
    assert not any("_t=" in uri for uri in uris) and any("/api/meta.json" in u for u in uris)
    post = next(i for i in data["interactions"] if i["request"]["method"] == "POST")
    assert post["request"]["body"] == "name=%E5%8E%A6%E9%97%A8"


def test_missing_interaction_aborts_without_network(browser_cassette: BrowserCassette) -> None:
    truncated = browser_cassette.truncated
    assert browser_cassette.hits_during_truncated_replay == []  # the portal was up, unused
    assert truncated.status.startswith("error:") and truncated.rows == []
    assert [miss.url for miss in truncated.bridge.misses] == [
        browser_cassette.url.replace("/app.html", "/api/search")
    ]
    explanation = truncated.bridge.misses[0].explanation
    assert explanation.startswith("Can't play back this request: no recorded interaction")
    assert "POST" in explanation and "name=%E5%8E%A6%E9%97%A8" in explanation


def test_scrapy_playwright_page_routed_through_cassette(
    browser_cassette: BrowserCassette, tmp_path: Path, netguard: Path
) -> None:
    """The future Credit China path: page-level routing from playwright_page_init_callback."""
    table = "table#companies td"
    spec = {
        "cassette": str(browser_cassette.path),
        "mode": "replay",
        "attach": True,
        "filter_query": VOLATILE,
        "playwright": {"executable_path": chromium_executable(), "args": CHROMIUM_ARGS},
        "requests": [
            {"id": "page", "url": browser_cassette.url, "playwright": True, "wait_for": table},
            {"id": "plain", "url": browser_cassette.url},  # same cassette via the middleware
        ],
    }
    result = run_crawl(spec, tmp_path)  # portal stopped
    page, plain = result["results"]["page"], result["results"]["plain"]
    assert "error" not in page, page
    assert page["cells"][:3] == APP_ROWS[0] and NAME in page["text"]
    assert plain["flags"] == ["cassette"] and plain["cells"] == []  # no JS ran there
    assert result["bridge"]["misses"] == []
    assert result["bridge"]["played"] == 4  # 3 by the page's route, 1 by the middleware
    assert result["stats"]["cassette/played"] == 1
    assert netguard.read_text() == ""  # the crawl process reached for no other host
