"""The ``json_api`` family: lists published by a paged JSON API, read from the registry alone.

Each list of a source declared ``spider: json_api`` carries a ``json_api:`` block
(``core.registry.JsonApiDef``): the endpoint and method (GET query, POST form or POST JSON
body, with ``{page}``, ``{size}`` and ``{offset}`` substituted), required headers (a Referer),
the body's encoding, the dotted path of the row array (``data.list``, ``list``, ``Data``), of
the declared total (rows) or page count, the JSON keys every row must hold, and an optional
success check (``status == 1``). A row's fields go on as label/value pairs keyed by the JSON
keys; the source's ``labels:`` block maps the keys only that portal uses.

Paging: when page 1 declares a total or a page count, every other page (up to ``max_pages``)
is requested at once, and the pager check compares what came with what was declared; without
either, pages are read one after another until a short or empty one.

Nothing here trusts an answer it cannot read: a body that is not JSON is ``malformed``; an
answer failing the success check gets the check's outcome (``session_rejected`` unless
declared otherwise: a portal refusing a request without its Referer); a missing row path or
declared count, or a row lacking a key field (a renamed JSON key) is ``layout_drift``; an
empty page where rows were declared is ``empty``; a row read twice is ``malformed``. The
page's rows are then not read at all, and its list is not healthy, so nothing is delisted.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import scrapy
from scrapy.http import Response

from core.items import ListPage, PageRef, RawEntry
from core.outcomes import EmptyPage, LayoutDrift, MalformedPage, PageProblem
from core.registry import JsonAnswerDef, JsonApiDef, ListDef
from crawlers.pagekit import Asked, PageRequest, Paging, more_pages, next_page, page_ref
from crawlers.spiders.base import PortalSpider

_MISSING = object()


class RefusedAnswer(PageProblem):
    """An answer that fails the list's declared success check: the portal said no."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def at_path(document: Any, path: str) -> Any:
    """The value at a dotted path (``data.page.totalPage``; a number steps into an array),
    or ``_MISSING``."""
    value = document
    for step in path.split("."):
        if isinstance(value, dict) and step in value:
            value = value[step]
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return _MISSING
    return value


def substitute(template: Any, values: dict[str, int]) -> Any:
    """``template`` with ``{page}``/``{size}``/``{offset}`` filled in: a string that is exactly
    one placeholder becomes the number, others get its digits; dicts and lists recursively."""
    if isinstance(template, str):
        for name, number in values.items():
            if template == f"{{{name}}}":
                return number
        text = template
        for name, number in values.items():
            text = text.replace(f"{{{name}}}", str(number))
        return text
    if isinstance(template, dict):
        return {key: substitute(item, values) for key, item in template.items()}
    if isinstance(template, list):
        return [substitute(item, values) for item in template]
    return template


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def row_fields(row: dict[str, Any]) -> dict[str, str]:
    """A JSON row as key → text, as published: nulls left out, a nested object's scalars under
    ``key.sub``, arrays kept as their JSON text."""
    out: dict[str, str] = {}
    for key, value in row.items():
        if value is None:
            continue
        if isinstance(value, dict):
            for sub, item in value.items():
                if item is not None and not isinstance(item, dict):
                    out[f"{key}.{sub}"] = _text(item)
            continue
        out[key] = _text(value)
    return out


def _count(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise MalformedPage(f"{path} is not a number: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise MalformedPage(f"{path} is not a number: {value!r}")


# --- reading one JSON answer: shared by every family that reads JSON lists ---------------------


@dataclass(frozen=True)
class JsonPage:
    """One page of a list as its answer holds it: each row's fields (``row_fields``), and the
    declared total (rows) and page count, where declared (a total gives the page count)."""

    rows: list[dict[str, str]]
    total: int | None
    pages: int | None


def parse_answer(text: str, answer: JsonAnswerDef) -> Any:
    """The answer as JSON, after the declared success check."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        start = " ".join(text.split())[:80]
        raise MalformedPage(f"not JSON ({exc}): {start!r}") from exc
    if answer.success is not None:
        value = at_path(document, answer.success.path)
        if value is _MISSING or value not in answer.success.equals:
            shown = "missing" if value is _MISSING else repr(value)
            start = json.dumps(document, ensure_ascii=False)[:200]
            raise RefusedAnswer(
                f"{answer.success.path} is {shown}, not {answer.success.equals}: {start}",
                answer.success.outcome,
            )
    return document


def read_page(document: Any, answer: JsonAnswerDef, page_size: int, where: str) -> JsonPage:
    """The page's rows and declared size; ``where`` (``<list> page <n>``) names it in errors."""
    rows = at_path(document, answer.rows)
    if rows is _MISSING:
        raise LayoutDrift(f"{where}: the answer has no {answer.rows!r}")
    if rows is None:  # some portals answer an empty page with null
        rows = []
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise MalformedPage(f"{where}: {answer.rows!r} is not a list of rows")
    total = declared(document, answer.total)
    pages = declared(document, answer.total_pages)
    if pages is None and total is not None:
        pages = math.ceil(total / page_size)
    for row in rows:
        lacking = [key for key in answer.key_fields if row.get(key) in (None, "")]
        if lacking:
            raise LayoutDrift(
                f"{where}: a row lacks {', '.join(lacking)} (its keys: {', '.join(sorted(row))})"
            )
    return JsonPage([row_fields(row) for row in rows], total, pages)


def declared(document: Any, path: str | None) -> int | None:
    if path is None:
        return None
    value = at_path(document, path)
    if value is _MISSING:
        raise LayoutDrift(f"the answer has no {path!r}")
    return _count(value, path)


def list_page(source_id: str, list_id: str, number: int, page: JsonPage, ref: PageRef) -> ListPage:
    """The page as fetched: the evidence of what the list showed, and what it declared."""
    return ListPage(
        source=source_id,
        list=list_id,
        url=ref.url,
        sha256=ref.sha256,
        page_no=number,
        rows=len(page.rows),
        declared_total=page.total,
        declared_pages=page.pages,
    )


def following(
    lst: ListDef, paging: Paging, number: int, page: JsonPage, request: PageRequest[Asked]
) -> Iterator[Asked]:
    """The pages to ask for after page ``number``: all declared ones after page 1, else the
    next after a full page."""
    if number == 1:
        yield from more_pages(lst, paging, page.pages, len(page.rows), request)
    elif page.pages is None and len(page.rows) >= paging.page_size:
        yield from next_page(lst, paging, number, request)


def entries(
    spider: PortalSpider,
    list_id: str,
    number: int,
    answer: JsonAnswerDef,
    page: JsonPage,
    ref: PageRef,
) -> list[RawEntry]:
    """The page's rows as entries; an empty page where rows were declared is ``empty``, a row
    this run read already ``malformed``."""
    if not page.rows and (number == 1 or page.pages is not None):
        raise EmptyPage(f"{list_id} page {number} lists no entries")
    repeated = [
        f.get(answer.key_fields[0], "?")
        for f in page.rows
        if not spider.first_sight(list_id, json.dumps(f, sort_keys=True, ensure_ascii=False))
    ]
    if repeated:
        raise MalformedPage(f"{list_id} page {number} repeats rows already read: {repeated}")
    return [
        RawEntry(
            source=spider.source_id,
            list=list_id,
            source_url=ref.url,
            raw_sha256=ref.sha256,
            fields=item,
            pages=[ref],
        )
        for item in page.rows
    ]


class JsonApiSpider(PortalSpider):
    """Reads every list of its source through the list's ``json_api:`` block."""

    async def start(self) -> AsyncIterator[scrapy.Request]:
        for lst in self.source().lists:
            yield self.page_request(lst, self.api(lst).first_page)

    def api(self, lst: ListDef) -> JsonApiDef:
        if lst.json_api is None:  # the registry refuses such a declaration
            raise LookupError(f"{lst.id} has no json_api block")
        return lst.json_api

    def page_request(self, lst: ListDef, page: int) -> scrapy.Request:
        api = self.api(lst)
        number = page - api.first_page + 1  # 1-based, as list pages are counted
        values = {"page": page, "size": api.page_size, "offset": (number - 1) * api.page_size}
        url = urljoin(self.source().base_url, api.url)
        if api.params:
            query = urlencode(
                [(k, query_text(substitute(v, values))) for k, v in api.params.items()]
            )
            url += ("&" if "?" in url else "?") + query
        headers = dict(api.headers)
        body: str | None = None
        if api.form is not None:
            body = urlencode([(k, query_text(substitute(v, values))) for k, v in api.form.items()])
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif api.json_body is not None:
            body = json.dumps(
                substitute(api.json_body, values), ensure_ascii=False, separators=(",", ":")
            )
            headers.setdefault("Content-Type", "application/json;charset=UTF-8")
        headers.setdefault("Accept", "application/json, text/plain, */*")
        return scrapy.Request(
            url,
            method=api.method,
            body=body.encode("utf-8") if body is not None else None,
            headers=headers,
            callback=self.parse_page,
            cb_kwargs={"list_id": lst.id, "page": page},
            meta={"cw_list": lst.id},
            dont_filter=False,
        )

    def parse_page(self, response: Response, list_id: str, page: int) -> Iterator[Any]:
        lst = self.source().list(list_id)
        api = self.api(lst)
        number = page - api.first_page + 1
        where = f"{list_id} page {number}"
        read = read_page(self.read_json(response, api), api, api.page_size, where)
        ref = page_ref(response, "list")
        yield list_page(self.source_id, list_id, number, read, ref)
        yield from following(lst, api, number, read, self.page_request)
        yield from entries(self, list_id, number, api, read, ref)

    def read_json(self, response: Response, api: JsonApiDef) -> Any:
        """The answer as JSON, after the declared success check."""
        try:
            text = response.body.decode(api.encoding) if api.encoding else response.text
        except (UnicodeDecodeError, AttributeError) as exc:
            raise MalformedPage(f"body is not {api.encoding or 'text'}: {exc}") from exc
        return parse_answer(text, api)


def query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
