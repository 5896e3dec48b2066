"""中国政府采购网 政府采购严重违法失信行为记录名单 (CCGP serious-violation list).

Pages: the list is a search form posted to ``/cr/list`` (empty search fields list every
entry; ``gp`` is the page number), each row opening its detail page through
``onclick="detail('<id>')"``. Page 1 states the page count (``#totalPag``), so every other
page is posted directly and one failed page cannot hide the others. An entry is read from
its detail page (``fields``) with its list row (``row``). The form body is built in one fixed
field order: cassettes match POSTs on their body, and so does a cache or a WAF.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar
from urllib.parse import urlencode

import scrapy
from parsel import Selector, SelectorList
from scrapy.http import Response

from core.items import ListPage, PageRef, RawEntry
from core.outcomes import EmptyPage, LayoutDrift, MalformedPage
from crawlers.pagekit import cell_text, label_of, one, page_ref, read_grid
from crawlers.spiders.base import PortalSpider

# --- Selectors and labels, one block per page type -----------------------------------------
LIST_PATH = "cr/list"
FORM_FIELDS = ("orgName", "orgCode", "enforceUnit", "punishTime", "punishTimeMax")  # all empty
PAGE_FIELD = "gp"
LIST_TABLE = "table#tableInfo"
LIST_ROWS = "tr.trShow"
LIST_REQUIRED_HEADERS = ("企业名称", "统一社会信用代码", "处罚日期", "处罚截止日期")
LIST_LINK_HEADER = "企业名称"
DETAIL_ID = re.compile(r"""detail\(\s*['"]([^'"]+)['"]\s*\)""")
NO_ROWS = re.compile(r"没有该企业的相关记录|暂无")
PAGER = "div.pager"
PAGER_TOTAL = re.compile(r"共\s*(\d+)\s*条")
PAGE_COUNT = "#totalPag::text"
CURRENT_PAGE = "input#gp::attr(value)"

DETAIL_PATH = "cr/list/detail?id="
DETAIL_TABLE = "table#detail"
DETAIL_VALUE = "td.inputTd"
DETAIL_REQUIRED = ("企业名称", "处罚日期")
# -------------------------------------------------------------------------------------------


def form_body(page_no: int) -> str:
    """The list form for page ``page_no``, byte for byte what the portal's page posts."""
    return urlencode([*((name, "") for name in FORM_FIELDS), (PAGE_FIELD, str(page_no))])


class CcgpSpider(PortalSpider):
    name = "ccgp"
    source_id: ClassVar[str] = "ccgp"

    async def start(self) -> AsyncIterator[scrapy.Request]:
        (lst,) = self.source().lists
        yield self.list_request(lst.id, page_no=1)

    def list_request(self, list_id: str, page_no: int) -> scrapy.Request:
        return scrapy.Request(
            self.source().base_url + LIST_PATH,
            method="POST",
            body=form_body(page_no),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            callback=self.parse_list,
            cb_kwargs={"list_id": list_id, "page_no": page_no},
            meta={"cw_list": list_id},
        )

    def parse_list(self, response: Response, list_id: str, page_no: int) -> Iterator[Any]:
        table = one(response, LIST_TABLE, "list table")
        header = table.xpath("(.//tr[th])[1]")
        if not header:
            raise LayoutDrift(f"{LIST_TABLE} has no header row")
        rows = table.css(LIST_ROWS)
        grid = read_grid(response, SelectorList([*header, *rows]), LIST_REQUIRED_HEADERS, NO_ROWS)
        headers = [label_of(cell_text(th)) for th in header.xpath("./th")]
        pages = self.page_count(response, page_no)
        total = PAGER_TOTAL.search(" ".join(response.css(PAGER).xpath(".//text()").getall()))
        if total is None:
            raise LayoutDrift(f"pager {PAGER!r} states no total")
        ref = page_ref(response, "list")
        yield ListPage(
            source=self.source_id,
            list=list_id,
            url=response.url,
            sha256=ref.sha256,
            page_no=page_no,
            rows=len(grid),
            declared_total=int(total.group(1)),
            declared_pages=pages,
        )
        if page_no == 1:
            for number in range(2, pages + 1):
                yield self.list_request(list_id, number)
        if not grid:
            raise EmptyPage(f"{list_id} page {page_no} lists no entries")
        link_column = headers.index(LIST_LINK_HEADER)
        repeated = []
        for row, tr in zip(grid, rows, strict=True):
            cell = tr.xpath("./td")[link_column]
            found = DETAIL_ID.search(" ".join(cell.xpath(".//@onclick").getall()))
            if not found:
                raise LayoutDrift(f"row without a detail id: {row.cells}")
            if not self.first_sight(list_id, found.group(1)):
                repeated.append(found.group(1))
                continue
            yield scrapy.Request(
                self.source().base_url + DETAIL_PATH + found.group(1),
                callback=self.parse_detail,
                cb_kwargs={"list_id": list_id, "row": row.cells, "list_ref": ref},
                meta={"cw_list": list_id},
            )
        if repeated:
            raise MalformedPage(f"rows repeat entries this list already showed: {repeated}")

    def page_count(self, response: Response, page_no: int) -> int:
        """``#totalPag``; a page that says it is another page than asked is not trusted."""
        text = (response.css(PAGE_COUNT).get() or "").strip()
        if not text.isdigit():
            raise LayoutDrift(f"no page count in {PAGE_COUNT!r}: {text!r}")
        current = (response.css(CURRENT_PAGE).get() or "").strip()
        if current and current != str(page_no):
            raise MalformedPage(f"asked for page {page_no}, the portal answered page {current}")
        return int(text)

    def parse_detail(
        self, response: Response, list_id: str, row: dict[str, str], list_ref: PageRef
    ) -> Iterator[RawEntry]:
        fields = read_detail(one(response, DETAIL_TABLE, "detail table"))
        missing = [label for label in DETAIL_REQUIRED if label not in fields]
        if missing:
            raise LayoutDrift(f"{DETAIL_TABLE} lacks {', '.join(missing)}")
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


def read_detail(table: Selector) -> dict[str, str]:
    """Each ``td.inputTd`` value under the label of the cell just before it."""
    values: dict[str, str] = {}
    for cell in table.css(DETAIL_VALUE):
        label_cell = cell.xpath("preceding-sibling::*[1]")
        if not label_cell:
            continue
        label = label_of(cell_text(label_cell[0]))
        if label:
            values[label] = cell_text(cell)
    return values
