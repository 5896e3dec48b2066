"""Sources and lists: the index page, a list's entries on a date (with the columns its
entries fill, sortable), the same as CSV, and their JSON."""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse
from sqlalchemy.engine import Connection

from core.redact import redact_record
from core.registry import ListDef, SourceDef, get_source, load_registry
from export.formats import write_csv
from storage.asof import Vouch
from storage.browse import (
    COLUMNS,
    SORT_DEPTH,
    STATUS_FILTERS,
    EntryQuery,
    column_value,
    latest_run,
    list_entries,
    matching_entries,
)
from web.chartviews import list_view
from web.i18n import Translator
from web.models import Counts, EntriesPage, EntryFilters, LatestRun, ListSummary, SourceSummary
from web.site import (
    DOWNLOAD_CSP,
    MAX_PER_PAGE,
    PER_PAGE,
    Site,
    SiteDep,
    find_list,
    language,
    parse_date,
    registry,
    run_ref,
    vouches,
)

DIRECTIONS = ("asc", "desc")
# A column of the page and the record fields it is in a CSV (the code as validated, and as
# published when it failed its check).
CSV_FIELDS = {"uscc": ("uscc", "uscc_raw")}
CSV_KEYS = ("record_key", "entity_id")  # to join the download with snapshots and the API
CHUNK = 1 << 16
SPOOL = 8 << 20  # a download is kept in memory up to this size, then on disk

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


@dataclass(frozen=True)
class View:
    """What a list page, its CSV and its JSON are asked: the list, filters, order."""

    source: SourceDef
    lst: ListDef
    filters: EntryFilters
    sort: str | None = None
    descending: bool = False

    @property
    def query(self) -> EntryQuery:
        f = self.filters
        return EntryQuery(f.q, f.status, f.decided_from, f.decided_to)


def view(
    list_id: str,
    q: str | None = Query(None, description="name, USCC or case number (substring)"),
    status: str = Query("", description="'' (active and expired), active, expired, removed or all"),
    decided_from: str | None = Query(None, alias="from", description="decided_on ≥, YYYY-MM-DD"),
    decided_to: str | None = Query(None, alias="to", description="decided_on ≤, YYYY-MM-DD"),
    as_of: str | None = Query(None, description="the list on this date, YYYY-MM-DD"),
    sort: str | None = Query(
        None, description=f"a field to sort by ({', '.join(COLUMNS)}); record_key otherwise"
    ),
    direction: str | None = Query(None, alias="dir", description="asc (default) or desc"),
) -> View:
    """The view's parameters, checked (a FastAPI dependency of the page, its CSV and its
    JSON): 404 for an unknown list, 422 for anything else wrong."""
    src, lst = find_list(list_id)
    if status not in STATUS_FILTERS:
        raise HTTPException(422, f"status must be one of {', '.join(STATUS_FILTERS[1:])}")
    sort = (sort or "").strip() or None
    if sort is not None and sort not in COLUMNS:
        raise HTTPException(422, f"sort takes a column: {', '.join(COLUMNS)}")
    direction = (direction or "").strip() or "asc"
    if direction not in DIRECTIONS:
        raise HTTPException(422, "dir takes asc or desc")
    filters = EntryFilters(
        q=(q or "").strip() or None,
        status=status,
        decided_from=parse_date(decided_from, "from"),
        decided_to=parse_date(decided_to, "to"),
        as_of=parse_date(as_of, "as_of"),
    )
    return View(src, lst, filters, sort, direction == "desc")


AskedView = Annotated[View, Depends(view)]


def day_or_empty(value: date | None) -> str:
    return value.isoformat() if value else ""


@dataclass
class Shown:
    """A page of entries and the columns the whole matching view fills."""

    page: EntriesPage
    columns: list[str] = field(default_factory=list)


def entries(site: Site, asked: View, page: int, per_page: int) -> Shown:
    src, lst, filters = asked.source, asked.lst, asked.filters
    with site.engine.connect() as conn:
        try:
            found = list_entries(
                conn,
                src.id,
                lst,
                as_of=filters.as_of,
                query=asked.query,
                offset=(page - 1) * per_page,
                limit=per_page,
                transform=redact_record if site.redact else None,
                sort=asked.sort,
                descending=asked.descending,
            )
        except ValueError as exc:  # a sorted page too deep
            raise HTTPException(422, str(exc)) from None
        # The list as it stood on the date asked: its counts are those of the run that
        # vouches for that date, not today's.
        vouch = found.vouch if filters.as_of else vouches(conn, src).get(lst.id)
        summary = list_summary(site, conn, src, lst, vouch)
    answer = EntriesPage(
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
    return Shown(answer, found.columns)


def money(t: Translator, value: Any) -> str:
    """A sum in yuan as a reader writes it: 5万元 and 3,200元 in Chinese, 50,000 yuan in
    English."""
    try:
        amount = float(value)
    except (TypeError, ValueError):
        return str(value)
    if t.lang == "zh" and abs(amount) >= 10_000 and amount % 100 == 0:
        return t("lists_wan_yuan", n=f"{amount / 10_000:,.4g}")
    text = f"{amount:,.2f}".removesuffix(".00")
    return t("lists_yuan", n=text)


def view_url(path: str, asked: View, **changes: str | None) -> str:
    """A URL of the view, its parameters in one order and the page left out: sort links and
    the download, as few distinct URLs as there are distinct views (the language rides on
    its cookie)."""
    f = asked.filters
    params: dict[str, Any] = {
        "q": f.q,
        "status": f.status,
        "from": f.decided_from,
        "to": f.decided_to,
        "as_of": f.as_of,
        "sort": asked.sort,
        "dir": "desc" if asked.descending else None,
    }
    params.update(changes)
    query = urlencode({k: str(v) for k, v in params.items() if v})
    return path + (f"?{query}" if query else "")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index(request: Request, site: SiteDep) -> HTMLResponse:
    with site.engine.connect() as conn:
        sources = source_summaries(site, conn)
    return site.render(request, "index.html", sources=sources, registry=registry())


@router.get(
    "/lists/{list_id}.csv",
    tags=["files"],
    summary="A list's view (the filters and order of its page) as CSV, for spreadsheets",
    response_class=StreamingResponse,
)
def list_csv(request: Request, site: SiteDep, asked: AskedView) -> StreamingResponse:
    """UTF-8 with a byte-order mark (Excel reads it as UTF-8), the page's columns headed in
    the reader's language with their keys, formula-like cells neutralised as in snapshots
    (``export.formats``), redacted when the server redacts. Unsorted, the whole view is
    written (spooled to disk past a few megabytes); sorted, at most ``SORT_DEPTH`` rows."""
    t = Translator(language(request))
    transform = redact_record if site.redact else None
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL)  # noqa: SIM115 - closed by stream()
    try:
        with site.engine.connect() as conn:
            if asked.sort is not None:
                found = list_entries(
                    conn,
                    asked.source.id,
                    asked.lst,
                    as_of=asked.filters.as_of,
                    query=asked.query,
                    limit=SORT_DEPTH,
                    transform=transform,
                    sort=asked.sort,
                    descending=asked.descending,
                )
                if found.total > SORT_DEPTH:
                    raise HTTPException(
                        422,
                        f"a sorted download holds {SORT_DEPTH} entries at most ({found.total} "
                        "match): download it unsorted, or narrow the filters",
                    )
                rows: Iterable[dict[str, Any]] = found.entries
            else:  # one pass for the columns, one to write
                found = list_entries(
                    conn,
                    asked.source.id,
                    asked.lst,
                    as_of=asked.filters.as_of,
                    query=asked.query,
                    limit=0,
                    transform=transform,
                )
                rows = (
                    matching_entries(conn, asked.lst, found.vouch, asked.query, transform)
                    if found.vouch
                    else ()
                )
            write_view(spool, t, found.columns, rows)
    except BaseException:
        spool.close()
        raise
    name = asked.lst.id + (f"-{asked.filters.as_of.isoformat()}" if asked.filters.as_of else "")
    return StreamingResponse(
        stream(spool),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.csv"',
            "Content-Security-Policy": DOWNLOAD_CSP,
        },
    )


def write_view(out: Any, t: Translator, columns: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """The rows as CSV into the binary file ``out``, headed ``label (key)``."""
    keys = [k for c in columns for k in CSV_FIELDS.get(c, (c,))] + list(CSV_KEYS)
    headers = {key: f"{t.field(key)} ({key})" for key in keys}
    text = io.TextIOWrapper(out, encoding="utf-8-sig", newline="")
    write_csv(
        ({headers[k]: row.get(k) for k in keys} for row in rows),
        text,
        tuple(headers.values()),
    )
    text.flush()
    text.detach()
    out.seek(0)


def stream(spool: Any) -> Iterator[bytes]:
    with spool:
        while chunk := spool.read(CHUNK):
            yield chunk


@router.get("/lists/{list_id}", response_class=HTMLResponse, include_in_schema=False)
def list_page(
    request: Request, site: SiteDep, asked: AskedView, page: int = Query(1, ge=1)
) -> HTMLResponse:
    shown = entries(site, asked, page, PER_PAGE)
    t = Translator(language(request))
    return site.render(
        request,
        "list.html",
        answer=shown.page,
        columns=shown.columns,
        value=column_value,
        money=lambda amount: money(t, amount),
        sort=asked.sort,
        direction="desc" if asked.descending else "asc",
        csv_url=view_url(f"/lists/{quote(asked.lst.id)}.csv", asked),
        sort_url=lambda column, descending: view_url(
            f"/lists/{quote(asked.lst.id)}", asked, sort=column, dir="desc" if descending else None
        ),
        source=asked.source,
        lst=asked.lst,
        charts=list_view(request, asked.source, asked.lst),
        form={
            "q": asked.filters.q or "",
            "status": asked.filters.status,
            "from": day_or_empty(asked.filters.decided_from),
            "to": day_or_empty(asked.filters.decided_to),
            "as_of": day_or_empty(asked.filters.as_of),
            "sort": asked.sort or "",
            "dir": "desc" if asked.descending else "",
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
    summary="A list's entries on a date (now by default): searched, filtered, sorted, paged; "
    "with as_of, the list's counts are those of that date",
    response_model=EntriesPage,
)
def api_entries(
    site: SiteDep,
    asked: AskedView,
    page: int = Query(1, ge=1),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
) -> EntriesPage:
    return entries(site, asked, page, per_page).page
