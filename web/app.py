"""The read-only web app: ``creditwatch serve``.

Pages (server-rendered, no JavaScript, Chinese or English by ``lang``):

* ``/``: sources and their lists, with entries by status and the last healthy run;
* ``/lists/{list_id}``: a list's entries on a date (now by default), searched, filtered, paged;
* ``/entities/{entity_id}``: a subject's entries in every list and its events over time;
* ``/snapshots``: the snapshots of the snapshots directory, their manifests and files;
* ``/raw/{sha}``: an archived response as received, rendered inert under a banner;
* ``/feeds/{subscription}.atom``: a subscription's alerts as Atom;
* ``/api/...``: the same data as JSON, described by ``/openapi.json`` (and, without
  JavaScript, by the ``/api`` page).

Every scraped value is escaped (Jinja2 autoescape); links to scraped URLs are only made for
http(s) URLs. Bidi controls (U+202E and the like) in any value shown are written as their
code (``\\u202e``) and scraped values sit in ``<bdi>``: a name can neither reverse the text
around it nor hide what it says. Every response carries a strict Content-Security-Policy: no
script runs on any page. Every error (404, 403, 405, 422, NUL in the address: 400, and any
exception: 500) is answered by ``error_response`` with the same headers and no traceback.

With ``redact`` every route redacts (``core.redact``): lists, entity pages, search and
the JSON API show records and events redacted (persons and legal representatives shortened,
masked ID numbers dropped, persons' keys pseudonymous), persons' entities answer only at
their pseudonymous id, Atom feeds are redacted the same way (``alerts.feed``), archived
responses (``/raw/…``, page and bytes) are refused with 403 (a portal's page holds names and
numbers anywhere, so no rewriting of it could be trusted), and only snapshots whose manifest
says they are redacted offer their files.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import date as Date  # a field of RunRef is called `date`
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from pydantic import BaseModel, Field
from sqlalchemy import Engine
from sqlalchemy.engine import Connection
from starlette.exceptions import HTTPException as StarletteHTTPException

from alerts.feed import feed_document
from alerts.subscriptions import Subscription
from core.clock import SHANGHAI
from core.redact import PERSON, redact_entity, redact_record
from core.registry import ListDef, RegistryError, SourceDef, get_source, load_registry
from export.snapshots import MANIFEST, software_version
from storage.archive import NotArchived, get_response
from storage.asof import Vouch, run_date, vouching_runs
from storage.browse import (
    STATUS_FILTERS,
    EntryQuery,
    entity_for_pseudonym,
    entity_records,
    is_person,
    latest_run,
    list_entries,
    status_counts,
)
from storage.engine import data_dir, get_engine
from storage.entities import listing_summary, of_entity_id
from storage.outbox import subscription_rows
from web.i18n import LANGUAGES, Translator, pick_language

HERE = Path(__file__).resolve().parent
PER_PAGE = 50
MAX_PER_PAGE = 500
SHA_RE = re.compile(r"[0-9a-fA-F]{6,64}")
SNAPSHOT_NAME_RE = re.compile(r"[^/\\\x00]+")
# Bidi controls: embeddings, overrides, isolates and marks (U+061C, U+200E/F, U+202A-E,
# U+2066-9). Shown raw, a scraped name could reverse the text after it.
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
LANG_COOKIE = "lang"
COUNTS_CACHE = 4096

# No script anywhere; styles and images from the app only; forms submit to the app.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# The archived-response page: its iframe's srcdoc inherits this policy, so the archived page
# can neither run scripts nor fetch anything (inline styles are allowed for readability).
RAW_CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Bytes served as downloads: never rendered as a document of this origin.
DOWNLOAD_CSP = "default-src 'none'; sandbox"

API_DESCRIPTION = """\
Read-only JSON over the creditwatch database: sources and their lists, a list's entries on a
date (searched, filtered, paged), an entity's entries and events across lists, and the
snapshots offered for download. Records and events have the shape of docs/SCHEMA.md.

When the server redacts (`creditwatch serve --redact`), every record and event is redacted
like the snapshots (persons' and legal representatives' names shortened, masked ID numbers
dropped, persons' keys pseudonymised), persons' entities answer only at their pseudonymous
`entity_id`, Atom feeds (`/feeds/{id}.atom`) are redacted the same way, archived raw
responses are refused (403) and only redacted snapshots are offered.

Errors answer JSON `{"detail": ...}` with their status (400 for a NUL anywhere in the
address, 404, 405, 422, 500).
"""


# -- models of the JSON API ---------------------------------------------------------------------


class RunRef(BaseModel):
    """The run that vouches for a list's state: its last healthy run on or before the date."""

    run_id: str
    seq: int
    at: datetime = Field(description="the run's clock (UTC)")
    date: Date = Field(description="the date the run is filed under (Asia/Shanghai)")
    run_state: str = Field(description="the run's state (worst of its lists)")
    list_health: str = Field(description="the list's health in that run")


class LatestRun(BaseModel):
    run_id: str
    at: datetime | None
    state: str


class Counts(BaseModel):
    active: int = 0
    expired: int = 0
    removed: int = 0


class ListSummary(BaseModel):
    id: str = Field(description="full list id, <source>.<list>")
    short_id: str
    source: str
    name_zh: str
    name_en: str
    list_kind: str
    publication: str = Field(description="database or announcements")
    counts: Counts | None = Field(
        None, description="entries by status as the last healthy run left them"
    )
    last_healthy_run: RunRef | None = None
    url: str = Field(description="the list's page")


class SourceSummary(BaseModel):
    id: str
    name_zh: str
    name_en: str
    jurisdiction: str
    base_url: str
    latest_run: LatestRun | None = Field(None, description="the newest run, whatever its state")
    lists: list[ListSummary]


class EntryFilters(BaseModel):
    q: str | None = None
    status: str = ""
    decided_from: date | None = None
    decided_to: date | None = None
    as_of: date | None = None


class EntriesPage(BaseModel):
    list: ListSummary
    filters: EntryFilters
    run: RunRef | None = Field(None, description="None: no healthy run on or before as_of")
    total: int = Field(description="entries matching, on every page")
    page: int
    per_page: int
    pages: int
    redacted: bool
    entries: list[dict[str, Any]] = Field(description="records in the shape of SCHEMA.md")


class EntityAnswer(BaseModel):
    entity_id: str = Field(description="pseudonymous for persons when the server redacts")
    entity_name: str | None
    entity_type: str | None
    redacted: bool
    records: list[dict[str, Any]] = Field(
        description="the entity's entries in every list, current state, removed ones included"
    )
    events: list[dict[str, Any]] = Field(
        description="events in the shape of SCHEMA.md, oldest first"
    )
    listings: list[dict[str, Any]] = Field(
        [],
        description="every (source, list, record_key) the entity is or was on, across sources "
        "(same USCC, else same name key and jurisdiction): status now, listed and delisted "
        "dates, delisting cause and evidence",
    )


class SnapshotFile(BaseModel):
    path: str
    sha256: str | None = None
    bytes: int | None = None
    rows: int | None = None
    url: str | None = Field(None, description="download URL; None when withheld")


class SnapshotInfo(BaseModel):
    name: str
    manifest_url: str
    downloadable: bool = Field(description="False for unredacted snapshots on a redacting server")
    error: str | None = None
    manifest: dict[str, Any] | None = None
    files: list[SnapshotFile] = []


# -- the app ------------------------------------------------------------------------------------


@dataclass
class State:
    engine: Engine
    snapshots_dir: Path
    redact: bool
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def counts_for(self, conn: Connection, lst: ListDef, vouch: Vouch) -> dict[str, int]:
        key = (lst.id, vouch.run_id)
        if key not in self.counts:
            if len(self.counts) >= COUNTS_CACHE:
                self.counts.clear()
            self.counts[key] = status_counts(conn, lst, vouch)
        return self.counts[key]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=shown,
    )
    env.filters["when"] = when
    env.filters["day"] = day
    env.filters["http_url"] = http_url
    env.filters["quote"] = lambda value: quote(str(value), safe=":")
    env.filters["pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=1)
    env.filters["cell"] = cell
    env.filters["bdi"] = bdi
    return env


def visible(value: str) -> str:
    """``value`` with its bidi controls written as their code (``\\u202e``), as alert messages
    write them: seen, and unable to reorder anything."""
    return BIDI_CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def shown(value: Any) -> Any:
    """Every value a template writes (Jinja2's ``finalize``): text made ``visible``. Markup is
    the template's own doing (``bdi``) or, for an archived page's ``srcdoc``, meant exact."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def bdi(value: Any) -> Markup:
    """A scraped value isolated in ``<bdi>``: right-to-left text in it stays inside it."""
    return Markup("<bdi>{}</bdi>").format(visible(str(value)))


def when(value: Any) -> str:
    """A stored instant as Beijing time, to the minute."""
    if not value:
        return "—"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M +08")


def day(value: Any) -> str:
    if not value:
        return "—"
    return run_date(value).isoformat() if isinstance(value, datetime) else str(value)


def http_url(value: Any) -> str | None:
    """The URL when it is an http(s) URL (scraped links must not become javascript: links)."""
    if not isinstance(value, str):
        return None
    return value if urlsplit(value.strip()).scheme.lower() in ("http", "https") else None


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def create_app(
    *,
    database_url: str | None = None,
    snapshots_dir: Path | None = None,
    redact: bool = False,
) -> FastAPI:
    """The app over the database at ``database_url`` (default: ``DATABASE_URL``, else SQLite
    under ``CREDITWATCH_DATA_DIR``), offering the snapshots in ``snapshots_dir`` (default:
    ``<data dir>/snapshots``)."""
    state = State(
        engine=get_engine(database_url),
        snapshots_dir=Path(snapshots_dir) if snapshots_dir else data_dir() / "snapshots",
        redact=redact,
    )
    app = FastAPI(
        title="creditwatch",
        summary="Read-only access to China's public credit lists as creditwatch collected them.",
        description=API_DESCRIPTION,
        version=software_version(),
        docs_url=None,  # Swagger UI and ReDoc load scripts from a CDN: /api lists the API
        redoc_url=None,
        openapi_tags=[
            {"name": "api", "description": "JSON views of sources, lists, entities, snapshots"},
            {"name": "files", "description": "snapshot files, archived bodies and feeds"},
        ],
    )
    app.state.web = state
    env = _environment()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        if has_nul(request):  # no path or query of this app holds one; databases refuse them
            response = error_response(request, 400, "a NUL character (%00) in the address")
        else:
            response = await call_next(request)
        lang = request.query_params.get("lang")
        if lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return secure(response)

    def language(request: Request) -> str:
        return pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))

    def render(
        request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        lang = language(request)
        other = "en" if lang == "zh" else "zh"
        html = env.get_template(template).render(
            request=request,
            t=Translator(lang),
            lang=lang,
            other_lang=other,
            switch_url=with_params(request, lang=other),
            page_url=lambda **changes: with_params(request, **changes),
            redact=state.redact,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def is_api(request: Request) -> bool:
        return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"

    def error_response(
        request: Request, status: int, detail: Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Every error's answer: JSON under /api/, else the error page in the reader's
        language. The headers middleware (or, for an exception, ``crashed``) secures it."""
        if is_api(request):
            response: Response = JSONResponse({"detail": detail}, status_code=status)
        else:
            key = {404: "not_found", 403: "forbidden"}.get(status, "bad_request")
            if status >= 500:
                key = "server_error"
            response = render(request, "error.html", status, key=key, detail=detail)
        response.headers.update(headers or {})
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_response(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_api(request):
            return error_response(request, 422, jsonable_errors(exc))
        detail = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()
        )
        return error_response(request, 422, detail)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        """Any other exception: Starlette answers it outside every middleware (then logs it
        with its traceback), so this answer gets its headers here; it names nothing of it."""
        detail = Translator(language(request))("server_error_detail")
        try:
            response = error_response(request, 500, detail)
        except Exception:  # the error page itself failed: plain text, still secured
            response = PlainTextResponse(detail, status_code=500)
        return secure(response)

    # -- shared reads ---------------------------------------------------------------------------

    def source_summaries(conn: Connection) -> list[SourceSummary]:
        out = []
        for source_id in sorted(load_registry()):
            src = get_source(source_id)
            vouches = _vouches(conn, src)
            latest = latest_run(conn, src.id)
            out.append(
                SourceSummary(
                    id=src.id,
                    name_zh=src.name_zh,
                    name_en=src.name_en,
                    jurisdiction=src.jurisdiction,
                    base_url=src.base_url,
                    latest_run=LatestRun(
                        run_id=latest.run_id, at=latest.started_at, state=latest.state
                    )
                    if latest
                    else None,
                    lists=[list_summary(conn, src, lst, vouches.get(lst.id)) for lst in src.lists],
                )
            )
        return out

    def list_summary(
        conn: Connection, src: SourceDef, lst: ListDef, vouch: Vouch | None
    ) -> ListSummary:
        return ListSummary(
            id=lst.id,
            short_id=lst.short_id,
            source=src.id,
            name_zh=lst.name_zh,
            name_en=lst.name_en,
            list_kind=lst.list_kind,
            publication=lst.publication,
            counts=Counts(**state.counts_for(conn, lst, vouch)) if vouch else None,
            last_healthy_run=run_ref(vouch),
            url=f"/lists/{quote(lst.id)}",
        )

    def entries(
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
        with state.engine.connect() as conn:
            found = list_entries(
                conn,
                src.id,
                lst,
                as_of=filters.as_of,
                query=query,
                offset=(page - 1) * per_page,
                limit=per_page,
                transform=redact_record if state.redact else None,
            )
            now = _vouches(conn, src).get(lst.id)
            summary = list_summary(conn, src, lst, now)
        return EntriesPage(
            list=summary,
            filters=filters,
            run=run_ref(found.vouch),
            total=found.total,
            page=page,
            per_page=per_page,
            pages=max(1, math.ceil(found.total / per_page)),
            redacted=state.redact,
            entries=found.entries,
        )

    def entity(entity_id: str) -> EntityAnswer:
        with state.engine.connect() as conn:
            real = entity_id
            if state.redact and entity_id.startswith("redacted:"):
                real = entity_for_pseudonym(conn, entity_id) or ""
            own = entity_records(conn, real) if real else []
            if not own or (state.redact and is_person(own) and real == entity_id):
                # A person's entity answers only at its pseudonym while redacting.
                raise HTTPException(404, "no such entity")
            # The same organisation in every source: same USCC, else name + jurisdiction.
            found = of_entity_id(conn, real)
            records = [r for e in found for r in e.records]
            events = sorted(
                (ev for e in found for ev in e.events), key=lambda ev: (ev["at"], ev["event_id"])
            )
        person = is_person(records)
        # The entity is named by the entry asked for: its newest record.
        newest = max(
            (i for i, r in enumerate(records) if r["entity_id"] == real),
            key=lambda i: (records[i].get("last_seen") or "", records[i].get("list") or ""),
        )
        if state.redact:  # a company's too: its legal representatives are persons
            records, events = redact_entity(records, events)
        latest = records[newest]
        by_entry: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
        for ev in events:
            by_entry.setdefault((ev.get("list"), ev.get("record_key")), []).append(ev)
        listings = [
            listing_summary(r, by_entry.get((r.get("list"), r.get("record_key")), []))
            for r in records
        ]
        return EntityAnswer(
            entity_id=latest["entity_id"],
            entity_name=latest.get("entity_name"),
            entity_type=PERSON if person else latest.get("entity_type"),
            redacted=state.redact,
            records=records,
            events=events,
            listings=listings,
        )

    def snapshots() -> list[SnapshotInfo]:
        root = state.snapshots_dir
        if not root.is_dir():
            return []
        # Only what snapshot_dir serves: a symlink out of the directory is no snapshot here
        # (listing it would make the whole listing answer 404).
        return [snapshot_info(path.name) for path in sorted(root.iterdir()) if served(path.name)]

    def served(name: str) -> bool:
        try:
            snapshot_dir(name)
        except HTTPException:
            return False
        return True

    def snapshot_dir(name: str) -> Path:
        """The snapshot directory called ``name``: a direct subfolder holding a manifest."""
        root = state.snapshots_dir.resolve()
        if not SNAPSHOT_NAME_RE.fullmatch(name) or name in (".", ".."):
            raise HTTPException(404, "no such snapshot")
        try:  # a name the file system refuses (too long, say) names no snapshot either
            path = (root / name).resolve()
            found = path.parent == root and (path / MANIFEST).is_file()
        except OSError:
            found = False
        if not found:
            raise HTTPException(404, "no such snapshot")
        return path

    def read_manifest(name: str) -> dict[str, Any]:
        data = json.loads((snapshot_dir(name) / MANIFEST).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
            raise ValueError("not a snapshot manifest")
        return data

    def snapshot_info(name: str) -> SnapshotInfo:
        base = f"/snapshots/{quote(name)}"
        try:
            manifest = read_manifest(name)
        except (OSError, ValueError) as exc:
            return SnapshotInfo(
                name=name, manifest_url=f"{base}/{MANIFEST}", downloadable=False, error=str(exc)
            )
        downloadable = not state.redact or manifest.get("redacted") is True
        files = [
            SnapshotFile(
                path=str(item.get("path")),
                sha256=item.get("sha256"),
                bytes=item.get("bytes"),
                rows=item.get("rows"),
                url=f"{base}/{quote(str(item.get('path')))}" if downloadable else None,
            )
            for item in manifest.get("files", [])
            if isinstance(item, dict)
        ]
        return SnapshotInfo(
            name=name,
            manifest_url=f"{base}/{MANIFEST}",
            downloadable=downloadable,
            manifest=manifest,
            files=files,
        )

    # -- pages ----------------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        with state.engine.connect() as conn:
            sources = source_summaries(conn)
        return render(request, "index.html", sources=sources, registry=_registry())

    @app.get("/lists/{list_id}", response_class=HTMLResponse, include_in_schema=False)
    def list_page(
        request: Request,
        list_id: str,
        q: str | None = None,
        status: str = "",
        decided_from: str | None = Query(None, alias="from"),
        decided_to: str | None = Query(None, alias="to"),
        as_of: str | None = None,
        page: int = Query(1, ge=1),
    ) -> HTMLResponse:
        answer = entries(list_id, q, status, decided_from, decided_to, as_of, page, PER_PAGE)
        src, lst = find_list(list_id)
        return render(
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

    @app.get("/entities/{entity_id}", response_class=HTMLResponse, include_in_schema=False)
    def entity_page(request: Request, entity_id: str) -> HTMLResponse:
        answer = entity(entity_id)
        lists = {lst.id: lst for src in _registry().values() for lst in src.lists}
        return render(request, "entity.html", answer=answer, lists=lists)

    @app.get("/snapshots", response_class=HTMLResponse, include_in_schema=False)
    def snapshots_page(request: Request) -> HTMLResponse:
        return render(
            request,
            "snapshots.html",
            snapshots=snapshots(),
            directory=str(state.snapshots_dir),
        )

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api_page(request: Request) -> HTMLResponse:
        schema = app.openapi()
        return render(request, "api.html", schema=schema)

    @app.get("/raw/{sha}", response_class=HTMLResponse, include_in_schema=False)
    def raw_page(request: Request, sha: str, view: str = "page") -> HTMLResponse:
        response = archived(sha)
        content_type = response.content_type or ""
        kind = body_kind(content_type, response.body)
        text = response.text() if kind != "binary" else ""
        page = render(
            request,
            "raw.html",
            response=response,
            content_type=content_type,
            kind=kind,
            view="source" if view == "source" or kind == "text" else "page",
            text=text,
            size=len(response.body),
        )
        page.headers["Content-Security-Policy"] = RAW_CSP
        return page

    # -- files ----------------------------------------------------------------------------------

    @app.get(
        "/raw/{sha}/body",
        tags=["files"],
        summary="An archived response body, the exact bytes received, as a download",
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}, 403: {}, 404: {}},
    )
    def raw_body(sha: str) -> Response:
        response = archived(sha)
        content_type = response.content_type or "application/octet-stream"
        return Response(
            response.body,
            media_type=content_type,
            headers={
                "Content-Disposition": f'attachment; filename="{response.sha256}.bin"',
                "Content-Security-Policy": DOWNLOAD_CSP,
            },
        )

    @app.get(
        "/snapshots/{name}/{file}",
        tags=["files"],
        summary="A file of a snapshot: manifest.json or a file its manifest names",
        response_class=FileResponse,
        responses={200: {"content": {"application/octet-stream": {}}}, 403: {}, 404: {}},
    )
    def snapshot_file(name: str, file: str) -> FileResponse:
        directory = snapshot_dir(name)
        if file == MANIFEST:
            return FileResponse(directory / MANIFEST, media_type="application/json")
        try:
            manifest = read_manifest(name)
        except (OSError, ValueError):
            raise HTTPException(404, "the snapshot's manifest is unreadable") from None
        named = {str(item.get("path")) for item in manifest["files"] if isinstance(item, dict)}
        if file not in named or not SNAPSHOT_NAME_RE.fullmatch(file) or file in (".", ".."):
            raise HTTPException(404, "no such file in this snapshot")
        try:
            path = (directory / file).resolve()
            found = path.parent == directory and path.is_file()
        except OSError:
            found = False
        if not found:
            raise HTTPException(404, "no such file in this snapshot")
        if state.redact and manifest.get("redacted") is not True:
            raise HTTPException(403, "unredacted snapshots are not offered while redacting")
        return FileResponse(
            path,
            filename=file,
            content_disposition_type="attachment",
            headers={"Content-Security-Policy": DOWNLOAD_CSP},
        )

    @app.get(
        "/feeds/{subscription_id}.atom",
        tags=["files"],
        summary="A subscription's alerts as an Atom feed, newest first",
        description="As the subscription's channels were told them; redacted like every "
        "page when the server redacts.",
        response_class=Response,
        responses={200: {"content": {"application/atom+xml": {}}}, 404: {}},
    )
    def feed(subscription_id: str) -> Response:
        with state.engine.connect() as conn:
            row = next((r for r in subscription_rows(conn) if r.id == subscription_id), None)
            if row is None:
                raise HTTPException(404, "no such subscription")
            subscription = Subscription.from_dict(row.data)
            document = feed_document(conn, subscription, redact=state.redact)
        return Response(document, media_type="application/atom+xml")

    # -- JSON API -------------------------------------------------------------------------------

    @app.get(
        "/api/sources",
        tags=["api"],
        summary="Sources and their lists, with entries by status and the last healthy run",
        response_model=list[SourceSummary],
    )
    def api_sources() -> list[SourceSummary]:
        with state.engine.connect() as conn:
            return source_summaries(conn)

    @app.get(
        "/api/lists/{list_id}/entries",
        tags=["api"],
        summary="A list's entries on a date (now by default): searched, filtered, paged",
        response_model=EntriesPage,
    )
    def api_entries(
        list_id: str,
        q: str | None = Query(None, description="name, USCC or case number (substring)"),
        status: str = Query(
            "", description="'' (active and expired), active, expired, removed or all"
        ),
        decided_from: str | None = Query(
            None, alias="from", description="decided_on ≥, YYYY-MM-DD"
        ),
        decided_to: str | None = Query(None, alias="to", description="decided_on ≤, YYYY-MM-DD"),
        as_of: str | None = Query(None, description="the list on this date, YYYY-MM-DD"),
        page: int = Query(1, ge=1),
        per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
    ) -> EntriesPage:
        return entries(list_id, q, status, decided_from, decided_to, as_of, page, per_page)

    @app.get(
        "/api/entities/{entity_id}",
        tags=["api"],
        summary="An entity's entries in every list and its events over time",
        response_model=EntityAnswer,
    )
    def api_entity(entity_id: str) -> EntityAnswer:
        return entity(entity_id)

    @app.get(
        "/api/snapshots",
        tags=["api"],
        summary="The snapshots offered, each with its manifest and download URLs",
        response_model=list[SnapshotInfo],
    )
    def api_snapshots() -> list[SnapshotInfo]:
        return snapshots()

    def archived(sha: str) -> Any:
        if not SHA_RE.fullmatch(sha):
            raise HTTPException(404, "give 6 to 64 hex digits of a sha256")
        if state.redact:
            raise HTTPException(
                403,
                "archived raw responses are not served while redacting: they contain "
                "persons' full names and ID numbers",
            )
        try:
            with state.engine.connect() as conn:
                return get_response(conn, sha)
        except NotArchived as exc:
            raise HTTPException(404, str(exc)) from None

    return app


# -- helpers ------------------------------------------------------------------------------------


def _registry() -> dict[str, SourceDef]:
    return {source_id: get_source(source_id) for source_id in load_registry()}


def _vouches(conn: Connection, src: SourceDef) -> dict[str, Vouch]:
    return vouching_runs(conn, src.id, src.list_ids)


def find_list(list_id: str) -> tuple[SourceDef, ListDef]:
    source_id = list_id.split(".", 1)[0]
    try:
        src = get_source(source_id)
    except RegistryError:
        raise HTTPException(404, f"no list {list_id!r}") from None
    for lst in src.lists:
        if lst.id == list_id:
            return src, lst
    raise HTTPException(404, f"no list {list_id!r}")


def run_ref(vouch: Vouch | None) -> RunRef | None:
    if vouch is None:
        return None
    return RunRef(
        run_id=vouch.run_id,
        seq=vouch.seq,
        at=vouch.at,
        date=run_date(vouch.at),
        run_state=vouch.run_state,
        list_health=vouch.health,
    )


def parse_date(value: str | None, name: str) -> date | None:
    """A date parameter: empty (as GET forms send it) is none; anything but YYYY-MM-DD is 422."""
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(422, f"{name} takes a date, YYYY-MM-DD (got {value!r})") from None


def with_params(request: Request, **changes: Any) -> str:
    """This page's path and query with some parameters replaced (None removes one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    # The path as a URL again: decoded, a %3F or %23 in it would start a query or fragment.
    return quote(request.url.path, safe="/:@!$&'()*+,;=~") + (f"?{query}" if query else "")


def secure(response: Response) -> Response:
    """The headers of every answer, error or not (a route may have set a stricter policy)."""
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Vary", "Cookie")  # the language comes from a cookie
    return response


def has_nul(request: Request) -> bool:
    """A NUL anywhere in the decoded path or query (PostgreSQL refuses it in text, file
    systems in names: better refused here, the same way on every route)."""
    if "\x00" in request.url.path:
        return True
    return any(
        "\x00" in key or "\x00" in value for key, value in request.query_params.multi_items()
    )


def jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
        for e in exc.errors()
    ]


def body_kind(content_type: str, body: bytes) -> str:
    """``html``, ``text`` (shown as escaped text) or ``binary`` (offered as a download)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if "html" in kind or (not kind and body.lstrip()[:1] == b"<"):
        return "html"
    if kind.startswith("text/") or kind.endswith(("json", "xml", "javascript")):
        return "text"
    return "binary"


def serve(*, host: str, port: int, snapshots_dir: Path | None, redact: bool) -> None:
    """Serve the app with uvicorn until interrupted (``creditwatch serve``)."""
    import uvicorn

    app = create_app(snapshots_dir=snapshots_dir, redact=redact)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
