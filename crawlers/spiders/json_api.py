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
from typing import Any
from urllib.parse import urlencode, urljoin

import scrapy
from scrapy.http import Response

from core.items import ListPage, RawEntry
from core.outcomes import EmptyPage, LayoutDrift, MalformedPage, PageProblem
from core.registry import JsonApiDef, ListDef
from crawlers.pagekit import page_ref
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
                [(k, _query_text(substitute(v, values))) for k, v in api.params.items()]
            )
            url += ("&" if "?" in url else "?") + query
        headers = dict(api.headers)
        body: str | None = None
        if api.form is not None:
            body = urlencode([(k, _query_text(substitute(v, values))) for k, v in api.form.items()])
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
        document = self.read_json(response, api)
        rows = at_path(document, api.rows)
        if rows is _MISSING:
            raise LayoutDrift(f"{list_id} page {number}: the answer has no {api.rows!r}")
        if rows is None:  # some portals answer an empty page with null
            rows = []
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise MalformedPage(f"{list_id} page {number}: {api.rows!r} is not a list of rows")
        total = self.declared(document, api.total)
        pages = self.declared(document, api.total_pages)
        if pages is None and total is not None:
            pages = math.ceil(total / api.page_size)
        for row in rows:
            lacking = [key for key in api.key_fields if row.get(key) in (None, "")]
            if lacking:
                raise LayoutDrift(
                    f"{list_id} page {number}: a row lacks {', '.join(lacking)} "
                    f"(its keys: {', '.join(sorted(row))})"
                )
        ref = page_ref(response, "list")
        yield ListPage(
            source=self.source_id,
            list=list_id,
            url=response.url,
            sha256=ref.sha256,
            page_no=number,
            rows=len(rows),
            declared_total=total,
            declared_pages=pages,
        )
        if number == 1:
            yield from self.more_pages(lst, api, pages, len(rows))
        elif pages is None and len(rows) >= api.page_size:
            yield from self.next_page(lst, api, number)
        if not rows and (number == 1 or pages is not None):
            raise EmptyPage(f"{list_id} page {number} lists no entries")
        fields = [row_fields(row) for row in rows]
        repeated = [
            f.get(api.key_fields[0], "?")
            for f in fields
            if not self.first_sight(list_id, json.dumps(f, sort_keys=True, ensure_ascii=False))
        ]
        if repeated:
            raise MalformedPage(f"{list_id} page {number} repeats rows already read: {repeated}")
        for item in fields:
            yield RawEntry(
                source=self.source_id,
                list=list_id,
                source_url=response.url,
                raw_sha256=ref.sha256,
                fields=item,
                pages=[ref],
            )

    def more_pages(
        self, lst: ListDef, api: JsonApiDef, pages: int | None, first_rows: int
    ) -> Iterator[scrapy.Request]:
        """After page 1: every declared page at once, else the next one if page 1 was full."""
        if pages is None:
            if first_rows >= api.page_size:
                yield from self.next_page(lst, api, 1)
            return
        last = pages if api.max_pages is None else min(pages, api.max_pages)
        for number in range(2, last + 1):
            yield self.page_request(lst, number + api.first_page - 1)

    def next_page(self, lst: ListDef, api: JsonApiDef, number: int) -> Iterator[scrapy.Request]:
        """The page after a full one, when no count was declared; at ``max_pages`` the list
        may go on unseen, so the run cannot vouch for it."""
        if api.max_pages is not None and number >= api.max_pages:
            raise MalformedPage(
                f"{lst.id}: page {number} is full and max_pages is {api.max_pages}: "
                "the list may go on beyond what was read"
            )
        yield self.page_request(lst, number + api.first_page)

    def read_json(self, response: Response, api: JsonApiDef) -> Any:
        """The answer as JSON, after the declared success check."""
        try:
            text = response.body.decode(api.encoding) if api.encoding else response.text
        except (UnicodeDecodeError, AttributeError) as exc:
            raise MalformedPage(f"body is not {api.encoding or 'text'}: {exc}") from exc
        try:
            document = json.loads(text)
        except ValueError as exc:
            start = " ".join(text.split())[:80]
            raise MalformedPage(f"not JSON ({exc}): {start!r}") from exc
        if api.success is not None:
            value = at_path(document, api.success.path)
            if value is _MISSING or value not in api.success.equals:
                shown = "missing" if value is _MISSING else repr(value)
                start = json.dumps(document, ensure_ascii=False)[:200]
                raise RefusedAnswer(
                    f"{api.success.path} is {shown}, not {api.success.equals}: {start}",
                    api.success.outcome,
                )
        return document

    @staticmethod
    def declared(document: Any, path: str | None) -> int | None:
        if path is None:
            return None
        value = at_path(document, path)
        if value is _MISSING:
            raise LayoutDrift(f"the answer has no {path!r}")
        return _count(value, path)


def _query_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
