"""Calling Credit China's private API from inside the portal page, and launching Chromium.

The portal's own scripts wrap ``fetch``/``XMLHttpRequest`` to add the WAF token
(``rcwCQitg``) and carry its cookies, so the API is called with ``page.evaluate`` of a
``fetch``: the page's wrappers apply as they would for a visitor. The response's status,
headers and exact body bytes are read from Playwright's network event (JavaScript cannot see
cross-origin headers such as ``Date``). Shared by the spider and ``creditwatch probe``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from crawlers.creditchina_api import without_volatile

if TYPE_CHECKING:
    from playwright.async_api import Page, Response

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

    url: str  # without the volatile token: what is archived and cited
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
) -> PageFetch:
    """``fetch(url)`` run by the page; the response read from the network event."""
    clean = without_volatile(url)

    def same_call(response: Response) -> bool:
        return response.request.method == method and without_volatile(response.url) == clean

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
