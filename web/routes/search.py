"""One search over every list of every source (``storage.search``), answered as cross-source
entities with their lists and statuses; a USCC or whole name that names one entity lands on
its page. Redacting, persons are found and shown only as the lists show them: shortened
names, pseudonymous ids."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from core.redact import PERSON, redact_entity, redact_record
from storage.search import MAX_CHARS, MIN_CHARS, Hit, QueryError, search, terms
from web.site import Site, SiteDep, registry

router = APIRouter()

CAP = 50  # entities per answer


class SearchListing(BaseModel):
    source: str
    list: str
    list_kind: str | None
    record_key: str = Field(description="pseudonymous for persons when the server redacts")
    entity_name: str | None
    case_number: str | None
    title: str | None
    status: str
    first_seen: str | None
    last_seen: str | None
    list_url: str


class SearchResult(BaseModel):
    entity_id: str = Field(description="the entity's page is /entities/{entity_id}")
    url: str
    kind: str = Field(description="uscc, name (name and jurisdiction) or person")
    entity_name: str | None = Field(description="the name of its newest entry")
    names: list[str] = Field(description="every spelling of its entries")
    entity_type: str | None
    uscc: str | None
    exact: bool = Field(description="the query is its USCC or one of its whole names")
    matched: list[str] = Field(description="fields the query matched: entity_name, uscc …")
    sources: list[str]
    listings: list[SearchListing]


class SearchAnswer(BaseModel):
    q: str
    problem: str | None = Field(
        None, description="empty, too_short or too_long: no search was made"
    )
    total: int = Field(description="entities in results")
    more: bool = Field(description="more entities matched than the cap")
    cap: int
    redacted: bool
    results: list[SearchResult]


def result(site: Site, hit: Hit) -> SearchResult:
    entity = hit.entity
    records, events = entity.records, entity.events
    person = entity.kind == "person" or any(r.get("entity_type") == PERSON for r in records)
    if site.redact:  # persons pseudonymous, representatives shortened, masked ids gone
        records, _ = redact_entity(records, events)
    newest = max(records, key=lambda r: (r.get("last_seen") or "", r.get("list") or ""))
    entity_id = newest["entity_id"]
    return SearchResult(
        entity_id=entity_id,
        url=f"/entities/{quote(entity_id, safe=':')}",
        kind=entity.kind,
        entity_name=newest.get("entity_name"),
        names=sorted({r["entity_name"] for r in records if r.get("entity_name")}),
        entity_type=PERSON if person else newest.get("entity_type"),
        uscc=entity.uscc,
        exact=hit.exact,
        matched=hit.matched,
        sources=sorted({r["source"] for r in records}),
        listings=[
            SearchListing(
                source=r["source"],
                list=r["list"],
                list_kind=r.get("list_kind"),
                record_key=r["record_key"],
                entity_name=r.get("entity_name"),
                case_number=r.get("case_number"),
                title=r.get("title"),
                status=r["status"],
                first_seen=r.get("first_seen"),
                last_seen=r.get("last_seen"),
                list_url=f"/lists/{quote(r['list'])}",
            )
            for r in records
        ],
    )


def answer(site: Site, q: str | None) -> SearchAnswer:
    text = (q or "").strip()
    empty = SearchAnswer(q=text, total=0, more=False, cap=CAP, redacted=site.redact, results=[])
    try:
        found_terms = terms(q)
    except QueryError as exc:
        return empty.model_copy(update={"problem": exc.reason})
    with site.engine.connect() as conn:
        found = search(conn, found_terms, cap=CAP, transform=redact_record if site.redact else None)
    results = [result(site, hit) for hit in found.hits]
    return empty.model_copy(update={"total": len(results), "more": found.more, "results": results})


def landing(found: SearchAnswer) -> str | None:
    """The entity page a search lands on: the one entity of a USCC, or the one entity whose
    whole name the query is when nothing else matched."""
    exact = [r for r in found.results if r.exact]
    if len(exact) != 1 or found.more:
        return None
    if (exact[0].uscc is not None and "uscc" in exact[0].matched) or len(found.results) == 1:
        return exact[0].url
    return None


@router.get("/search", response_class=HTMLResponse, include_in_schema=False)
def search_page(request: Request, site: SiteDep, q: str | None = None) -> Response:
    found = answer(site, q)
    target = landing(found)
    if target is not None:
        return RedirectResponse(target, status_code=303)
    lists: dict[str, Any] = {lst.id: lst for src in registry().values() for lst in src.lists}
    return site.render(
        request, "search.html", found=found, lists=lists, min_chars=MIN_CHARS, max_chars=MAX_CHARS
    )


@router.get(
    "/api/search",
    tags=["api"],
    summary="Search every list of every source by name, USCC or case number, as entities",
    response_model=SearchAnswer,
)
def api_search(
    site: SiteDep,
    q: str | None = Query(
        None,
        description="a name (substring; traditional characters found as simplified), a USCC "
        "(18 characters, any case and spacing) or a case or registration number (substring)",
    ),
) -> SearchAnswer:
    return answer(site, q)
