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
(JavaScript cannot see cross-origin headers such as ``Date``); the body the page's ``fetch``
read stands in where the inspector no longer holds it (bodies past about 10 MB).

Proxy: Chromium ignores the proxy environment that Scrapy's ``HttpProxyMiddleware`` reads, so
:func:`launch_options` hands it to Playwright (:func:`environment_proxy`): behind a corporate
proxy both fetch paths of a run go through the same one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import logging
import os
import shutil
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # no stub

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
    const bytes = new Uint8Array(await response.arrayBuffer());
    let binary = "";
    for (let i = 0; i < bytes.length; i += 0x8000) {
      binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    }
    return {ok: true, status: response.status, body: btoa(binary)};
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


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _env(environ: Mapping[str, str], name: str) -> str:
    """``name`` from the environment, the lower-case spelling first (as urllib reads it)."""
    return (environ.get(name.lower()) or environ.get(name.upper()) or "").strip()


@dataclass(frozen=True)
class BrowserProxy:
    """The proxy Chromium is launched with, from the same variables Scrapy reads.

    Playwright gives Chromium one proxy for every scheme: ``https_proxy``'s (the portals that
    need a browser are HTTPS), else ``http_proxy``'s. ``no_proxy`` keeps urllib's meaning (a
    name covers its subdomains), which Scrapy's ``proxy_bypass`` applies too."""

    server: str  # scheme://host:port, without credentials
    no_proxy: str = ""
    username: str | None = None
    password: str | None = None

    def bypass(self) -> list[str]:
        """``no_proxy`` as Chromium bypass rules: each name, and (``.name``) its subdomains;
        an address is itself only."""
        rules: list[str] = []
        for entry in self.no_proxy.split(","):
            name = entry.strip().lstrip(".")
            if name:
                host = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
                rules += [name] if _is_address(host.strip("[]")) else [name, f".{name}"]
        return list(dict.fromkeys(rules))

    def applies_to(self, url: str) -> bool:
        """Whether a request for ``url`` goes through the proxy (urllib's ``no_proxy`` test)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        return not proxy_bypass_environment(parts.netloc, {"no": self.no_proxy})

    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.server)
        default = {"https": 443, "socks5": 1080, "socks4": 1080}.get(parts.scheme, 80)
        return parts.hostname or "", parts.port or default

    def playwright(self) -> dict[str, str]:
        """Playwright's ``proxy`` launch option."""
        option = {"server": self.server}
        if self.bypass():
            option["bypass"] = ",".join(self.bypass())
        if self.username is not None:
            option["username"] = self.username
            option["password"] = self.password or ""
        return option


def environment_proxy(environ: Mapping[str, str] | None = None) -> BrowserProxy | None:
    """The browser's proxy from ``https_proxy``/``http_proxy`` and ``no_proxy`` (upper-case
    spellings too), or None: none set, or ``no_proxy=*``."""
    environ = os.environ if environ is None else environ
    no_proxy = _env(environ, "no_proxy")
    configured = _env(environ, "https_proxy") or _env(environ, "http_proxy")
    if not configured or no_proxy == "*":
        return None
    if "://" not in configured:
        configured = f"http://{configured}"  # how urllib and Scrapy read a bare host:port
    parts = urlsplit(configured)
    server = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"  # credentials apart
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return BrowserProxy(server, no_proxy, username, password)


def launch_options(
    extra_args: list[str] | None = None,
    timeout_ms: float = 20_000,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Chromium's launch options; the proxy environment (``environ``, else the process's)
    becomes Playwright's ``proxy``, the one Scrapy's own requests take."""
    options: dict[str, Any] = {
        "headless": True,
        "args": CHROMIUM_ARGS + list(extra_args or []),
        "timeout": timeout_ms,
    }
    executable = chromium_executable()
    if executable:
        options["executable_path"] = executable
    proxy = environment_proxy(environ)
    if proxy is not None:
        options["proxy"] = proxy.playwright()
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


# How long a failed call waits for Chromium's ``requestfailed`` event to name the reason.
FAILURE_GRACE_S = 0.1


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
    query parameters (a per-call token) are left out of the URL it is known by.

    A call that gets no answer is known by Chromium's own reason (``requestfailed``, e.g.
    ``net::ERR_TOO_MANY_REDIRECTS``) besides the page's bare ``TypeError: Failed to fetch``:
    whether to ask again depends on it (``InPageSpider.transient``)."""
    clean = without_params(url, volatile)

    def same_call(response: Response) -> bool:
        return response.request.method == method and without_params(response.url, volatile) == clean

    failures: list[str] = []

    def call_failed(request: Request) -> None:
        first = request  # a redirect chain is known by the request the page made
        while first.redirected_from is not None:
            first = first.redirected_from
        if first.method == method and without_params(first.url, volatile) == clean:
            failures.append(request.failure or "failed")

    waiter = asyncio.ensure_future(
        page.wait_for_event("response", predicate=same_call, timeout=timeout_s * 1000)
    )
    page.on("requestfailed", call_failed)
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
        if not failures:
            await asyncio.sleep(FAILURE_GRACE_S)  # the network event may trail the page's error
        page.remove_listener("requestfailed", call_failed)
        error = str(result.get("error") or "fetch failed")
        if failures:
            error = f"{failures[-1]} ({error})"
        return PageFetch(clean, method, error=error)
    page.remove_listener("requestfailed", call_failed)
    try:
        response = await waiter
        headers = tuple((h["name"], h["value"]) for h in await response.headers_array())
    except Exception as exc:
        return PageFetch(clean, method, error=f"{type(exc).__name__}: {exc}")
    try:
        body = await response.body()
    except PlaywrightError:
        # Chromium's inspector keeps about 10 MB of bodies: a bigger one is evicted before
        # it can be read there, though the page read all of it.
        body = base64.b64decode(result.get("body") or "")
    return PageFetch(clean, method, status=response.status, headers=headers, body=body)


def unreachable(urls: list[str], timeout_s: float, proxy: BrowserProxy | None = None) -> str | None:
    """Why one of the hosts cannot be reached (name lookup or TCP connect), or None.

    Run before the browser starts so a machine without network fails in seconds with the
    host named, instead of waiting out navigation timeouts. A URL the ``proxy`` applies to is
    reached through it, so what must answer is the proxy (behind one, the portal's name may
    not even resolve locally).
    """
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address, via = (host, port), ""
        if proxy is not None and proxy.applies_to(url):
            address = proxy.address()
            via = f" through the proxy {address[0]}:{address[1]}"
        try:
            with socket.create_connection(address, timeout=timeout_s):
                pass
        except OSError as exc:
            return f"cannot reach {host}:{port}{via} ({type(exc).__name__}: {exc})"
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
