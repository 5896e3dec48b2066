"""Playwright pages for the spiders that need a browser: launching Chromium, answering a
page's requests from the run's vcrpy cassette, and calling a site's API from inside its page.

Cassettes: Playwright's own HAR replay would mean a second fixture format; a ``route("**/*")``
handler driving :class:`~crawlers.cassette.CassetteBridge` keeps one. Register it on the
**page** (in scrapy-playwright: from ``playwright_page_init_callback``): scrapy-playwright
installs its own page-level ``route("**")`` that continues every request, and a page route
registered later wins over it, whereas a context-level route would never be reached.

In-page calls: a portal's own scripts may wrap ``fetch``/``XMLHttpRequest`` (Credit China's WAF
token) or compute a request signature (信用山东's ``sd.js``), so its API is called with
``page.evaluate`` of a ``fetch``: the page's wrappers apply as they would for a visitor. The
response's status, headers and exact body bytes are read from Playwright's network event
(JavaScript cannot see cross-origin headers such as ``Date``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from playwright.async_api import Error as PlaywrightError

from crawlers.cassette import CassetteBridge, CassetteMiss, PlayedResponse, without_params

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Request, Response, Route

logger = logging.getLogger(__name__)

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

FETCH_JS = """async ({url, method, body}) => {
  try {
    const init = {method, credentials: "include",
                  headers: {"Accept": "application/json, text/plain, */*"}};
    if (body !== null) {
      init.body = body;
      init.headers["Content-Type"] = "application/x-www-form-urlencoded";
    }
    const response = await fetch(url, init);
    await response.arrayBuffer();
    return {ok: true, status: response.status};
  } catch (error) {
    return {ok: false, error: String(error)};
  }
}"""


def chromium_executable() -> str | None:
    """``CREDITWATCH_CHROMIUM``, else Debian's chromium; None lets Playwright use its own."""
    configured = os.environ.get("CREDITWATCH_CHROMIUM")
    if configured:
        return configured
    for candidate in (
        "/usr/bin/chromium",
        shutil.which("chromium"),
        shutil.which("chromium-browser"),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


def launch_options(
    extra_args: list[str] | None = None, timeout_ms: float = 20_000
) -> dict[str, Any]:
    options: dict[str, Any] = {
        "headless": True,
        "args": CHROMIUM_ARGS + list(extra_args or []),
        "timeout": timeout_ms,
    }
    executable = chromium_executable()
    if executable:
        options["executable_path"] = executable
    return options


@dataclass(frozen=True)
class PageFetch:
    """One in-page call: the response as received, or why there was none."""

    url: str  # without the volatile parameters: what is archived and cited
    method: str
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    error: str | None = None

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key.lower() == wanted), None)


async def fetch_in_page(
    page: Page,
    url: str,
    *,
    method: str = "GET",
    form: dict[str, str] | None = None,
    timeout_s: float = 30.0,
    volatile: Iterable[str] = (),
) -> PageFetch:
    """``fetch(url)`` run by the page; the response read from the network event. ``volatile``
    query parameters (a per-call token) are left out of the URL it is known by."""
    clean = without_params(url, volatile)

    def same_call(response: Response) -> bool:
        return response.request.method == method and without_params(response.url, volatile) == clean

    waiter = asyncio.ensure_future(
        page.wait_for_event("response", predicate=same_call, timeout=timeout_s * 1000)
    )
    await asyncio.sleep(0)  # the listener is registered before the page sends anything
    try:
        result = await asyncio.wait_for(
            page.evaluate(
                FETCH_JS, {"url": url, "method": method, "body": urlencode(form) if form else None}
            ),
            timeout_s,
        )
    except Exception as exc:  # a closed page, a navigation in between, a timeout
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    if not result.get("ok"):
        waiter.cancel()
        with contextlib.suppress(BaseException):
            await waiter
        return PageFetch(clean, method, error=str(result.get("error") or "fetch failed"))
    try:
        response = await waiter
        body = await response.body()
        headers = tuple((h["name"], h["value"]) for h in await response.headers_array())
    except Exception as exc:
        return PageFetch(clean, method, error=f"{type(exc).__name__}: {exc}")
    return PageFetch(clean, method, status=response.status, headers=headers, body=body)


def unreachable(urls: list[str], timeout_s: float) -> str | None:
    """Why one of the hosts cannot be reached (name lookup or TCP connect), or None.

    Run before the browser starts so a machine without network fails in seconds with the
    host named, instead of waiting out navigation timeouts.
    """
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                pass
        except OSError as exc:
            return f"cannot reach {host}:{port} ({type(exc).__name__}: {exc})"
    return None


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
