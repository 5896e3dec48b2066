"""Lists published as announcements (公告): one spider pattern, declared per source.

A source's registry entry (``announcements:``) names its index page, the selectors of index
items and article pages, the title keywords that make an article a listing or a removal, and
the header labels of its list table. This spider then

* reads the index page by page, newest first, and stops at the first page that holds an
  announcement an earlier run already read (or at ``max_index_pages``, or the last page);
* reads each new listing or removal announcement: its rows from an inline table or from
  attachments (.xls, .xlsx, .docx, .pdf; tables found by header label, see ``tables.py``);
  an announcement whose list is only an image is archived and flagged
  ``needs_transcription``, never turned into invented rows;
* tries again the announcements earlier runs failed to read.

An announcement is all or nothing: if one of its attachments cannot be read, it emits no row,
is stored as ``failed`` with the reason (the run summary shows it) and is retried next run.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlparse

import scrapy
from parsel import Selector
from scrapy.http import Response
from twisted.python.failure import Failure

from core.items import Announcement, AttachmentRead, ListPage, PageRef, RawEntry
from core.outcomes import EmptyPage, LayoutDrift
from core.registry import AnnouncementDef
from crawlers.pagekit import label_of, page_ref
from crawlers.runcontext import run_context
from crawlers.spiders.base import PortalSpider
from crawlers.tables import Table, TableError, read_tables, sniff_kind
from storage.announcements import announcement_state

ATTACHMENT_EXTENSIONS = (".xls", ".xlsx", ".docx", ".doc", ".pdf", ".et", ".wps")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".gif", ".bmp")
DATE = re.compile(r"(\d{4})\s*[-年/.]\s*(\d{1,2})\s*[-月/.]\s*(\d{1,2})")
ORIGIN = re.compile(r"(?:来源|发布机构|发布单位|发文机关)\s*[：:]\s*(\S+)")


def _iso_date(text: str | None) -> str | None:
    match = DATE.search(text or "")
    if not match:
        return None
    year, month, day = (int(part) for part in match.groups())
    return f"{year:04d}-{month:02d}-{day:02d}"


def _extension(url: str) -> str:
    path = urlparse(url).path.lower()
    return path[path.rfind(".") :] if "." in path.rsplit("/", 1)[-1] else ""


@dataclass
class Reading:
    """One announcement being read: its page, and its attachments as they arrive."""

    url: str
    ref: PageRef
    title: str
    kind: str
    published_on: str | None
    origin: str | None
    tables: list[tuple[Table, PageRef]] = field(default_factory=list)
    attachments: list[AttachmentRead] = field(default_factory=list)
    waiting: int = 0
    images: int = 0

    @property
    def failed(self) -> list[AttachmentRead]:
        return [a for a in self.attachments if a.error]


class AnnouncementSpider(PortalSpider):
    """The family spider of announcement sources: ``crawlers.loader`` binds it to every
    source declaring ``spider: announcements`` (a subclass naming only its source)."""

    source_id: ClassVar[str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requested: set[str] = set()
        self.known: frozenset[str] = frozenset()

    @property
    def spec(self) -> AnnouncementDef:
        spec = self.source().announcements
        if spec is None:
            raise TypeError(f"source {self.source_id!r} declares no announcements")
        return spec

    async def start(self) -> AsyncIterator[scrapy.Request]:
        spec = self.spec
        state = announcement_state(run_context(self.crawler).engine, self.source_id)
        self.known = state.known
        yield self.index_request(self.source().base_url + spec.index, page_no=1)
        for url, title in state.retry:
            kind = spec.kind_of(title)
            if kind is not None and url not in self.requested:
                self.requested.add(url)
                yield self.article_request(url, title, kind, None)

    def index_request(self, url: str, page_no: int) -> scrapy.Request:
        return scrapy.Request(
            url,
            callback=self.parse_index,
            cb_kwargs={"page_no": page_no},
            meta={"cw_list": self.spec.list},
        )

    def article_request(
        self, url: str, title: str, kind: str, listed_on: str | None
    ) -> scrapy.Request:
        return scrapy.Request(
            url,
            callback=self.parse_article,
            cb_kwargs={"title": title, "kind": kind, "listed_on": listed_on},
            meta={"cw_list": self.spec.list},
        )

    # --- index ----------------------------------------------------------------------------
    def parse_index(self, response: Response, page_no: int) -> Iterator[Any]:
        spec, css = self.spec, self.spec.selectors
        items = response.css(css.item)
        ref = page_ref(response, "index")
        yield ListPage(
            source=self.source_id,
            list=spec.list,
            url=response.url,
            sha256=ref.sha256,
            page_no=page_no,
            rows=len(items),
        )
        if not items:
            raise EmptyPage(f"index page {page_no} lists no announcements ({css.item!r})")
        reached_known = False
        for item in items:
            link = item.css(css.link)
            href = link.attrib.get("href") if link else None
            if not href:
                raise LayoutDrift(f"index item without a link ({css.link!r}): {item.get()[:200]}")
            url = response.urljoin(href)
            title = label_of(link.attrib.get("title") or "".join(link.css("::text").getall()))
            if url in self.known:
                reached_known = True
                continue
            kind = spec.kind_of(title)
            if kind is None or url in self.requested:
                continue
            self.requested.add(url)
            listed_on = (
                _iso_date(" ".join(item.css(f"{css.date} ::text").getall())) if css.date else None
            )
            yield self.article_request(url, title, kind, listed_on)
        next_href = response.css(css.next).attrib.get("href") if css.next else None
        if next_href and not reached_known and page_no < spec.max_index_pages:
            yield self.index_request(response.urljoin(next_href), page_no + 1)

    # --- article --------------------------------------------------------------------------
    def parse_article(
        self, response: Response, title: str, kind: str, listed_on: str | None
    ) -> Iterator[Any]:
        css = self.spec.selectors
        body = response.css(css.body)
        if not body:
            raise LayoutDrift(f"announcement body {css.body!r} not found on {response.url}")
        page_title = label_of("".join(response.css(f"{css.title} ::text").getall()))
        meta_text = " ".join(response.css(f"{css.meta} ::text").getall()) if css.meta else ""
        origin = ORIGIN.search(meta_text)
        reading = Reading(
            url=response.url,
            ref=page_ref(response, "announcement"),
            title=page_title or title,
            kind=kind,
            published_on=_iso_date(meta_text) or listed_on,
            origin=origin.group(1) if origin else None,
        )
        try:
            tables = read_tables(
                body[0].get().encode("utf-8"),
                "html",
                self.spec.header_labels,
                self.source().label_overrides,
            )
        except TableError:
            tables = []
        reading.tables.extend((table, reading.ref) for table in tables)
        files = self.attachment_links(response, body[0])
        images = [] if tables or files else self.image_links(response, body[0])
        reading.waiting = len(files) + len(images)
        for url in files + images:
            yield scrapy.Request(
                url,
                callback=self.parse_attachment,
                errback=self.attachment_failed,
                cb_kwargs={"reading": reading},
                # A file read from its bytes: a text charset in its headers means nothing.
                meta={"cw_list": self.spec.list, "cw_bytes": True},
                dont_filter=True,
            )
        if not reading.waiting:
            yield from self.finish(reading)

    def attachment_links(self, response: Response, body: Selector) -> list[str]:
        links = []
        for link in body.css("a[href]"):
            url = response.urljoin(link.attrib["href"])
            text = "".join(link.css("::text").getall()).strip().lower()
            if _extension(url) in ATTACHMENT_EXTENSIONS or text.endswith(ATTACHMENT_EXTENSIONS):
                links.append(url)
        return list(dict.fromkeys(links))

    def image_links(self, response: Response, body: Selector) -> list[str]:
        images = [response.urljoin(src) for src in body.css("img::attr(src)").getall()]
        images += [
            response.urljoin(href)
            for href in body.css("a::attr(href)").getall()
            if _extension(href) in IMAGE_EXTENSIONS
        ]
        return list(dict.fromkeys(images))

    def parse_attachment(self, response: Response, reading: Reading) -> Iterator[Any]:
        ref = page_ref(response, "attachment")
        content_type = response.headers.get(b"Content-Type", b"").decode("latin-1")
        kind = sniff_kind(response.body, response.url, content_type)
        read = AttachmentRead(url=response.url, sha256=ref.sha256, kind=kind)
        if kind == "image":
            reading.images += 1
        elif kind is None or kind not in ("xls", "xlsx", "docx", "pdf", "html"):
            read.error = f"unsupported attachment format ({content_type or 'unknown type'})"
        else:
            try:
                tables = read_tables(
                    response.body, kind, self.spec.header_labels, self.source().label_overrides
                )
            except TableError as exc:
                read.error = str(exc)
            else:
                read.rows = sum(len(table.rows) for table in tables)
                reading.tables.extend((table, ref) for table in tables)
        reading.attachments.append(read)
        reading.waiting -= 1
        if not reading.waiting:
            yield from self.finish(reading)

    def attachment_failed(self, failure: Failure) -> Iterator[Any]:
        """The download failed (the fetch log has its outcome); the announcement fails."""
        request = failure.request  # type: ignore[attr-defined]
        reading: Reading = request.cb_kwargs["reading"]
        why = failure.getErrorMessage() or failure.type.__name__
        reading.attachments.append(AttachmentRead(request.url, None, None, error=why))
        reading.waiting -= 1
        if not reading.waiting:
            yield from self.finish(reading)

    # --- result ---------------------------------------------------------------------------
    def finish(self, reading: Reading) -> Iterator[Any]:
        """Emit the rows of a fully read announcement, or why it could not be read."""
        list_id = self.spec.list
        rows = [(row, ref) for table, ref in reading.tables for row in table.rows]
        error: str | None = None
        if reading.failed:
            error = "; ".join(f"attachment {a.url}: {a.error}" for a in reading.failed)
        elif not rows and reading.images:
            state = "needs_transcription"
        elif not rows:
            labels = ", ".join(self.spec.header_labels)
            error = f"no table with header labels {labels}, no attachment and no image found"
        if error is not None:
            state = "failed"
            run_context(self.crawler).writer.add_fetch(
                url=reading.url,
                outcome="layout_drift" if not reading.attachments else "malformed",
                list_id=list_id,
                detail=f"announcement {reading.title!r}: {error}"[:1000],
                sha256=reading.ref.sha256,
            )
            rows = []
        elif rows:
            state = "read"
        context = {
            "公告标题": reading.title,
            "发布日期": reading.published_on or "",
            "发布机关": reading.origin or "",
        }
        for row, ref in rows:
            yield RawEntry(
                source=self.source_id,
                list=list_id,
                source_url=ref.url,
                raw_sha256=ref.sha256,
                fields=dict(row),
                row=dict(context),
                pages=[reading.ref] if ref is reading.ref else [reading.ref, ref],
                removal=reading.kind == "removal",
            )
        yield Announcement(
            source=self.source_id,
            list=list_id,
            url=reading.url,
            sha256=reading.ref.sha256,
            title=reading.title,
            kind=reading.kind,
            state=state,
            published_on=reading.published_on,
            rows=len(rows),
            attachments=reading.attachments,
            error=error,
        )
