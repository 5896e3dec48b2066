"""The ``creditsearch`` family: lists of the creditsearch vendor platform (信用山东, 信用陕西,
信用辽宁; portals.md §4.1), read from the registry alone.

The platform's list API wants every call signed: a ``token`` the site's own script (信用山东's
``sd.js``) computes from the query and a ``timestamp``; a call without a valid one is refused.
The token is never computed here. Each list's ``creditsearch:`` block
(``core.registry.CreditSearchDef``) names its ``index`` page
(``creditsearch.redblacklistindex.dhtml?source_id=…&type=black|red``), which is opened in
Chromium so the site's scripts load; for each page of the list the declared ``token.js``
expression is evaluated in that page (over ``params``, ``query`` and ``timestamp``), and the
signed URL is fetched by the page itself (``crawlers.spiders.inpage``). ``token`` and
``timestamp`` differ on every run, so the source's cassette filter drops them
(``cassette: filter_query_parameters: [token, timestamp]``), and the URL a page is archived
and cited by is without them.

The answer (``{"typeSourceSearch": {"list": [...], "total": N}}``, the Credit China schema)
is read by the same machinery as the ``json_api`` family (``crawlers.spiders.json_api``): the
row path, the declared total, the key fields every row holds, the success check, the paging
(``crawlers.pagekit``), and the same outcomes: a refused answer gets the success check's
outcome (``session_rejected``: the site did not accept the token), a missing row path or a
row lacking a key field (a renamed JSON key) is ``layout_drift``, an empty page where rows
were declared ``empty``, a repeated row ``malformed``. A token expression that fails in the
page (the site's script is gone, or no longer defines the function) is ``layout_drift``: the
declaration no longer fits the site. Such a page's rows are not read, and its list is not
healthy, so nothing is delisted.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urljoin

import scrapy
from scrapy.http import Response
from twisted.python.failure import Failure
from w3lib.encoding import http_content_type_encoding

from core.items import PageRef
from core.outcomes import MalformedPage, PageProblem, outcome_for_status
from core.registry import CreditSearchDef, ListDef
from crawlers.browser import PageFetch
from crawlers.spiders.inpage import InPageSpider
from crawlers.spiders.json_api import (
    JsonPage,
    entries,
    following,
    list_page,
    parse_answer,
    query_text,
    read_page,
    substitute,
)

logger = logging.getLogger(__name__)

# The declared expression runs in the page as the body of this function; its value may be a
# promise. ``params`` are the call's query parameters (text), ``query`` the same urlencoded.
_SIGN_JS = """async ({params, query}) => {
  const timestamp = String(Date.now());
  const token = await (%s);
  if (token === undefined || token === null || token === "") {
    throw new Error("the token expression gave " + JSON.stringify(token));
  }
  return {timestamp, token: String(token)};
}"""


def body_text(got: PageFetch, encoding: str | None) -> str:
    """The answer's text: the declared encoding, else the Content-Type's charset, else UTF-8."""
    charset = encoding or http_content_type_encoding(got.header("content-type")) or "utf-8"
    try:
        return got.body.decode(charset)
    except (UnicodeDecodeError, LookupError) as exc:
        raise MalformedPage(f"body is not {charset}: {exc}") from exc


class CreditSearchSpider(InPageSpider):
    """Reads every list of its source through the list's ``creditsearch:`` block."""

    def spec(self, lst: ListDef) -> CreditSearchDef:
        if lst.creditsearch is None:  # the registry refuses such a declaration
            raise LookupError(f"{lst.id} has no creditsearch block")
        return lst.creditsearch

    def index_url(self, lst: ListDef) -> str:
        return urljoin(self.source().base_url, self.spec(lst).index)

    def params(self, lst: ListDef, page: int) -> dict[str, str]:
        spec = self.spec(lst)
        number = page - spec.first_page + 1
        values = {"page": page, "size": spec.page_size, "offset": (number - 1) * spec.page_size}
        return {k: query_text(substitute(v, values)) for k, v in spec.params.items()}

    def api_url(self, lst: ListDef, params: dict[str, str]) -> str:
        url = urljoin(self.source().base_url, self.spec(lst).url)
        return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}" if params else url

    # --- InPageSpider -----------------------------------------------------------------------

    def targets(self) -> list[str]:
        lists = self.source().lists
        pages = [self.api_url(lst, self.params(lst, self.spec(lst).first_page)) for lst in lists]
        return list(dict.fromkeys([self.index_url(lst) for lst in lists] + pages))

    def portal_request(self) -> scrapy.Request:
        return scrapy.Request(
            self.index_url(self.source().lists[0]),
            callback=self.parse_index,
            errback=self.index_failed,
            dont_filter=True,
            meta=self.page_meta(None),  # the page's scripts sign every list's calls
        )

    async def index_failed(self, failure: Failure) -> None:
        """No index page (its fetch is filed by the fetch log): nothing can be signed."""
        page = failure.request.meta.get("playwright_page")  # type: ignore[attr-defined]
        if page is not None:
            await page.close()
        logger.error("%s: the index page failed: %s", self.source_id, failure.value)

    async def parse_index(self, response: Response) -> AsyncIterator[Any]:
        """Every list, read from one page; the page is closed at the end."""
        page = response.meta["playwright_page"]
        current = response.url
        try:
            if response.status >= 400:  # filed by the fetch log, for every list
                return
            for lst in self.source().lists:
                if self.index_url(lst) != current:
                    current = self.index_url(lst)
                    if not await self.navigate(page, current, lst.id):
                        continue
                async for item in self.crawl_list(page, lst):
                    yield item
        finally:
            await page.close()

    async def navigate(self, page: Any, url: str, list_id: str) -> bool:
        """Open another list's index page in the same page (its outcome filed)."""
        try:
            answer = await page.goto(url, wait_until="load")
        except Exception as exc:
            self.file(url, "http_error", list_id, None, f"{type(exc).__name__}: {exc}")
            return False
        status = answer.status if answer is not None else None
        outcome = outcome_for_status(status) if status is not None else "http_error"
        self.file(url, outcome, list_id, status, None if outcome == "ok" else "index page")
        return outcome == "ok"

    # --- A list, page by page ---------------------------------------------------------------

    async def crawl_list(self, page: Any, lst: ListDef) -> AsyncIterator[Any]:
        """Page 1, then the pages it declares (or the next after a full one)."""
        spec = self.spec(lst)
        pending = deque([spec.first_page])
        while pending:
            number_asked = pending.popleft()
            number = number_asked - spec.first_page + 1
            got = await self.signed_page(page, lst, number_asked)
            if got is None:
                continue
            read, ref = got
            yield list_page(self.source_id, lst.id, number, read, ref)
            try:
                pending.extend(following(lst, spec, number, read, lambda _lst, asked: asked))
                for entry in entries(self, lst.id, number, spec, read, ref):
                    yield entry
            except PageProblem as exc:
                self.file(ref.url, exc.outcome, lst.id, 200, str(exc), ref.sha256)

    async def signed_page(
        self, page: Any, lst: ListDef, number_asked: int
    ) -> tuple[JsonPage, PageRef] | None:
        """One signed page of the list, read; None (its outcome filed) when it cannot be."""
        spec = self.spec(lst)
        number = number_asked - spec.first_page + 1
        params = self.params(lst, number_asked)
        unsigned = self.api_url(lst, params)
        try:
            signed = await page.evaluate(
                _SIGN_JS % spec.token.js, {"params": params, "query": urlencode(params)}
            )
        except Exception as exc:  # the site's script is missing or changed
            detail = f"the site's token ({spec.token.js}) could not be computed: {exc}"
            if self.bridge is not None and self.bridge.misses:
                detail += f"; {self.bridge.misses[-1].explanation}"
            logger.error("%s: %s", lst.id, detail)
            self.file(unsigned, "layout_drift", lst.id, None, detail)
            return None
        url = self.api_url(
            lst,
            {
                **params,
                spec.token.timestamp: str(signed["timestamp"]),
                spec.token.param: str(signed["token"]),
            },
        )
        got, sha = await self.fetch(page, url)
        if got.status is None:
            outcome = "timeout" if "timeout" in (got.error or "").lower() else "http_error"
            self.file(got.url, outcome, lst.id, None, got.error)
            return None
        outcome = outcome_for_status(got.status)
        failed = None if outcome == "ok" else f"HTTP {got.status}"
        if outcome == "ok" and (problem := self.page_problem(got)):
            outcome, failed = problem.outcome, str(problem)  # a challenge, captcha, no body
        self.file(got.url, outcome, lst.id, got.status, failed, sha)
        if outcome != "ok":
            return None
        ref = PageRef(got.url, sha or "", "list")
        try:
            document = parse_answer(body_text(got, spec.encoding), spec)
            return read_page(document, spec, spec.page_size, f"{lst.id} page {number}"), ref
        except PageProblem as exc:
            self.file(got.url, exc.outcome, lst.id, got.status, str(exc), sha)
            return None
