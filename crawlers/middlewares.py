"""Scrapy downloader middlewares for creditwatch."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.exceptions import IgnoreRequest, NotConfigured
from scrapy.http import Headers
from scrapy.responsetypes import responsetypes

from crawlers.cassette import CassetteBridge, CassetteMiss, PlayedResponse

if TYPE_CHECKING:
    from scrapy import Request, Spider
    from scrapy.crawler import Crawler
    from scrapy.http import Response
    from scrapy.settings import BaseSettings


class CassetteMiddleware:
    """Answer Scrapy downloads from a vcrpy cassette, or record live ones into it.

    Enable with ``DOWNLOADER_MIDDLEWARES = {"crawlers.middlewares.CassetteMiddleware": 950}``.
    950 puts it after every request-shaping middleware (user agent, cookies, auth,
    HttpCompressionMiddleware's Accept-Encoding at 590), so matching and recording see the
    request as it would go out, and its ``process_response`` runs first, on the raw download
    (the bridge stores bodies decoded, so 590 never sees a stale ``Content-Encoding``).

    Settings: ``CW_CASSETTE`` (path; unset disables the middleware), ``CW_CASSETTE_MODE``
    (``replay``, the default, or ``record``), ``CW_CASSETTE_MATCH_ON`` (vcrpy matcher names),
    ``CW_CASSETTE_FILTER_QUERY`` (volatile query parameters). A live
    :class:`~crawlers.cassette.CassetteBridge` set as ``crawler.cw_cassette`` wins over the
    settings (settings are deep-copied, a loaded cassette cannot be).

    A replay miss raises ``IgnoreRequest`` (vcrpy's explanation plus the URL), never a live
    fetch. Requests with ``meta["playwright"]`` are left to the page's route handler
    (``crawlers.browser.route_through_cassette``). Replayed responses carry the flag
    ``"cassette"``; in record mode every other response is recorded and the cassette is
    saved when the spider closes.
    """

    FLAG = "cassette"

    def __init__(self, bridge: CassetteBridge, crawler: Crawler | None = None) -> None:
        self.bridge = bridge
        self.stats = crawler.stats if crawler is not None else None
        # Requests we let through to the network; a WeakSet because Request.replace() copies
        # meta, so a meta marker would also tag redirects answered by an earlier middleware.
        self._live: weakref.WeakSet[Request] = weakref.WeakSet()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> CassetteMiddleware:
        """Use the bridge attached to the crawler, else open the one the settings name."""
        bridge = getattr(crawler, "cw_cassette", None)
        if bridge is None:
            bridge = cls._open(crawler.settings)
        middleware = cls(bridge, crawler)
        crawler.signals.connect(middleware.spider_closed, signal=signals.spider_closed)
        return middleware

    @staticmethod
    def _open(settings: BaseSettings) -> CassetteBridge:
        """Open ``CW_CASSETTE`` as configured, or disable the middleware when it is unset."""
        path = settings.get("CW_CASSETTE")
        if not path:
            raise NotConfigured("CW_CASSETTE is not set")
        return CassetteBridge.open(
            path,
            mode=settings.get("CW_CASSETTE_MODE") or "replay",
            match_on=settings.getlist("CW_CASSETTE_MATCH_ON") or None,
            filter_query_parameters=settings.getlist("CW_CASSETTE_FILTER_QUERY"),
        )

    def process_request(self, request: Request, spider: Spider | None = None) -> Response | None:
        """Replay a recorded response; in record mode let an unrecorded request go live."""
        if request.meta.get("playwright"):
            return None
        try:
            played = self.bridge.play(
                request.method,
                request.url,
                self._str_headers(request.headers),
                request.body or None,
            )
        except CassetteMiss as miss:
            self._count("cassette/missed")
            raise IgnoreRequest(f"cassette miss for {miss.method} {miss.url}\n{miss}") from miss
        if played is None:
            self._live.add(request)
            return None
        self._count("cassette/played")
        return self._response(request, played)

    def process_response(
        self, request: Request, response: Response, spider: Spider | None = None
    ) -> Response:
        """Record what came from the network (never a replayed response)."""
        if self.FLAG in response.flags or request not in self._live:
            return response
        self._live.discard(request)
        self.bridge.record(
            request.method,
            request.url,
            self._str_headers(request.headers),
            request.body or None,
            response.status,
            "",
            self._str_headers(response.headers, joined=False),
            response.body,
        )
        self._count("cassette/recorded")
        return response

    def process_exception(
        self, request: Request, exception: BaseException, spider: Spider | None = None
    ) -> None:
        """A failed live fetch leaves nothing to record."""
        self._live.discard(request)

    def spider_closed(self, spider: Spider) -> None:
        """Persist what was recorded (a no-op in replay mode or when nothing is new)."""
        self.bridge.save()

    def _response(self, request: Request, played: PlayedResponse) -> Response:
        """Build the Scrapy response class the headers/body call for, with exact header bytes."""
        headers = Headers()
        for name, value in played.headers:
            headers.appendlist(name.encode("latin-1"), self._header_bytes(value))
        response_class = responsetypes.from_args(headers=headers, url=request.url, body=played.body)
        return response_class(
            url=request.url,
            status=played.status,
            headers=headers,
            body=played.body,
            request=request,
            flags=[self.FLAG],
            protocol="HTTP/1.1",
        )

    def _count(self, key: str) -> None:
        if self.stats is not None:
            self.stats.inc_value(key)

    @staticmethod
    def _str_headers(headers: Headers, *, joined: bool = True) -> list[tuple[str, str]]:
        """Scrapy header bytes as latin-1 text; values joined as http.client would send them."""
        pairs: list[tuple[str, str]] = []
        for name, values in headers.items():
            texts = [value.decode("latin-1") for value in values]
            key = name.decode("latin-1")
            pairs.extend([(key, ", ".join(texts))] if joined else [(key, text) for text in texts])
        return pairs

    @staticmethod
    def _header_bytes(value: str) -> bytes:
        """Back to the bytes that were on the wire; UTF-8 only for values latin-1 cannot hold."""
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            return value.encode("utf-8")
