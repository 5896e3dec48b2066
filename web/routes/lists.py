"""Sources and lists: the index page, a list's entries on a date, and their JSON."""

from __future__ import annotations

import math
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.engine import Connection

from core.redact import redact_record
from core.registry import ListDef, SourceDef, get_source, load_registry
from storage.asof import Vouch
from storage.browse import STATUS_FILTERS, EntryQuery, latest_run, list_entries
from web.models import Counts, EntriesPage, EntryFilters, LatestRun, ListSummary, SourceSummary
from web.site import (
    MAX_PER_PAGE,
    PER_PAGE,
    Site,
    SiteDep,
    find_list,
    parse_date,
    registry,
    run_ref,
    vouches,
)

router = APIRouter()


def source_summaries(site: Site, conn: Connection) -> list[SourceSummary]:
    out = []
    for source_id in sorted(load_registry()):
        src = get_source(source_id)
        vouched = vouches(conn, src)
        latest = latest_run(conn, src.id)
        out.append(
            SourceSummary(
                id=src.id,
                name_zh=src.name_zh,
                name_en=src.name_en,
                jurisdiction=src.jurisdiction,
                base_url=src.base_url,
                latest_run=LatestRun(run_id=latest.run_id, at=latest.started_at, state=latest.state)
                if latest
                else None,
                lists=[
                    list_summary(site, conn, src, lst, vouched.get(lst.id)) for lst in src.lists
                ],
            )
        )
    return out


def list_summary(
    site: Site, conn: Connection, src: SourceDef, lst: ListDef, vouch: Vouch | None
) -> ListSummary:
    return ListSummary(
        id=lst.id,
        short_id=lst.short_id,
        source=src.id,
        name_zh=lst.name_zh,
        name_en=lst.name_en,
        list_kind=lst.list_kind,
        publication=lst.publication,
        counts=Counts(**site.counts_for(conn, lst, vouch)) if vouch else None,
        last_healthy_run=run_ref(vouch),
        url=f"/lists/{quote(lst.id)}",
    )


def entries(
    site: Site,
    list_id: str,
    q: str | None,
    status: str,
    decided_from: str | None,
    decided_to: str | None,
    as_of: str | None,
    page: int,
    per_page: int,
) -> EntriesPage:
    src, lst = find_list(list_id)
    if status not in STATUS_FILTERS:
        raise HTTPException(422, f"status must be one of {', '.join(STATUS_FILTERS[1:])}")
    filters = EntryFilters(
        q=(q or "").strip() or None,
        status=status,
        decided_from=parse_date(decided_from, "from"),
        decided_to=parse_date(decided_to, "to"),
        as_of=parse_date(as_of, "as_of"),
    )
    query = EntryQuery(filters.q, status, filters.decided_from, filters.decided_to)
    with site.engine.connect() as conn:
        found = list_entries(
            conn,
            src.id,
            lst,
            as_of=filters.as_of,
            query=query,
            offset=(page - 1) * per_page,
            limit=per_page,
            transform=redact_record if site.redact else None,
        )
        now = vouches(conn, src).get(lst.id)
        summary = list_summary(site, conn, src, lst, now)
    return EntriesPage(
        list=summary,
        filters=filters,
        run=run_ref(found.vouch),
        total=found.total,
        page=page,
        per_page=per_page,
        pages=max(1, math.ceil(found.total / per_page)),
        redacted=site.redact,
        entries=found.entries,
    )


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request, site: SiteDep) -> HTMLResponse:
    with site.engine.connect() as conn:
        sources = source_summaries(site, conn)
    return site.render(request, "index.html", sources=sources, registry=registry())


@router.get("/lists/{list_id}", response_class=HTMLResponse, include_in_schema=False)
def list_page(
    request: Request,
    site: SiteDep,
    list_id: str,
    q: str | None = None,
    status: str = "",
    decided_from: str | None = Query(None, alias="from"),
    decided_to: str | None = Query(None, alias="to"),
    as_of: str | None = None,
    page: int = Query(1, ge=1),
) -> HTMLResponse:
    answer = entries(site, list_id, q, status, decided_from, decided_to, as_of, page, PER_PAGE)
    src, lst = find_list(list_id)
    return site.render(
        request,
        "list.html",
        answer=answer,
        source=src,
        lst=lst,
        form={
            "q": q or "",
            "status": status,
            "from": decided_from or "",
            "to": decided_to or "",
            "as_of": as_of or "",
        },
        statuses=STATUS_FILTERS,
    )


@router.get(
    "/api/sources",
    tags=["api"],
    summary="Sources and their lists, with entries by status and the last healthy run",
    response_model=list[SourceSummary],
)
def api_sources(site: SiteDep) -> list[SourceSummary]:
    with site.engine.connect() as conn:
        return source_summaries(site, conn)


@router.get(
    "/api/lists/{list_id}/entries",
    tags=["api"],
    summary="A list's entries on a date (now by default): searched, filtered, paged",
    response_model=EntriesPage,
)
def api_entries(
    site: SiteDep,
    list_id: str,
    q: str | None = Query(None, description="name, USCC or case number (substring)"),
    status: str = Query("", description="'' (active and expired), active, expired, removed or all"),
    decided_from: str | None = Query(None, alias="from", description="decided_on ≥, YYYY-MM-DD"),
    decided_to: str | None = Query(None, alias="to", description="decided_on ≤, YYYY-MM-DD"),
    as_of: str | None = Query(None, description="the list on this date, YYYY-MM-DD"),
    page: int = Query(1, ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
) -> EntriesPage:
    return entries(site, list_id, q, status, decided_from, decided_to, as_of, page, per_page)
