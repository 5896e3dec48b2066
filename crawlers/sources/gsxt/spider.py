"""国家企业信用信息公示系统 严重违法失信名单 (GSXT list of seriously illegal enterprises).

Pages: a paged JSON list (``start`` offsets of 5; ``totalPage``, ``recordsTotal``). Page 1
states the page count, so every other page is requested directly and one failed page cannot
hide the others. Listing and removal share a row: 移出原因/移出日期/移出机关 are null while the
company is listed, and passed on as published (dates in epoch milliseconds, which the
normaliser reads as Shanghai dates) once filled.

A row is one listing decision, but an entry is the company (record_key ``subject``): a company
removed and listed again has two rows, and staging keeps only one record per key. So rows are
held until every page has answered (or failed), then each company is emitted once, from its
latest row still in force (else its latest row), with the pages of its other rows in
``pages``. Which row wins therefore never depends on the order pages arrive in. While a page
is missing, a company is held back where that page could hold a row that would win (the
portal lists newest first): a newer row, on a missing page before its current one, or any
row in force if its current row is a removal. Otherwise a relisting or a newer decision on
the missing page would be read as a removal (a false delisting) or a change back to an older
decision. A held-back company stays as the last complete run left it.

A page can also vanish with neither answer nor failure (a redirect to itself, dropped by
Scrapy as a page already requested): once nothing is left to fetch (``spider_idle``), the
rows held are emitted as if that page had failed, so its outcome never costs the other
pages' entries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator, Set
from dataclasses import dataclass
from typing import Any, ClassVar

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response
from scrapy.utils.defer import deferred_from_coro
from twisted.python.failure import Failure

from core.items import ListPage, PageRef, RawEntry
from core.outcomes import EmptyPage, LayoutDrift, MalformedPage
from crawlers.pagekit import page_ref
from crawlers.spiders.base import PortalSpider

# --- Selectors and keys, one block per page type -------------------------------------------
LIST_PATH = "affiche-query-info-illInfo.html?start="
PAGE_SIZE = 5
ROWS_KEY = "data"
TOTAL_KEY = "recordsTotal"
PAGES_KEY = "totalPage"
ROW_REQUIRED = ("entName", "serILLRea_CN", "abntime")
SUBJECT_KEYS = ("uniscId", "entName")  # a company's rows are grouped by the first present
LISTED_ON_KEY = "abntime"
REMOVED_ON_KEY = "remDate"
# -------------------------------------------------------------------------------------------


@dataclass
class _Row:
    fields: dict[str, str]
    ref: PageRef
    order: tuple[int, int]  # (page, position): the portal's own order, newest first

    @property
    def removed(self) -> bool:
        return REMOVED_ON_KEY in self.fields

    @property
    def listed_on(self) -> int:
        text = self.fields.get(LISTED_ON_KEY, "")
        return int(text) if text.lstrip("-").isdigit() else 0


def row_fields(row: dict[str, Any]) -> dict[str, str]:
    """A JSON row as key → text, nulls left out (an unfilled removal is no removal)."""
    out: dict[str, str] = {}
    for key, value in row.items():
        if value is None or isinstance(value, dict | list):
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value)
    return out


def read_page(response: Response) -> tuple[list[dict[str, Any]], int, int]:
    """Rows, declared total and page count; problems raised, never an empty answer."""
    try:
        body = json.loads(response.text)
    except ValueError as exc:
        raise MalformedPage(f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise MalformedPage(f"expected an object, got {type(body).__name__}")
    missing = [key for key in (ROWS_KEY, TOTAL_KEY, PAGES_KEY) if key not in body]
    if missing:
        raise LayoutDrift(f"answer lacks {', '.join(missing)}")
    rows, total, pages = body[ROWS_KEY], body[TOTAL_KEY], body[PAGES_KEY]
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise MalformedPage(f"{ROWS_KEY!r} is not a list of rows")
    if not isinstance(total, int) or not isinstance(pages, int):
        raise MalformedPage(f"{TOTAL_KEY}/{PAGES_KEY} are not numbers: {total!r}, {pages!r}")
    for row in rows:
        lacking = [key for key in ROW_REQUIRED if row.get(key) in (None, "")]
        if lacking:
            raise LayoutDrift(f"row lacks {', '.join(lacking)}: {sorted(row)}")
    return rows, total, pages


class GsxtSpider(PortalSpider):
    name = "gsxt"
    source_id: ClassVar[str] = "gsxt"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows: list[_Row] = []
        self.expected_pages: set[int] | None = None  # known once page 1 has answered
        self.answered: set[int] = set()
        self.failed: set[int] = set()  # pages that answered nothing readable
        self.emitted = False
        self.list_id: str | None = None  # the list whose rows are held

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> GsxtSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.emit_held_rows, signal=signals.spider_idle)
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        (lst,) = self.source().lists
        yield self.list_request(lst.id, page_no=1)

    def list_request(self, list_id: str, page_no: int) -> scrapy.Request:
        start = (page_no - 1) * PAGE_SIZE
        return scrapy.Request(
            f"{self.source().base_url}{LIST_PATH}{start}",
            callback=self.parse_list,
            errback=self.list_failed,
            cb_kwargs={"list_id": list_id, "page_no": page_no},
            meta={"cw_list": list_id},
        )

    def parse_list(self, response: Response, list_id: str, page_no: int) -> Iterator[Any]:
        problem: Exception | None = None
        out: list[Any] = []
        try:
            for thing in self.read_list(response, list_id, page_no):
                out.append(thing)
        except Exception as exc:  # a page problem, or a bug: either way the page is answered
            problem = exc
        yield from out
        yield from self.page_answered(list_id, page_no, failed=problem is not None)
        if problem is not None:
            raise problem  # recorded as this page's outcome by the run extension

    def read_list(self, response: Response, list_id: str, page_no: int) -> Iterator[Any]:
        self.list_id = list_id
        rows, total, pages = read_page(response)
        ref = page_ref(response, "list")
        yield ListPage(
            source=self.source_id,
            list=list_id,
            url=response.url,
            sha256=ref.sha256,
            page_no=page_no,
            rows=len(rows),
            declared_total=total,
            declared_pages=pages,
        )
        if page_no == 1:
            self.expected_pages = set(range(1, pages + 1)) | {1}
            for number in range(2, pages + 1):
                yield self.list_request(list_id, number)
        if not rows:
            raise EmptyPage(f"{list_id} page {page_no} lists no entries")
        repeated = []
        for position, row in enumerate(rows):
            fields = row_fields(row)
            if not self.first_sight(list_id, json.dumps(fields, sort_keys=True)):
                repeated.append(fields.get("entName"))
                continue
            self.rows.append(_Row(fields, ref, (page_no, position)))
        if repeated:
            raise MalformedPage(f"rows repeat decisions this list already showed: {repeated}")

    def list_failed(self, failure: Failure) -> Iterator[Any]:
        """A page that never came: its outcome is logged already; the others still count."""
        request = failure.request  # type: ignore[attr-defined]
        kwargs = request.cb_kwargs
        yield from self.page_answered(kwargs["list_id"], kwargs["page_no"], failed=True)

    def page_answered(self, list_id: str, page_no: int, failed: bool) -> Iterator[RawEntry]:
        self.answered.add(page_no)
        if failed:
            self.failed.add(page_no)
        if page_no == 1 and self.expected_pages is None:
            self.expected_pages = {1}  # page 1 failed: no page count, nothing else to wait for
        if self.emitted or self.expected_pages is None or not self.expected_pages <= self.answered:
            return
        self.emitted = True
        yield from self.entries(list_id, self.rows, missing=self.failed)

    def emit_held_rows(self) -> None:
        """Nothing left to fetch and rows still held: a page vanished unanswered (its fetch
        log names it). Send the answered pages' entries to the pipelines now, as a failed
        page would have, rather than lose them with the spider's close."""
        if self.emitted or self.list_id is None or not self.rows:
            return
        self.emitted = True
        unanswered = (self.expected_pages or set()) - self.answered
        entries = list(self.entries(self.list_id, self.rows, missing=self.failed | unanswered))
        assert self.crawler.engine is not None  # typing: the spider is open
        scraper = self.crawler.engine.scraper

        async def process() -> None:
            for entry in entries:
                await scraper.start_itemproc_async(entry, response=None)

        deferred_from_coro(process())
        raise DontCloseSpider  # the engine looks again once the pipelines are done

    def entries(
        self, list_id: str, rows: Iterable[_Row], missing: Set[int] = frozenset()
    ) -> Iterator[RawEntry]:
        """One entry per company, from its current row, none for a company whose current
        row a ``missing`` page could supersede (see the module docstring)."""
        companies: dict[str, list[_Row]] = {}
        for row in sorted(rows, key=lambda r: r.order):
            key = next((row.fields[k] for k in SUBJECT_KEYS if row.fields.get(k)), "")
            companies.setdefault(key, []).append(row)
        for group in companies.values():
            in_force = [r for r in group if not r.removed] or group
            current = max(in_force, key=lambda r: (r.listed_on, -r.order[0], -r.order[1]))
            if missing and (current.removed or min(missing) < current.order[0]):
                continue  # held back: the missing page may hold the row that wins
            others = [r.ref for r in group if r is not current and r.ref != current.ref]
            yield RawEntry(
                source=self.source_id,
                list=list_id,
                source_url=current.ref.url,
                raw_sha256=current.ref.sha256,
                fields=current.fields,
                pages=[current.ref, *dict.fromkeys(others)],
            )
