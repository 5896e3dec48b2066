"""Xiamen tourism credit portal (厦门市旅游行业信用信息平台): warnings and good-conduct lists.

Pages: two paginated lists (``xygs-main.html`` warnings, ``lhxx-main.html`` honours), a
detail page per entry and a profile page per subject. Every list page is requested
directly (the pager states the page count), so one failed page cannot hide the others.
Profile pages also link to their subject's entries; those links are followed only once the
lists are exhausted (on ``spider_idle``), so an entry is always read through its list row
when it has one and the profile pages only add entries the lists do not show.

Each entry is emitted once its subject's profile has been read. An entry whose profile
page fails is held back rather than emitted half-empty (that would read as a correction);
the failed fetch already makes the run unable to prove anything by absence.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import DontCloseSpider
from scrapy.http import Response
from twisted.python.failure import Failure
from w3lib.url import canonicalize_url

from core.items import ListPage, PageRef, RawEntry
from core.outcomes import EmptyPage, MalformedPage, PageProblem
from crawlers.pagekit import one, page_ref, read_grid, read_label_table, read_pager
from crawlers.spiders.base import PortalSpider

# --- Selectors and labels, one block per page type -----------------------------------------
LIST_PATHS = {"warning": "publicity/xygs-main.html", "good": "publicity/lhxx-main.html"}
LIST_TABLE = "table.list_table"
LIST_REQUIRED_HEADERS = ("主体名称", "主体类型")
LIST_LINK_HEADER = "主体名称"
PAGER = "div.page"
PAGER_TOTAL = re.compile(r"共\s*(\d+)\s*条")
PAGER_PAGES = re.compile(r"第\s*\d+\s*/\s*(\d+)\s*页")
PAGE_PARAM = "pageNo"

DETAIL_TABLE = "table.info_table"
DETAIL_REQUIRED = ("主体名称", "主体类型")
DETAIL_SUBJECT_LABEL = "主体名称"

SUBJECT_TABLE = "table.info_table"
SUBJECT_REQUIRED = ("主体类型",)
SUBJECT_ENTRY_TABLES = {"warning": "table#jsxx", "good": "table#lhxx"}
NO_ROWS = re.compile(r"^\s*暂无")
# -------------------------------------------------------------------------------------------


class XmtravelSpider(PortalSpider):
    name = "xmtravel"
    source_id: ClassVar[str] = "xmtravel"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Profile values and page by URL; None where the profile page failed.
        self.subjects: dict[str, tuple[dict[str, str], PageRef] | None] = {}
        self.waiting: dict[str, list[RawEntry]] = {}
        self.listed_details: set[str] = set()  # canonical URLs requested from list rows
        self.profile_details: dict[str, tuple[str, str]] = {}  # canonical → (url, list id)

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> XmtravelSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider.follow_profile_entries, signal=signals.spider_idle)
        return spider

    async def start(self) -> AsyncIterator[scrapy.Request]:
        source = self.source()
        for lst in source.lists:
            url = source.base_url + LIST_PATHS[lst.short_id]
            yield self.list_request(url, lst.id, page_no=1)

    def list_request(self, url: str, list_id: str, page_no: int) -> scrapy.Request:
        return scrapy.Request(
            url,
            callback=self.parse_list,
            cb_kwargs={"list_id": list_id, "page_no": page_no},
            meta={"cw_list": list_id},
        )

    def parse_list(self, response: Response, list_id: str, page_no: int) -> Iterator[Any]:
        rows = read_grid(response, one(response, LIST_TABLE, "list table"), LIST_REQUIRED_HEADERS)
        pager = read_pager(response, PAGER, PAGER_TOTAL, PAGER_PAGES)
        ref = page_ref(response, "list")
        yield ListPage(
            source=self.source_id,
            list=list_id,
            url=response.url,
            sha256=ref.sha256,
            page_no=page_no,
            rows=len(rows),
            declared_total=pager.total,
            declared_pages=pager.pages,
        )
        if page_no == 1 and pager.pages:
            base = response.url.split("?", 1)[0]
            for number in range(2, pager.pages + 1):
                yield self.list_request(f"{base}?{PAGE_PARAM}={number}", list_id, number)
        repeated = []
        for row in rows:
            detail_url = row.links.get(LIST_LINK_HEADER)
            if not detail_url:
                raise PageProblem(f"row without a detail link: {row.cells}")
            canonical = canonicalize_url(detail_url)
            self.listed_details.add(canonical)
            if not self.first_sight(list_id, canonical):
                repeated.append(detail_url)
                continue
            yield scrapy.Request(
                detail_url,
                callback=self.parse_detail,
                cb_kwargs={"list_id": list_id, "row": row.cells, "list_ref": ref},
                meta={"cw_list": list_id},
            )
        if not rows:
            raise EmptyPage(f"{list_id} page {page_no} lists no entries")
        if repeated:
            raise MalformedPage(f"rows repeat entries this list already showed: {repeated}")

    def parse_detail(
        self,
        response: Response,
        list_id: str,
        row: dict[str, str] | None = None,
        list_ref: PageRef | None = None,
    ) -> Iterator[Any]:
        table = read_label_table(response, DETAIL_TABLE, DETAIL_REQUIRED)
        ref = page_ref(response, "detail")
        entry = RawEntry(
            source=self.source_id,
            list=list_id,
            source_url=response.url,
            raw_sha256=ref.sha256,
            fields=table.values,
            row=row or {},
            pages=[p for p in (list_ref, ref) if p is not None],
        )
        subject_url = table.links.get(DETAIL_SUBJECT_LABEL)
        if subject_url is None:
            yield entry
        elif subject_url in self.subjects:
            yield from self.with_subject([entry], subject_url)
        else:
            first = subject_url not in self.waiting
            self.waiting.setdefault(subject_url, []).append(entry)
            if first:
                yield scrapy.Request(
                    subject_url,
                    callback=self.parse_subject,
                    errback=self.subject_failed,
                    cb_kwargs={"subject_url": subject_url},
                    meta={"cw_list": None},
                )

    def parse_subject(self, response: Response, subject_url: str) -> Iterator[Any]:
        try:
            table = read_label_table(response, SUBJECT_TABLE, SUBJECT_REQUIRED)
        except PageProblem:
            self.subjects[subject_url] = None
            self.waiting.pop(subject_url, None)
            raise
        self.subjects[subject_url] = (table.values, page_ref(response, "subject"))
        yield from self.with_subject(self.waiting.pop(subject_url, []), subject_url)
        for short_id, css in SUBJECT_ENTRY_TABLES.items():
            list_id = f"{self.source_id}.{short_id}"
            for row in read_grid(response, one(response, css, "subject entries"), (), NO_ROWS):
                for url in row.links.values():
                    self.profile_details.setdefault(canonicalize_url(url), (url, list_id))

    def follow_profile_entries(self) -> None:
        """Once the lists are done, fetch entries that only the profile pages link to."""
        pending = [
            (url, list_id)
            for key, (url, list_id) in self.profile_details.items()
            if key not in self.listed_details
        ]
        self.profile_details.clear()
        for url, list_id in pending:
            self.listed_details.add(canonicalize_url(url))
            self.crawler.engine.crawl(
                scrapy.Request(
                    url,
                    callback=self.parse_detail,
                    cb_kwargs={"list_id": list_id},
                    meta={"cw_list": list_id},
                )
            )
        if pending:
            raise DontCloseSpider

    def subject_failed(self, failure: Failure) -> None:
        """Hold back the subject's entries; the fetch log already marks the run unhealthy."""
        subject_url = failure.request.cb_kwargs["subject_url"]  # type: ignore[attr-defined]
        self.subjects[subject_url] = None
        self.waiting.pop(subject_url, None)

    def with_subject(self, entries: list[RawEntry], subject_url: str) -> Iterator[RawEntry]:
        profile = self.subjects[subject_url]
        if profile is None:
            return
        values, ref = profile
        for entry in entries:
            entry.subject = dict(values)
            entry.pages.append(ref)
            yield entry
