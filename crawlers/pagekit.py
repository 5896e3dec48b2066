"""Reading the page shapes Chinese government portals share: label/value tables, grids with
a header row, and pagers that state a total. Columns are found by their header label, never
by position, and a missing table or label is ``LayoutDrift``, never an empty result."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from lxml.html import HtmlElement
from parsel import Selector, SelectorList
from scrapy.http import Response

from core.items import PageRef
from core.outcomes import LayoutDrift, MalformedPage
from core.registry import ListDef

_LABEL_END = re.compile(r"[：:\s\u3000]+$")
_SPACE = re.compile(r"[\s\u3000\xa0]+")


def cell_text(cell: Selector | HtmlElement) -> str:
    """All text of a cell, as published (joined, not trimmed)."""
    element = cell.root if isinstance(cell, Selector) else cell
    return "".join(element.itertext())


def _cells(row: HtmlElement, tags: tuple[str, ...] = ("th", "td")) -> list[HtmlElement]:
    return [child for child in row if child.tag in tags]


def _href(cell: HtmlElement) -> str | None:
    link = next(cell.iter("a"), None)
    return link.get("href") if link is not None else None


def label_of(text: str) -> str:
    """A header or label without surrounding blanks and trailing colon."""
    return _LABEL_END.sub("", _SPACE.sub(" ", text).strip())


def page_ref(response: Response, role: str) -> PageRef:
    return PageRef(url=response.url, sha256=hashlib.sha256(response.body).hexdigest(), role=role)


def one(response: Response | Selector, css: str, what: str) -> Selector:
    found = response.css(css)
    if not found:
        raise LayoutDrift(f"{what}: selector {css!r} matched nothing")
    return found[0]


@dataclass
class LabelTable:
    values: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)


def read_label_table(response: Response, css: str, required: tuple[str, ...] = ()) -> LabelTable:
    """``<tr><th>label：</th><td>value</td></tr>`` tables (also several pairs in one row)."""
    table = one(response, css, "label table").root
    result = LabelTable()
    for row in table.iter("tr"):
        cells = _cells(row)
        for label_cell, value_cell in zip(cells[::2], cells[1::2], strict=False):
            label = label_of(cell_text(label_cell))
            if not label:
                continue
            result.values[label] = cell_text(value_cell)
            href = _href(value_cell)
            if href:
                result.links[label] = response.urljoin(href)
    missing = [label for label in required if label not in result.values]
    if missing:
        raise LayoutDrift(f"label table {css!r} lacks {', '.join(missing)}")
    return result


@dataclass
class GridRow:
    cells: dict[str, str]
    links: dict[str, str]


def read_grid(
    response: Response,
    table: Selector | SelectorList[Selector],
    required: tuple[str, ...] = (),
    placeholder: re.Pattern[str] | None = None,
) -> list[GridRow]:
    """Rows of a table whose first row holds ``<th>`` headers, keyed by header label.

    A single spanning cell matching ``placeholder`` (``暂无…``) means "no rows", not drift.
    """
    selected = table.css("tr") if isinstance(table, Selector) else table
    rows = [row.root for row in selected]
    if not rows:
        raise LayoutDrift("grid has no rows at all")
    headers = [label_of(cell_text(th)) for th in _cells(rows[0], ("th",))]
    missing = [name for name in required if name not in headers]
    if missing:
        raise LayoutDrift(f"grid header {headers} lacks {', '.join(missing)}")
    out = []
    for row in rows[1:]:
        cells = _cells(row, ("td",))
        if len(cells) == 1 and placeholder and placeholder.search(cell_text(cells[0])):
            continue
        if len(cells) != len(headers):
            raise LayoutDrift(f"grid row has {len(cells)} cells for {len(headers)} headers")
        values, links = {}, {}
        for header, cell in zip(headers, cells, strict=True):
            values[header] = cell_text(cell)
            href = _href(cell)
            if href:
                links[header] = response.urljoin(href)
        out.append(GridRow(values, links))
    return out


@dataclass(frozen=True)
class Pager:
    total: int | None
    pages: int | None


def read_pager(
    response: Response, css: str, total_re: re.Pattern[str], pages_re: re.Pattern[str]
) -> Pager:
    """A pager's stated record total and page count (either may be absent)."""
    text = _SPACE.sub(" ", " ".join(response.css(css).xpath(".//text()").getall()))
    total = total_re.search(text)
    pages = pages_re.search(text)
    return Pager(
        total=int(total.group(1)) if total else None,
        pages=int(pages.group(1)) if pages else None,
    )


class Paging(Protocol):
    """What paging needs of a family's list block (``core.registry``'s paged requests)."""

    page_size: int
    first_page: int
    max_pages: int | None


Asked = TypeVar("Asked")  # what asking for a page gives: a Scrapy request, a page number, …
PageRequest = Callable[[ListDef, int], Asked]


def more_pages(
    lst: ListDef,
    paging: Paging,
    pages: int | None,
    first_rows: int,
    request: PageRequest[Asked],
) -> Iterator[Asked]:
    """After page 1: every declared page at once, else the next one if page 1 was full."""
    if pages is None:
        if first_rows >= paging.page_size:
            yield from next_page(lst, paging, 1, request)
        return
    last = pages if paging.max_pages is None else min(pages, paging.max_pages)
    for number in range(2, last + 1):
        yield request(lst, number + paging.first_page - 1)


def next_page(
    lst: ListDef, paging: Paging, number: int, request: PageRequest[Asked]
) -> Iterator[Asked]:
    """The page after a full page ``number`` when no count was declared; at ``max_pages``
    the list may go on unseen, so the run cannot vouch for it."""
    if paging.max_pages is not None and number >= paging.max_pages:
        raise MalformedPage(
            f"{lst.id}: page {number} is full and max_pages is {paging.max_pages}: "
            "the list may go on beyond what was read"
        )
    yield request(lst, number + paging.first_page)
