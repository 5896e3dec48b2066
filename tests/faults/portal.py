"""A fake portal on 127.0.0.1 for live-mode crawls: an HTTP proxy that answers every request
from cassettes, and breaks the answers it is told to.

Crawls reach it as ``http_proxy``/``https_proxy``: plain-HTTP portals arrive as absolute-URI
requests; HTTPS portals arrive as ``CONNECT host:443``, after which the proxy terminates TLS
itself with a certificate for that host from a throwaway ``trustme`` CA (Scrapy does not verify
certificates) and reads the requests inside the tunnel. Nothing leaves the machine: a request
no cassette holds is answered 404.

Faults (:class:`Fault`) name the pages they hit by a fragment of the URL (or of a posted
form) and how many times they fire
(``times=None``: every time). Each fault is a function of the handler and the page it would
have served: a status, a stall, a slow or cut body, a re-encoded body, a redirect loop, a WAF
or captcha page, an empty body, a 10 MB body.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trustme
import yaml

# Headers the proxy sets itself: the body it sends is the cassette's decoded body, whole or cut.
HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "content-encoding", "keep-alive"}
DEFAULT_PORTS = {"http": 80, "https": 443}
META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w-]+)""", re.I)


@dataclass
class Page:
    """One recorded answer, as the proxy serves it."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def with_header(self, name: str, value: str) -> Page:
        kept = [(k, v) for k, v in self.headers if k.lower() != name.lower()]
        return replace(self, headers=[*kept, (name, value)])

    def charset(self) -> str:
        """The encoding the page declares (header, else ``<meta>``), utf-8 when it declares none."""
        content_type = self.header("Content-Type") or ""
        if match := re.search(r"charset=([\w-]+)", content_type, re.I):
            return match[1].lower()
        if match := META_CHARSET.search(self.body[:4096]):
            return match[1].decode("ascii").lower()
        return "utf-8"

    def text(self) -> str:
        return self.body.decode(self.charset())


def request_key(method: str, url: str, body: bytes | None, volatile: Iterable[str] = ()) -> tuple:
    """What makes two requests the same page: method, origin, path, the query as a sorted set
    of pairs without the volatile parameters, and the body (JSON compared as data)."""
    parts = urlsplit(url)
    port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    drop = set(volatile)
    query = tuple(sorted((k, v) for k, v in parse_qsl(parts.query, True) if k not in drop))
    content: Any = None
    if body:
        try:
            content = json.dumps(json.loads(body), sort_keys=True)
        except ValueError:
            content = tuple(sorted(parse_qsl(body.decode("latin-1"), True)))
    host = (parts.hostname or "").lower()
    return (method.upper(), parts.scheme, host, port, parts.path, query, content)


def load_pages(cassette: Path, volatile: Iterable[str] = ()) -> dict[tuple, Page]:
    """Every interaction of a vcrpy cassette, by :func:`request_key` (the first one wins)."""
    data = yaml.safe_load(cassette.read_text(encoding="utf-8"))
    pages: dict[tuple, Page] = {}
    for item in data["interactions"]:
        request, response = item["request"], item["response"]
        body = request.get("body")
        raw = body.encode("utf-8") if isinstance(body, str) else body
        key = request_key(request["method"], request["uri"], raw, volatile)
        content = response["body"]["string"]
        pages.setdefault(
            key,
            Page(
                status=response["status"]["code"],
                reason=response["status"].get("message") or "",
                headers=[
                    (name, value)
                    for name, values in response["headers"].items()
                    if name.lower() not in HOP_BY_HOP
                    for value in values
                ],
                body=content if isinstance(content, bytes) else content.encode("utf-8"),
            ),
        )
    return pages


Action = Callable[["PortalHandler", Page], None]


@dataclass
class Fault:
    """``action`` replaces the answer to requests whose URL or body contains ``where``, the
    first ``times`` of them (None: all). The body counts because a search form's pages
    (CCGP's ``gp=2``) are posts to one URL."""

    where: str
    action: Action
    times: int | None = None
    fired: int = 0

    def takes(self, url: str, body: bytes | None = None) -> bool:
        named = self.where in url or (body is not None and self.where in body.decode("latin-1"))
        return named and (self.times is None or self.fired < self.times)


@dataclass
class Hit:
    url: str
    method: str
    user_agent: str
    fault: bool


class FakePortal(ThreadingHTTPServer):
    """The proxy. ``serve(cassette)`` chooses what it answers, ``inject(fault)`` what breaks."""

    daemon_threads = True

    def __init__(self, volatile: Iterable[str] = ()) -> None:
        self.volatile = tuple(volatile)
        self.pages: dict[tuple, Page] = {}
        self.faults: list[Fault] = []
        self.hits: list[Hit] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.ca = trustme.CA()
        self._contexts: dict[str, ssl.SSLContext] = {}
        super().__init__(("127.0.0.1", 0), PortalHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def serve(self, *cassettes: Path) -> None:
        """Answer from these cassettes from now on; faults and hits are cleared."""
        pages: dict[tuple, Page] = {}
        for cassette in cassettes:
            pages.update(load_pages(cassette, self.volatile))
        with self.lock:
            self.pages = pages
            self.faults = []
            self.hits = []

    def inject(self, *faults: Fault) -> None:
        with self.lock:
            self.faults.extend(faults)

    def fired(self) -> int:
        with self.lock:
            return sum(f.fired for f in self.faults)

    def answer_for(self, method: str, url: str, body: bytes | None, agent: str) -> tuple:
        key = request_key(method, url, body, self.volatile)
        with self.lock:
            page = self.pages.get(key)
            fault = next((f for f in self.faults if f.takes(url, body)), None)
            if fault is not None:
                fault.fired += 1
            self.hits.append(Hit(url, method, agent, fault is not None))
        return page, fault

    def tls_context(self, host: str) -> ssl.SSLContext:
        """A server context whose certificate names ``host``, issued by the test CA."""
        with self.lock:
            if host not in self._contexts:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                self.ca.issue_cert(host).configure_cert(context)
                self._contexts[host] = context
            return self._contexts[host]

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()
        self.server_close()


class PortalHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakePortal
    origin = ""  # "https://host[:port]" inside a CONNECT tunnel

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        self.send_response(200, "Connection established")
        self.end_headers()
        try:
            tunnel = self.server.tls_context(host).wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            self.close_connection = True
            return
        self.connection = tunnel
        self.rfile = tunnel.makefile("rb", self.rbufsize)
        self.wfile = socketserver._SocketWriter(tunnel)  # type: ignore[attr-defined]
        self.origin = f"https://{host}" + ("" if port == "443" else f":{port}")

    def do_GET(self) -> None:
        self.answer()

    def do_POST(self) -> None:
        self.answer()

    def do_HEAD(self) -> None:
        self.answer()

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        url = self.path if self.path.startswith("http") else self.origin + self.path
        agent = self.headers.get("User-Agent", "")
        page, fault = self.server.answer_for(self.command, url, body, agent)
        if page is None:
            page = Page(404, "Not Found", [("Content-Type", "text/plain")], b"not recorded\n")
        if fault is not None:
            fault.action(self, page)
        else:
            self.send_page(page)

    # -- the pieces faults are made of ------------------------------------------------------

    def send_head(self, page: Page, length: int | None = None) -> None:
        self.send_response(page.status, page.reason or None)
        for name, value in page.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(page.body) if length is None else length))
        self.end_headers()

    def send_page(self, page: Page) -> None:
        self.send_head(page)
        if self.command != "HEAD":
            self.wfile.write(page.body)

    def reset(self) -> None:
        """Close the connection with a TCP reset (SO_LINGER 0), not an orderly FIN."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()
        if self.origin:  # the TLS socket of a tunnel: the server closes only the raw one
            with contextlib.suppress(OSError):
                self.connection.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# -- faults ---------------------------------------------------------------------------------


def status(code: int, body: bytes = b"", content_type: str = "text/html; charset=utf-8") -> Action:
    """Answer ``code`` with ``body`` instead of the page, with the page's CORS headers (a
    server or WAF in front of an API answers with the host's CORS policy; without it a
    browser's script could not read the answer at all, only that its fetch failed)."""

    def act(handler: PortalHandler, page: Page) -> None:
        cors = [(k, v) for k, v in page.headers if k.lower().startswith("access-control-")]
        handler.send_page(Page(code, "", [("Content-Type", content_type), *cors], body))

    return act


def stall(seconds: float) -> Action:
    """Say nothing for ``seconds`` (past the crawl's download timeout), then hang up."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.server.stopping.wait(seconds)
        handler.reset()

    return act


def slow_body(seconds: float, chunks: int = 5) -> Action:
    """The page in ``chunks`` pieces spread over ``seconds``: slow, but whole."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.send_head(page)
        size = -(-len(page.body) // chunks)
        for start in range(0, len(page.body), size):
            handler.wfile.write(page.body[start : start + size])
            time.sleep(seconds / chunks)

    return act


def reset_mid_body() -> Action:
    """Promise the whole page (its Content-Length), send half, then reset the connection."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.send_head(page)
        handler.wfile.write(page.body[: len(page.body) // 2])
        time.sleep(0.05)
        handler.reset()

    return act


def truncated() -> Action:
    """A well-formed answer holding the first half of the page's text (cut on a character)."""

    def act(handler: PortalHandler, page: Page) -> None:
        text = page.text()
        handler.send_page(replace(page, body=text[: len(text) // 2].encode(page.charset())))

    return act


def recoded(into: str) -> Action:
    """The page's text encoded as ``into`` while its headers and ``<meta>`` still declare
    its own charset: the wrong-charset page of a misconfigured server."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.send_page(replace(page, body=page.text().encode(into)))

    return act


def invalid_bytes(bad: bytes = b"\x81\x20\xff") -> Action:
    """Bytes that are no character of the page's declared charset, in the middle of a row."""

    def act(handler: PortalHandler, page: Page) -> None:
        body = page.body
        middle = len(body) // 2
        cut = next((i for i in range(middle, len(body)) if body[i] < 0x80), middle)
        handler.send_page(replace(page, body=body[:cut] + bad + body[cut:]))

    return act


def padded(size: int) -> Action:
    """The page padded with trailing whitespace to ``size`` bytes (valid HTML and JSON)."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.send_page(replace(page, body=page.body + b" " * max(0, size - len(page.body))))

    return act


def redirect_loop() -> Action:
    """302 to the same page, for ever."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.send_page(Page(302, "Found", [("Location", handler.path)], b""))

    return act


WAF_PAGE = (
    b'<html><head><meta charset="utf-8"><meta content="x9Qz" r=\'m\'></head><body>'
    b"<script>var $_ts=window['$_ts'];if(!$_ts)$_ts={};$_ts.nsd=8421;</script>"
    b'<script src="/4QbVtADbnLVIc/c.FxJzG50F.7b0c2f1.js"></script></body></html>'
)
CAPTCHA_PAGE = (
    '<html><head><meta charset="utf-8"><title>安全验证</title></head><body>'
    '<form action="/verify" method="post"><p>访问过于频繁，请输入验证码后继续访问</p>'
    '<img src="/captcha.jpg?t=1" alt="验证码"><input name="captcha" type="text">'
    '<button type="submit">提交</button></form></body></html>'
).encode()


def waf_challenge(code: int = 412) -> Action:
    """The WAF's JavaScript challenge page (瑞数-style ``$_ts`` seed)."""
    return status(code, WAF_PAGE)


def captcha_page() -> Action:
    """200 with a captcha form in place of the page."""
    return status(200, CAPTCHA_PAGE)


def empty_body() -> Action:
    """200 with the page's headers and no body at all."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.send_page(replace(page, body=b""))

    return act


def hang_up() -> Action:
    """Read the request, answer nothing, close the connection."""

    def act(handler: PortalHandler, page: Page) -> None:
        handler.reset()

    return act


def start(volatile: Iterable[str] = ()) -> FakePortal:
    portal = FakePortal(volatile)
    threading.Thread(target=portal.serve_forever, name="fake-portal", daemon=True).start()
    return portal
