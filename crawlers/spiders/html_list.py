"""The ``html_list`` family: lists published as paged HTML tables, read from the registry alone.

Each list of a source declared ``spider: html_list`` carries an ``html_list:`` block
(``core.registry.HtmlListDef``): the page address (a GET query or a POST form, with
``{page}``, ``{size}`` and ``{offset}`` substituted, and page 1's own address where it
differs), required headers, the pages' encoding, the CSS of the list table and of its rows,
the header labels every page must show (``key_columns``), an optional detail page per row
(a label/value table), the pager stating the list's size, ``max_pages`` and what a refusal
looks like. Cells go on keyed by their column header, wherever the column stands
(``crawlers.pagekit.read_grid``); a detail page's label/value pairs go on as the entry's
fields, its row as ``row``. The source's ``labels:`` block maps labels only that portal uses.

Paging: when page 1's pager states a total (``共N条``) or a page count (``共N页``), every other
page up to ``max_pages`` is requested at once, and the run's pager check compares what came
with what was declared: a portal that stops serving after some pages (or a ``max_pages``
below the declared count) leaves the list ``degraded``. Without a pager, pages are read one
after another until a short or empty one; a full page at ``max_pages`` is ``malformed`` (the
list may go on unseen).

Nothing here trusts a page it cannot read: bytes that are not the declared encoding are
``malformed``; a page without the list table whose text matches a declared refusal gets that
refusal's outcome (``rate_limited`` unless declared otherwise); any other page without the
table, a header lacking a key column (a renamed column) or a row with an empty key cell is
``layout_drift``; an empty page where rows were declared is ``empty``; a row read twice is
``malformed``. The page's rows are then not read at all, and its list is not healthy, so
nothing is delisted.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlencode, urljoin

import scrapy
from parsel import Selector, SelectorList
from scrapy.http import HtmlResponse, Response, TextResponse

from core.items import ListPage, PageRef, RawEntry
from core.outcomes import EmptyPage, LayoutDrift, MalformedPage, PageProblem
from core.registry import HtmlListDef, ListDef
from crawlers.pagekit import (
    GridRow,
    more_pages,
    next_page,
    page_ref,
    read_grid,
    read_label_table,
)
from crawlers.spiders.base import PortalSpider

_SPACE = re.compile(r"[\s\u3000\xa0]+")


class RefusedPage(PageProblem):
    """A page matching one of the list's declared refusals: the portal said no."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def fill(template: str, values: dict[str, int]) -> str:
    """``template`` with ``{page}``/``{size}``/``{offset}`` replaced by their digits."""
    for name, number in values.items():
        template = template.replace(f"{{{name}}}", str(number))
    return template


def _query_text(value: Any, values: dict[str, int]) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return fill(value, values) if isinstance(value, str) else str(value)


def clean(text: str) -> str:
    """A cell's text as shown: blanks (newlines, ideographic spaces) collapsed, ends trimmed."""
    return _SPACE.sub(" ", text).strip()


def page_text(response: TextResponse) -> str:
    return clean(" ".join(response.xpath("//body//text()").getall() or [response.text]))


class HtmlListSpider(PortalSpider):
    """Reads every list of its source through the list's ``html_list:`` block."""

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for lst in self.source().lists:
            yield self.page_request(lst, self.spec(lst).first_page)

    def spec(self, lst: ListDef) -> HtmlListDef:
        if lst.html_list is None:  # the registry refuses such a declaration
            raise LookupError(f"{lst.id} has no html_list block")
        return lst.html_list

    def page_request(self, lst: ListDef, page: int) -> scrapy.Request:
        spec = self.spec(lst)
        number = page - spec.first_page + 1  # 1-based, as list pages are counted
        values = {"page": page, "size": spec.page_size, "offset": (number - 1) * spec.page_size}
        template = spec.first_url if number == 1 and spec.first_url else spec.url
        url = urljoin(self.source().base_url, fill(template, values))
        if spec.params:
            query = urlencode([(k, _query_text(v, values)) for k, v in spec.params.items()])
            url += ("&" if "?" in url else "?") + query
        headers = dict(spec.headers)
        body: bytes | None = None
        if spec.form is not None:
            form = [(k, _query_text(v, values)) for k, v in spec.form.items()]
            body = urlencode(form, encoding=spec.encoding or "utf-8").encode("ascii")
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return scrapy.Request(
            url,
            method=spec.method,
            body=body,
            headers=headers,
            callback=self.parse_page,
            cb_kwargs={"list_id": lst.id, "page": page},
            meta={"cw_list": lst.id},
        )

    def decoded(self, response: Response, spec: HtmlListDef) -> TextResponse:
        """The page as text in the declared encoding (else as the response declares it)."""
        if spec.encoding is None and isinstance(response, TextResponse):
            return response
        if spec.encoding is not None:
            try:
                response.body.decode(spec.encoding)
            except UnicodeDecodeError as exc:
                raise MalformedPage(f"the page is not {spec.encoding}: {exc}") from exc
        return HtmlResponse(
            url=response.url,
            status=response.status,
            headers=response.headers,
            body=response.body,
            encoding=spec.encoding,
            request=response.request,
        )

    def table(self, response: TextResponse, spec: HtmlListDef, what: str) -> Selector:
        """The list table, or why there is none: a declared refusal, else layout drift."""
        found = response.css(spec.table)
        if found:
            return found[0]
        self.check_refusal(response, spec, what)
        raise LayoutDrift(f"{what}: no list table {spec.table!r}: {page_text(response)[:80]!r}")

    @staticmethod
    def check_refusal(response: TextResponse, spec: HtmlListDef, what: str) -> None:
        text = page_text(response)
        for refusal in spec.refused:
            said = next((word for word in refusal.contains if word in text), None)
            if said is not None:
                raise RefusedPage(
                    f"{what}: the portal refused ({said}): {text[:120]!r}", refusal.outcome
                )

    def parse_page(self, response: Response, list_id: str, page: int) -> Iterator[Any]:
        lst = self.source().list(list_id)
        spec = self.spec(lst)
        number = page - spec.first_page + 1
        what = f"{list_id} page {number}"
        text_response = self.decoded(response, spec)
        grid = self.read_rows(text_response, spec, what)
        total, pages = self.declared(text_response, spec, what, number)
        if pages is None and total is not None:
            pages = max(1, math.ceil(total / spec.page_size))
        ref = page_ref(response, "list")
        yield ListPage(
            source=self.source_id,
            list=list_id,
            url=response.url,
            sha256=ref.sha256,
            page_no=number,
            rows=len(grid),
            declared_total=total,
            declared_pages=pages,
        )
        if number == 1:
            yield from more_pages(lst, spec, pages, len(grid), self.page_request)
        elif pages is None and len(grid) >= spec.page_size:
            yield from next_page(lst, spec, number, self.page_request)
        if not grid and (number == 1 or pages is not None):
            raise EmptyPage(f"{what} lists no entries")
        repeated = []
        fresh: list[GridRow] = []
        for row in grid:
            link = row.links.get(spec.detail.column) if spec.detail else None
            identity = link or "\x1f".join(f"{k}\x1e{v}" for k, v in sorted(row.cells.items()))
            if self.first_sight(list_id, identity):
                fresh.append(row)
            else:
                repeated.append(row.cells[spec.key_columns[0]])
        if repeated:
            raise MalformedPage(f"{what} repeats rows already read: {repeated}")
        for row in fresh:
            if spec.detail is None:
                yield RawEntry(
                    source=self.source_id,
                    list=list_id,
                    source_url=response.url,
                    raw_sha256=ref.sha256,
                    fields=row.cells,
                    pages=[ref],
                )
                continue
            yield scrapy.Request(
                row.links[spec.detail.column],
                headers=dict(spec.headers),
                callback=self.parse_detail,
                cb_kwargs={"list_id": list_id, "row": row.cells, "list_ref": ref},
                meta={"cw_list": list_id},
            )

    def read_rows(self, response: TextResponse, spec: HtmlListDef, what: str) -> list[GridRow]:
        """The table's rows keyed by header label; every key column present and filled, and
        each row's detail link there when one is declared."""
        table = self.table(response, spec, what)
        header = table.xpath("(.//tr[th])[1]")
        if not header:
            raise LayoutDrift(f"{what}: {spec.table!r} has no header row of <th> cells")
        rows = [row for row in table.css(spec.rows) if not row.xpath("./th")]
        grid = read_grid(
            response,
            SelectorList([*header, *rows]),
            tuple(spec.key_columns),
            re.compile(spec.no_rows),
        )
        out = []
        for row in grid:
            cells = {label: clean(value) for label, value in row.cells.items() if label}
            lacking = [label for label in spec.key_columns if not cells.get(label)]
            if lacking:
                raise LayoutDrift(f"{what}: a row has no {', '.join(lacking)}: {cells}")
            if spec.detail is not None and spec.detail.column not in row.links:
                raise LayoutDrift(f"{what}: no detail link under {spec.detail.column}: {cells}")
            out.append(GridRow(cells, row.links))
        return out

    @staticmethod
    def declared(
        response: TextResponse, spec: HtmlListDef, what: str, number: int
    ) -> tuple[int | None, int | None]:
        """The pager's stated total rows and pages. A declared pager that is gone from page
        1 is drift; later pages may leave it out (some portals show it once)."""
        if spec.pager is None:
            return None, None
        text = clean(" ".join(response.css(spec.pager.css).xpath(".//text()").getall()))
        counts: list[int | None] = []
        for pattern in (spec.pager.total, spec.pager.pages):
            found = re.search(pattern, text) if pattern else None
            if pattern and found is None:
                if number == 1:
                    raise LayoutDrift(
                        f"{what}: the pager {spec.pager.css!r} states no count: {text!r}"
                    )
                return None, None
            counts.append(int(found.group(1)) if found else None)
        return counts[0], counts[1]

    def parse_detail(
        self, response: Response, list_id: str, row: dict[str, str], list_ref: PageRef
    ) -> Iterator[RawEntry]:
        spec = self.spec(self.source().list(list_id))
        if spec.detail is None:  # only rows of a list with a detail block get here
            return
        page = self.decoded(response, spec)
        what = f"{list_id} detail"
        if not page.css(spec.detail.table):
            self.check_refusal(page, spec, what)
        table = read_label_table(page, spec.detail.table, tuple(spec.detail.key_labels))
        fields = {label: clean(value) for label, value in table.values.items()}
        lacking = [label for label in spec.detail.key_labels if not fields.get(label)]
        if lacking:
            raise LayoutDrift(f"{what} {response.url}: no value for {', '.join(lacking)}")
        ref = page_ref(response, "detail")
        yield RawEntry(
            source=self.source_id,
            list=list_id,
            source_url=response.url,
            raw_sha256=ref.sha256,
            fields=fields,
            row=row,
            pages=[list_ref, ref],
        )
