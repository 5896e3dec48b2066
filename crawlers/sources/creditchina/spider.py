"""Credit China (信用中国): national lists (list mode) and watched subjects' records (watch mode).

One Chromium page carries the whole run. The portal page is opened through scrapy-playwright,
the site's own scripts set up the WAF session (cookies, the ``rcwCQitg`` token wrapper), and
every API call is then made from inside that page, one at a time, at least
``CW_API_MIN_INTERVAL`` seconds apart, the page routed to the run's cassette in replay and
record modes (all shared with the other in-page spiders: ``crawlers.spiders.inpage``).

In-page calls bypass Scrapy's downloader middlewares, so this spider archives each response
and gives it its outcome itself, through the run context. Session-level refusals (412
challenge, 40001, an unsolved captcha, 403/429) bear on the whole source and stop the run's
calls: the portal is refusing this session and asking again would only hammer it. Problems of
one page (empty, malformed, a failed fetch) bear on the list it served.

The portal page itself may meet the WAF's 412 before the site's scripts clear it, so its
Scrapy fetch is filed under the pseudo-list ``creditchina.session`` (bearing on no list); the
spider waits for the challenge to clear and files a ``waf_challenge`` for the whole source only
when it does not. robots.txt of both hosts is read the same way, by the spider (Scrapy's robots
middleware is off for this source): a WAF answer to it forbids nothing, a rule forbidding the
portal page or the API stops the run before any call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import scrapy
from scrapy.crawler import Crawler
from scrapy.http import Response
from scrapy.settings import BaseSettings
from twisted.python.failure import Failure

from core.items import ListPage, PageRef, RawEntry
from core.outcomes import outcome_for_status
from core.registry import ListDef
from crawlers.browser import PageFetch
from crawlers.captcha import CaptchaSolver, solver_from_settings
from crawlers.cassette import crawl_mode
from crawlers.creditchina_api import (
    CAPTCHA_CHECK,
    CAPTCHA_FIELD,
    CAPTCHA_IMAGE,
    DETAILS_PARAMS,
    RECORDS_PARAMS,
    RECORDS_SORT,
    SEARCH_PARAMS,
    SEARCH_SUBJECT,
    SESSION_OUTCOMES,
    SUBJECT_DETAILS,
    SUBJECT_RECORDS,
    ListData,
    Reply,
    api_url,
    captcha_passed,
    classify,
    head_entity,
    labelled_fields,
    list_data,
    pages_to_read,
    subject_hits,
)
from crawlers.responses import challenge_outcome, outcome_for_exception
from crawlers.spiders.inpage import InPageSpider
from crawlers.watchlist import WatchlistError, WatchSubject, load_watchlist

logger = logging.getLogger(__name__)

SESSION_LIST = "creditchina.session"  # bears on no list: see the module docstring
WATCH_LOOKUP_LIST = "creditchina.watch"  # subject look-ups that went fine
SEARCH_PAGE_SIZE = 10
REPLAY_CHALLENGE_WAIT = 2.0


@dataclass
class Resolved:
    """A watched subject as the portal knows it."""

    name: str
    code: str
    entity_type: str
    profile: dict[str, str]
    refs: list[PageRef]


@dataclass
class WatchPages:
    """Pages read for one watch list, over all subjects, and what their envelopes declared."""

    pages: list[tuple[str, str, int]] = field(default_factory=list)  # url, sha256, rows
    declared: int = 0


class CreditChinaSpider(InPageSpider):
    name = "creditchina"
    source_id: ClassVar[str] = "creditchina"

    solver: CaptchaSolver

    @classmethod
    def navigation_timeout(cls) -> float:
        return float(cls.source().raw.get("session", {}).get("navigation_timeout", 20.0))

    @classmethod
    def min_interval(cls) -> float:
        return float(cls.source().raw.get("session", {}).get("min_interval", 10.0))

    @classmethod
    def update_settings(cls, settings: BaseSettings) -> None:
        super().update_settings(settings)
        session = cls.source().raw.get("session", {})
        replaying = crawl_mode(settings) == "replay"
        wait = REPLAY_CHALLENGE_WAIT if replaying else float(session.get("challenge_wait", 15.0))
        settings.set("CW_CHALLENGE_WAIT", wait, priority="spider")

    def transient(self, got: PageFetch) -> bool:
        """Only a page-level failure is asked again: a refused session (40001 on HTTP 500,
        a challenge, 403/429) is the portal refusing this session, and asking again would
        only hammer it (``api`` stops the run's calls instead)."""
        if not super().transient(got):
            return False
        return got.status is None or classify(got.status, got.body).outcome == "http_error"

    def classify_response(self, response: Response) -> str | None:
        """None: this spider reads challenges and captchas in the page itself (it waits for a
        challenge to clear and solves captchas), so none is filed before it sees them."""
        return None

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> CreditChinaSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        spider.solver = solver_from_settings(crawler.settings)
        return spider

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        conf = self.source().raw
        self.session_conf: dict[str, Any] = conf.get("session", {})
        self.watch_conf: dict[str, Any] = conf.get("watch", {})
        self.list_conf: dict[str, dict[str, Any]] = {
            f"{self.source_id}.{raw['id']}": raw for raw in conf.get("lists", [])
        }
        self.api_base: str = self.session_conf["api_base"]
        self.portal_url: str = self.session_conf["portal_url"]
        self.stopped = False
        self.nav_status: int | None = None

    # --- Session ------------------------------------------------------------------------------

    # robots.txt of both hosts first (see InPageSpider.start), then the portal page. Fetched by
    # the spider rather than Scrapy's robots middleware so a WAF answer to them bears on no list.
    robots_list = SESSION_LIST

    def targets(self) -> list[str]:
        return [self.portal_url, self.api_base]

    def connect_timeout(self) -> float:
        return float(self.session_conf.get("connect_timeout", 5.0))

    def portal_request(self) -> scrapy.Request:
        return scrapy.Request(
            self.portal_url,
            callback=self.parse_portal,
            errback=self.portal_failed,
            dont_filter=True,
            meta=self.page_meta(SESSION_LIST),
        )

    async def init_page(self, page: Any, request: scrapy.Request) -> None:
        """Route the page to the cassette and watch its main-frame navigations."""

        def on_response(response: Any) -> None:
            if response.request.is_navigation_request() and response.frame == page.main_frame:
                self.nav_status = response.status

        page.on("response", on_response)
        await super().init_page(page, request)

    async def parse_portal(self, response: Response) -> AsyncIterator[Any]:
        page = response.meta["playwright_page"]
        async for item in self.session(page, response.url, response.status):
            yield item

    async def portal_failed(self, failure: Failure) -> AsyncIterator[Any]:
        """The portal page failed to load. A challenge script reloading the page while it
        was being read lands here too: then the session goes on once the reload is done.
        Otherwise (no answer at all: DNS, timeout) the host is named and the run stops."""
        request = failure.request  # type: ignore[attr-defined]
        page = request.meta.get("playwright_page")
        answered = self.nav_status is not None
        if page is not None and not page.is_closed() and answered:
            async for item in self.session(page, request.url, None):
                yield item
            return
        if page is not None:
            await page.close()
        exc = failure.value
        host = urlsplit(request.url).hostname
        detail = f"portal page unreachable ({host}): {type(exc).__name__}: {exc}"
        logger.error("creditchina: %s", detail)
        self.file(request.url, outcome_for_exception(exc), None, None, detail)

    async def session(self, page: Any, url: str, status: int | None) -> AsyncIterator[Any]:
        """Every list, then watch mode, in one page; the page is closed at the end."""
        try:
            if await self.session_ready(page, url, status):
                for lst in self.source().lists:
                    if "api" in self.list_conf[lst.id] and self.reads(lst) and not self.stopped:
                        async for item in self.crawl_list(page, lst):
                            yield item
                async for item in self.crawl_watch(page):
                    yield item
        finally:
            await page.close()

    def reads(self, lst: ListDef) -> bool:
        """Whether this run reads ``lst``: every list, unless the run is one shard of a
        watchlist (``CW_LISTS``, set by the conductor: shard 1 reads the list-mode lists too,
        the others the watch lists only)."""
        wanted = self.settings.getlist("CW_LISTS")
        return not wanted or lst.id in wanted

    async def session_ready(self, page: Any, url: str, status: int | None) -> bool:
        """True once the portal page is up and no challenge stands in the way.

        A 412 is the WAF's challenge page; its script computes a cookie and reloads the page,
        so the challenge is cleared once a later main-frame navigation answers below 400.
        (The markers of a challenge page, ``$_ts`` and ``<meta r="m">``, also sit on the
        site's ordinary pages, so only the status tells them apart here.) ``status`` None:
        the page was still navigating when it was read.
        """
        if status is not None and status != 412:
            if status < 400:
                return True
            self.file(
                url,
                outcome_for_status(status),
                None,
                status,
                f"portal page answered HTTP {status}",
            )
            return False
        wait = self.settings.getfloat("CW_CHALLENGE_WAIT")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            if (self.nav_status or 412) < 400:
                try:
                    await page.wait_for_load_state("load", timeout=max(wait, 1.0) * 1000)
                except Exception:
                    continue
                logger.info("creditchina: the portal's challenge cleared")
                return True
        self.file(
            url,
            "waf_challenge",
            None,
            status or self.nav_status,
            f"the portal's challenge page did not clear within {wait:g} s",
        )
        return False

    # --- API calls ----------------------------------------------------------------------------

    async def list_page(self, page: Any, url: str, list_id: str) -> tuple[ListData, PageRef] | None:
        """One page of a paged API answer, or None (its outcome filed) when it cannot be
        trusted: an unreadable envelope, or one without the declared total that alone says
        whether the pages read were all of it."""
        got = await self.api(page, url, [list_id])
        if got is None:
            return None
        reply, ref = got
        try:
            data = list_data(reply.data)
        except ValueError as exc:
            self.file(ref.url, "layout_drift", list_id, 200, str(exc), ref.sha256)
            return None
        if data.total is None:
            self.file(ref.url, "layout_drift", list_id, 200, "envelope has no total", ref.sha256)
            return None
        return data, ref

    async def api(
        self, page: Any, url: str, lists: Sequence[str], *, solve: bool = True
    ) -> tuple[Reply, PageRef] | None:
        """An ok envelope and its page, or None once the failure is filed.

        Page-level failures are filed for each list in ``lists``; session-level ones for the
        whole source, and they stop the run's calls. A captcha is handed to the solver once;
        solved, the call is made again.
        """
        got, sha = await self.fetch(page, url)
        if got.status is None:
            outcome = "timeout" if "timeout" in (got.error or "").lower() else "http_error"
            for list_id in lists:
                self.file(got.url, outcome, list_id, None, got.error)
            return None
        # An answer with a good status but no data in it (no body, cut short, bytes invalid
        # in its charset) is named as Scrapy's own downloads name it, not as bad JSON.
        problem = self.page_problem(got) if got.status < 400 else None
        if problem is not None:
            reply = Reply(problem.outcome, detail=str(problem))
        else:
            reply = classify(got.status, got.body)
        if reply.outcome == "malformed" and (named := challenge_outcome(self.as_response(got))):
            # Not the portal's own captcha or challenge markup, but a page of that kind all
            # the same (a WAF's or a proxy's): named so, not as bad JSON.
            reply = Reply(named, detail=f"HTTP {got.status}: a {named} page, not the data")
        if reply.outcome == "captcha_required" and solve and await self.solve_captcha(page):
            self.file(got.url, "captcha_required", SESSION_LIST, got.status, "solved", sha)
            return await self.api(page, url, lists, solve=False)
        if reply.outcome in SESSION_OUTCOMES:
            self.stopped = True
            logger.error(
                "creditchina: %s at %s (%s); stopping", reply.outcome, got.url, reply.detail
            )
            self.file(got.url, reply.outcome, None, got.status, reply.detail, sha)
            return None
        if reply.outcome != "ok":
            for list_id in lists:
                self.file(got.url, reply.outcome, list_id, got.status, reply.detail, sha)
            return None
        self.file(
            got.url, "ok", lists[0] if len(lists) == 1 else WATCH_LOOKUP_LIST, got.status, None, sha
        )
        return reply, PageRef(got.url, sha or "", "list")

    async def solve_captcha(self, page: Any) -> bool:
        """Fetch the image in the page, ask the solver, submit its answer."""
        image, sha = await self.fetch(
            page, api_url(self.api_base, CAPTCHA_IMAGE, {"_v": time.time()})
        )
        if image.status != 200 or not image.body:
            self.file(image.url, "captcha_required", SESSION_LIST, image.status, image.error, sha)
            return False
        self.file(image.url, "ok", SESSION_LIST, image.status, None, sha)
        answer = await asyncio.to_thread(
            self.solver.solve, image.body, image.header("content-type")
        )
        if not answer:
            logger.warning("creditchina: captcha solver %s gave no answer", self.solver.name)
            return False
        check, sha = await self.fetch(
            page,
            api_url(self.api_base, CAPTCHA_CHECK, {"_v": time.time()}),
            method="POST",
            form={CAPTCHA_FIELD: answer},
        )
        passed = check.status == 200 and captcha_passed(check.body)
        self.file(
            check.url,
            "ok" if passed else "captcha_required",
            SESSION_LIST,
            check.status,
            None if passed else f"answer rejected: {check.error or check.body[:80]!r}",
            sha,
        )
        return passed

    # --- List mode ----------------------------------------------------------------------------

    async def crawl_list(self, page: Any, lst: ListDef) -> AsyncIterator[Any]:
        """A list's pages newest first, up to the portal's cap."""
        conf = self.list_conf[lst.id]["api"]
        size = int(conf.get("page_size", 10))
        cap = int(conf["cap"]) if conf.get("cap") else None
        if conf.get("max_pages"):  # read less than the portal serves: never complete then
            cap = min(cap or size * int(conf["max_pages"]), size * int(conf["max_pages"]))
        columns = conf.get("columns") or {}
        page_no, pages = 1, 1
        while page_no <= pages and not self.stopped:
            params = {**conf.get("params", {}), "page": page_no, "pageSize": size}
            got = await self.list_page(
                page, api_url(self.api_base, conf["endpoint"], params), lst.id
            )
            if got is None:
                return
            data, ref = got
            if page_no == 1:
                pages = pages_to_read(data.total, size, cap)
            yield ListPage(
                source=self.source_id,
                list=lst.id,
                url=ref.url,
                sha256=ref.sha256,
                page_no=page_no,
                rows=len(data.rows),
                declared_total=data.total,
            )
            for row in data.rows:
                yield RawEntry(
                    source=self.source_id,
                    list=lst.id,
                    source_url=ref.url,
                    raw_sha256=ref.sha256,
                    fields=labelled_fields(row, columns),
                    pages=[ref],
                )
            if not data.rows:
                self.file(ref.url, "empty", lst.id, 200, f"page {page_no} lists no entries")
                return
            page_no += 1

    # --- Watch mode ---------------------------------------------------------------------------

    async def crawl_watch(self, page: Any) -> AsyncIterator[Any]:
        """Every record of each watch list's type for every watched subject."""
        watch_lists = [
            lst
            for lst in self.source().lists
            if "watch" in self.list_conf[lst.id] and self.reads(lst)
        ]
        if not watch_lists or self.stopped:
            return
        ids = [lst.id for lst in watch_lists]
        spec = self.settings.get("CW_WATCHLIST")
        try:
            subjects = load_watchlist(spec, self.run.engine, self.source_id)
        except WatchlistError as exc:
            for list_id in ids:
                self.file(f"watchlist:{spec}", "malformed", list_id, None, str(exc))
            return
        if not subjects:
            why = f"watchlist {spec} names no subject" if spec else "no watchlist (--watchlist)"
            for list_id in ids:
                self.file(f"watchlist:{spec or ''}", "empty", list_id, None, why)
            return
        seen: dict[str, WatchPages] = defaultdict(WatchPages)
        crawled: set[tuple[str, str]] = set()
        for subject in subjects:
            if self.stopped:
                break
            resolved = await self.resolve(page, subject, ids)
            if resolved is None:
                continue
            if (resolved.code, resolved.name) in crawled:
                continue  # watched twice (by name and by code): its records are read already
            crawled.add((resolved.code, resolved.name))
            for lst in watch_lists:
                if self.stopped:
                    break
                async for item in self.subject_records(page, resolved, lst, seen[lst.id]):
                    yield item
        for lst in watch_lists:
            read = seen[lst.id]
            for number, (url, sha, rows) in enumerate(read.pages, start=1):
                yield ListPage(
                    source=self.source_id,
                    list=lst.id,
                    url=url,
                    sha256=sha,
                    page_no=number,
                    rows=rows,
                    declared_total=read.declared if number == 1 else None,
                )

    async def resolve(self, page: Any, subject: WatchSubject, ids: list[str]) -> Resolved | None:
        """catalogSearchHome → getTyshxydmDetailsContent for one watched subject."""
        params = {
            "keyword": subject.keyword,
            **SEARCH_PARAMS,
            "page": 1,
            "pageSize": SEARCH_PAGE_SIZE,
        }
        got = await self.api(page, api_url(self.api_base, SEARCH_SUBJECT, params), ids)
        if got is None:
            return None
        reply, search_ref = got
        try:
            hits = subject_hits(reply.data)
        except ValueError as exc:
            for list_id in ids:
                self.file(search_ref.url, "layout_drift", list_id, 200, str(exc), search_ref.sha256)
            return None
        hit = next((h for h in hits if subject.matches(h.name, h.code)), None)
        if hit is None:
            # Not found proves nothing about its records: those lists cannot be judged whole.
            for list_id in ids:
                self.file(
                    search_ref.url,
                    "empty",
                    list_id,
                    200,
                    f"watched subject {subject.label} not found",
                    search_ref.sha256,
                )
            return None
        details = {
            "keyword": hit.name,
            **DETAILS_PARAMS,
            "entityType": hit.entity_type,
            "uuid": hit.uuid,
            "tyshxydm": hit.code or "",
        }
        got = await self.api(page, api_url(self.api_base, SUBJECT_DETAILS, details), ids)
        if got is None:
            return None
        reply, details_ref = got
        try:
            profile = head_entity(reply.data)
        except ValueError as exc:
            for list_id in ids:
                self.file(
                    details_ref.url, "layout_drift", list_id, 200, str(exc), details_ref.sha256
                )
            return None
        return Resolved(
            name=hit.name,
            code=hit.code or profile.get("统一社会信用代码", ""),
            entity_type=hit.entity_type,
            profile=profile,
            refs=[
                PageRef(search_ref.url, search_ref.sha256, "search"),
                PageRef(details_ref.url, details_ref.sha256, "subject"),
            ],
        )

    async def subject_records(
        self, page: Any, subject: Resolved, lst: ListDef, read: WatchPages
    ) -> AsyncIterator[RawEntry]:
        """typeSourceSearch pages of one type for one subject."""
        record_type = self.list_conf[lst.id]["watch"]["type"]
        size = int(self.watch_conf.get("page_size", 10))
        cap = size * int(self.watch_conf.get("max_pages", 20))
        page_no, pages = 1, 1
        while page_no <= pages and not self.stopped:
            params = {
                **RECORDS_PARAMS,
                "type": record_type,
                "entityType": subject.entity_type,
                "keyword": subject.name,
                "tyshxydm": subject.code,
                "page": page_no,
                "pageSize": size,
                **RECORDS_SORT,
            }
            got = await self.list_page(
                page, api_url(self.api_base, SUBJECT_RECORDS, params), lst.id
            )
            if got is None:
                return
            data, ref = got
            if page_no == 1:
                pages = pages_to_read(data.total, size, cap)
                read.declared += data.total
            read.pages.append((ref.url, ref.sha256, len(data.rows)))
            for row in data.rows:
                yield RawEntry(
                    source=self.source_id,
                    list=lst.id,
                    source_url=ref.url,
                    raw_sha256=ref.sha256,
                    fields=labelled_fields(row),
                    subject=dict(subject.profile),
                    pages=[*subject.refs, ref],
                )
            if not data.rows:
                if page_no > 1:
                    self.file(ref.url, "empty", lst.id, 200, f"page {page_no} lists no records")
                return
            page_no += 1
