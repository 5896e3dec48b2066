"""Answer a Playwright page's requests from the same vcrpy cassette Scrapy uses.

Playwright's own HAR replay would mean a second fixture format; a ``route("**/*")`` handler
driving :class:`~crawlers.cassette.CassetteBridge` keeps one. Register it on the **page**
(in scrapy-playwright: from ``playwright_page_init_callback``): scrapy-playwright installs its
own page-level ``route("**")`` that continues every request, and a page route registered
later wins over it, whereas a context-level route would never be reached.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from playwright.async_api import Error as PlaywrightError

from crawlers.cassette import CassetteBridge, CassetteMiss, PlayedResponse

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Request, Route

logger = logging.getLogger(__name__)

# Playwright derives these from the body it is given; recorded values could contradict it.
_DERIVED_HEADERS = frozenset({"content-length", "transfer-encoding"})


async def route_through_cassette(
    page_or_context: Page | BrowserContext, bridge: CassetteBridge
) -> None:
    """Route every request of ``page_or_context`` through ``bridge``.

    Replay: recorded interactions are fulfilled, a miss aborts the request (the miss is kept
    in ``bridge.misses`` for the caller to report) and nothing reaches the network. Record:
    unrecorded requests are fetched live with ``route.fetch()`` and appended to the cassette;
    the caller saves it with ``bridge.save()``.
    """

    async def handle(route: Route, request: Request) -> None:
        await _answer(route, request, bridge)

    await page_or_context.route("**/*", handle)


async def _answer(route: Route, request: Request, bridge: CassetteBridge) -> None:
    """Fulfil from the cassette, abort on a replay miss, or fetch live and record."""
    try:
        played = bridge.play(request.method, request.url, request.headers, request.post_data_buffer)
    except CassetteMiss as miss:
        logger.warning("cassette miss, aborted %s %s", miss.method, miss.url)
        await route.abort("blockedbyclient")
        return
    if played is not None:
        await route.fulfill(status=played.status, headers=_fulfil_headers(played), body=played.body)
        return
    await _record_live(route, request, bridge)


async def _record_live(route: Route, request: Request, bridge: CassetteBridge) -> None:
    """Fetch through the browser context's network stack, record, then hand the page the result."""
    try:
        response = await route.fetch()
        body = await response.body()
    except PlaywrightError as error:
        logger.warning("live fetch failed, aborted %s %s: %s", request.method, request.url, error)
        await route.abort("failed")
        return
    bridge.record(
        request.method,
        request.url,
        request.headers,
        request.post_data_buffer,
        response.status,
        response.status_text,
        [(header["name"], header["value"]) for header in response.headers_array],
        body,
    )
    await route.fulfill(response=response, body=body)


def _fulfil_headers(played: PlayedResponse) -> dict[str, str]:
    """Playwright takes one string per header: Set-Cookie values on lines, others comma-joined."""
    headers: dict[str, str] = {}
    for name, value in played.headers:
        key = name.lower()
        if key in _DERIVED_HEADERS:
            continue
        separator = "\n" if key == "set-cookie" else ", "
        headers[key] = f"{headers[key]}{separator}{value}" if key in headers else value
    return headers
