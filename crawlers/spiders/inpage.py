"""What the spiders that read a portal from inside its page share (Credit China, the
creditsearch platform): Chromium through scrapy-playwright, the page routed to the run's
cassette, and in-page API calls that are throttled, archived and given their outcome here.

One Chromium page carries the whole run: the portal page is opened through scrapy-playwright
(``playwright_include_page``), and every API call is then made from inside it
(``crawlers.browser.fetch_in_page``), one at a time, at least ``CW_API_MIN_INTERVAL`` seconds
apart. In replay and record modes the page is routed to the run's vcrpy cassette at page level
(``crawlers.browser.route_through_cassette``) from the page init callback, through the same
:class:`~crawlers.cassette.CassetteBridge` as Scrapy's own requests (robots.txt): nothing
outside the cassette is sent, and a record run appends to one file.

In-page calls bypass Scrapy's downloader middlewares, so the spider archives each response
and files each fetch's outcome itself, through the run context (``file``). robots.txt is read
the same way, by the spider (Scrapy's robots middleware is off): every URL the run will use
(``targets``: the portal page, the API) is checked against its host's robots.txt before the
portal page is opened; a rule forbidding one stops the run, an unreadable robots.txt forbids
nothing. A live or record run first checks that the hosts answer at all (through the
environment's proxy where one applies, as Chromium will), so a machine without network fails
in seconds with the host named.

An in-page call gets what a Scrapy download gets from the middlewares it bypasses: it is
asked again after a transient failure (``RETRY_TIMES``, ``CW_RETRY_BACKOFF``; ``transient``),
and an answer with a good status that holds no data (a WAF challenge or captcha in its place,
no body, a document cut short, invalid bytes) is named as such (``page_problem``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import scrapy
from protego import Protego
from scrapy.crawler import Crawler
from scrapy.http import Headers, Response
from scrapy.responsetypes import responsetypes
from scrapy.settings import BaseSettings
from twisted.python.failure import Failure

from crawlers.browser import (
    PageFetch,
    environment_proxy,
    fetch_in_page,
    launch_options,
    route_through_cassette,
    unreachable,
)
from crawlers.cassette import CassetteBridge, crawl_mode
from crawlers.responses import ChallengePage, incomplete, undecodable
from crawlers.runcontext import RunContext, run_context
from crawlers.spiders.base import PortalSpider

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 30.0  # an in-page call's time limit, unless CW_API_TIMEOUT says otherwise
REDIRECT_LOOP = "net::ERR_TOO_MANY_REDIRECTS"  # Chromium's reason for a call that never lands


class InPageSpider(PortalSpider):
    """A portal spider whose API calls are made by the portal's own page in Chromium."""

    bridge: CassetteBridge | None = None
    mode: str = "live"
    robots_list: str | None = None  # the list robots.txt fetches bear on (None: every list)

    @classmethod
    def navigation_timeout(cls) -> float:
        """Seconds the portal page gets to load."""
        return 20.0

    @classmethod
    def min_interval(cls) -> float:
        """Live seconds between two in-page calls: the source's download delay."""
        return cls.source().politeness.download_delay

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        replaying = crawl_mode(settings) == "replay"
        handler = "scrapy_playwright.handler.ScrapyPlaywrightDownloadHandler"
        navigation_s = cls.navigation_timeout()
        overrides: dict[str, Any] = {
            "DOWNLOAD_HANDLERS": {"http": handler, "https": handler},
            "PLAYWRIGHT_BROWSER_TYPE": "chromium",
            "PLAYWRIGHT_LAUNCH_OPTIONS": launch_options(settings.getlist("CW_BROWSER_ARGS")),
            "PLAYWRIGHT_DEFAULT_NAVIGATION_TIMEOUT": navigation_s * 1000,
            "PLAYWRIGHT_MAX_CONTEXTS": 1,
            "DOWNLOAD_TIMEOUT": max(navigation_s, 10.0),
            "CW_API_MIN_INTERVAL": 0.0 if replaying else cls.min_interval(),
            "ROBOTSTXT_OBEY": False,  # read by the spider itself, see start()
        }
        for name, value in overrides.items():
            settings.set(name, value, priority="spider")

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> Any:
        spider = super().from_crawler(crawler, *args, **kwargs)
        settings = crawler.settings
        spider.mode = crawl_mode(settings)
        if spider.mode != "live":
            # One bridge for the page's routes and Scrapy's own requests (robots.txt). No
            # playback repeats: a call answered once by a refusal and then by data is two
            # recorded interactions, played in order.
            spider.bridge = CassetteBridge.open(
                settings["CW_CASSETTE"],
                mode=spider.mode,
                match_on=settings.getlist("CW_CASSETTE_MATCH_ON") or None,
                filter_query_parameters=settings.getlist("CW_CASSETTE_FILTER_QUERY"),
                allow_playback_repeats=False,
            )
            crawler.cw_cassette = spider.bridge  # type: ignore[attr-defined]
        return spider

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_call: float | None = None

    @property
    def run(self) -> RunContext:
        return run_context(self.crawler)

    # --- Before the page: reachability and robots.txt -------------------------------------------

    def targets(self) -> list[str]:
        """The URLs the run will use (the portal page first): their hosts must answer, and
        their robots.txt must allow them."""
        raise NotImplementedError

    def connect_timeout(self) -> float:
        """Live preflight: seconds to reach the hosts before anything else."""
        return 5.0

    def portal_request(self) -> scrapy.Request:
        """The Scrapy request opening the portal page in Chromium (``page_meta``)."""
        raise NotImplementedError

    async def start(self) -> AsyncIterator[scrapy.Request]:
        targets = self.targets()
        if self.mode != "replay":
            problem = await asyncio.to_thread(
                unreachable, targets, self.connect_timeout(), environment_proxy()
            )
            if problem:
                logger.error("%s: %s; nothing fetched", self.source_id, problem)
                self.file(targets[0], "http_error", None, None, problem)
                return
        yield self.robots_request(targets)

    def robots_request(self, pending: list[str]) -> scrapy.Request:
        """robots.txt of the first pending URL's host."""
        parts = urlsplit(pending[0])
        return scrapy.Request(
            f"{parts.scheme}://{parts.netloc}/robots.txt",
            callback=self.parse_robots,
            errback=self.robots_failed,
            cb_kwargs={"pending": pending},
            dont_filter=True,
            meta={"cw_list": self.robots_list, "handle_httpstatus_all": True, "dont_retry": True},
        )

    def parse_robots(self, response: Response, pending: list[str]) -> Iterator[scrapy.Request]:
        """Stop when robots.txt forbids what we came for; an unreadable one forbids nothing."""
        host = urlsplit(response.url).netloc
        if response.status == 200:
            agent = str(self.settings.get("USER_AGENT") or "creditwatch")
            rules = Protego.parse(response.body.decode("utf-8", "replace"))
            for target in pending:
                if urlsplit(target).netloc == host and not rules.can_fetch(target, agent):
                    detail = f"forbidden by {response.url} for {agent.split()[0]}: {target}"
                    logger.error("%s: %s", self.source_id, detail)
                    self.file(target, "http_error", None, None, detail)
                    return
        yield self.after_robots([t for t in pending if urlsplit(t).netloc != host])

    def robots_failed(self, failure: Failure) -> Iterator[scrapy.Request]:
        pending = failure.request.cb_kwargs["pending"]  # type: ignore[attr-defined]
        host = urlsplit(pending[0]).netloc
        yield self.after_robots([t for t in pending if urlsplit(t).netloc != host])

    def after_robots(self, pending: list[str]) -> scrapy.Request:
        return self.robots_request(pending) if pending else self.portal_request()

    # --- The page and its calls -------------------------------------------------------------------

    def page_meta(self, list_id: str | None, **more: Any) -> dict[str, Any]:
        """The ``meta`` of the Scrapy request opening the portal page in Chromium."""
        return {
            "playwright": True,
            "playwright_include_page": True,
            "playwright_page_init_callback": self.init_page,
            "playwright_page_goto_kwargs": {"wait_until": "load"},
            "handle_httpstatus_all": True,
            "dont_retry": True,
            "cw_list": list_id,
            # Chromium goes through the environment's proxy itself (launch_options); Scrapy's
            # HttpProxyMiddleware must not add its Proxy-Authorization header, which the
            # browser would send on to the portal inside the tunnel.
            "proxy": None,
            **more,
        }

    async def init_page(self, page: Any, request: scrapy.Request) -> None:
        """Route the page to the cassette (replay and record)."""
        if self.bridge is not None:
            await route_through_cassette(page, self.bridge)

    def file(
        self,
        url: str,
        outcome: str,
        list_id: str | None,
        status: int | None = None,
        detail: str | None = None,
        sha256: str | None = None,
    ) -> None:
        """One fetch's outcome, for the list it bears on (None: the whole source)."""
        self.run.writer.add_fetch(
            url=url,
            outcome=outcome,
            list_id=list_id,
            status=status,
            detail=detail[:1000] if detail else None,
            sha256=sha256,
        )

    async def throttle(self) -> None:
        """At least CW_API_MIN_INTERVAL seconds from one call's start to the next."""
        interval = self.settings.getfloat("CW_API_MIN_INTERVAL")
        if interval > 0 and self.last_call is not None:
            wait = self.last_call + interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self.last_call = time.monotonic()

    def transient(self, got: PageFetch) -> bool:
        """Whether a failed in-page GET is asked again, as Scrapy's retries ask a plain
        download again: no answer at all (reset, hang-up, timeout) or a status in
        ``RETRY_HTTP_CODES``. A redirect loop is no transient failure: Chromium followed it
        20 times already, and Scrapy's plain path does not ask again either. Spiders whose
        portal means something else by such an answer (a refused session) narrow it."""
        if got.method != "GET" or REDIRECT_LOOP in (got.error or ""):
            return False
        codes = {int(code) for code in self.settings.getlist("RETRY_HTTP_CODES")}
        return got.status is None or got.status in codes

    @staticmethod
    def as_response(got: PageFetch) -> Response:
        """An in-page answer as the Scrapy response its checks read (type from its headers)."""
        headers = Headers()
        for name, value in got.headers:
            headers.appendlist(name, value)
        kind = responsetypes.from_args(headers=headers, url=got.url, body=got.body)
        return kind(url=got.url, status=got.status or 200, headers=headers, body=got.body)

    def page_problem(self, got: PageFetch) -> ChallengePage | None:
        """Why an in-page answer with a good status says nothing trustworthy, by the checks
        Scrapy's own downloads get (``crawlers.runmiddlewares``): a WAF challenge or captcha
        in its place (``classify_response``), no content, a document cut short, or bytes
        invalid in its own encoding. Such a page would otherwise read as malformed data."""
        response = self.as_response(got)
        if named := self.classify_response(response):
            return ChallengePage(named, f"HTTP {got.status}: a {named} page, not the data")
        if cut := incomplete(response):
            return ChallengePage(*cut)
        if garbled := undecodable(response):
            return ChallengePage("malformed", garbled)
        return None

    async def fetch(
        self, page: Any, url: str, method: str = "GET", form: dict[str, str] | None = None
    ) -> tuple[PageFetch, str | None]:
        """One throttled in-page call, archived, asked again up to ``RETRY_TIMES`` times
        (``CW_RETRY_BACKOFF`` s, doubling, between tries) while its failure is
        :meth:`transient`; returns the last try with its body's sha256.

        A replay asks again as the recorded run did, and the cassette holds each answer it
        got; where it holds no further one, the last recorded answer stands (the miss says
        nothing about the portal)."""
        retries = self.settings.getint("RETRY_TIMES")
        backoff = self.settings.getfloat("CW_RETRY_BACKOFF")
        tried = 0
        last: tuple[PageFetch, str | None] | None = None
        while True:
            got, sha, missed = await self.fetch_once(page, url, method, form)
            if missed and last is not None and self.bridge is not None:
                self.bridge.misses.pop()
                return last
            if missed or tried >= retries or not self.transient(got):
                return got, sha
            last = (got, sha)
            tried += 1
            reason = got.error or f"HTTP {got.status}"
            logger.info("%s: again (%d/%d) %s: %s", self.source_id, tried, retries, url, reason)
            if backoff > 0:
                await asyncio.sleep(backoff * 2 ** (tried - 1))

    async def fetch_once(
        self, page: Any, url: str, method: str, form: dict[str, str] | None
    ) -> tuple[PageFetch, str | None, bool]:
        """One try of :meth:`fetch`, and whether it missed the cassette. The source's volatile
        query parameters (its cassette filter) stay out of the URL it is archived and cited
        by."""
        await self.throttle()
        misses = len(self.bridge.misses) if self.bridge else 0
        got = await fetch_in_page(
            page,
            url,
            method=method,
            form=form,
            timeout_s=self.settings.getfloat("CW_API_TIMEOUT", CALL_TIMEOUT_S),
            volatile=self.source().filter_query_parameters,
        )
        if got.status is None:
            if self.bridge and len(self.bridge.misses) > misses:
                explained = f"{got.error}; {self.bridge.misses[-1].explanation}"
                return PageFetch(got.url, method, error=explained), None, True
            return got, None, False
        ctx = self.run
        sha = hashlib.sha256(got.body).hexdigest()
        fetched_at = ctx.observe_response(got.header("date"), from_cassette=self.mode == "replay")
        ctx.writer.add_response(
            url=got.url,
            method=method,
            status=got.status,
            headers=[[name, value] for name, value in got.headers],
            body=got.body,
            sha256=sha,
            fetched_at=fetched_at,
            from_cassette=self.mode == "replay",
        )
        return got, sha, False
