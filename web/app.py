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

Each group of routes is a module of ``web/routes`` sharing ``web.site`` (the ``Site``
state, templates and the helpers that make scraped values safe to show). Every response
carries a strict Content-Security-Policy: no script runs on any page. Every error (404, 403,
405, 422, NUL in the address: 400, and any exception: 500) is answered by
``Site.error_response`` with the same headers and no traceback.

With ``redact`` every route redacts (``core.redact``): lists, entity pages, search and
the JSON API show records and events redacted (persons and legal representatives shortened,
masked ID numbers dropped, persons' keys pseudonymous), persons' entities answer only at
their pseudonymous id, Atom feeds are redacted the same way (``alerts.feed``), archived
responses (``/raw/…``, page and bytes) are refused with 403 (a portal's page holds names and
numbers anywhere, so no rewriting of it could be trusted), and only snapshots whose manifest
says they are redacted offer their files.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from export.snapshots import software_version
from storage.engine import data_dir, get_engine
from web.i18n import LANGUAGES, Translator
from web.routes import archive, changes, charts, entities, feeds, lists, search, snapshots
from web.site import (
    CSP,
    HERE,
    LANG_COOKIE,
    RAW_CSP,
    Site,
    SiteDep,
    has_nul,
    http_url,
    is_api,
    jsonable_errors,
    language,
    secure,
)

__all__ = ["CSP", "RAW_CSP", "create_app", "http_url", "serve"]
ROUTERS = (
    lists.router,
    entities.router,
    snapshots.router,
    archive.router,
    feeds.router,
    changes.router,
    search.router,
    charts.router,
)

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


def create_app(
    *,
    database_url: str | None = None,
    snapshots_dir: Path | None = None,
    redact: bool = False,
) -> FastAPI:
    """The app over the database at ``database_url`` (default: ``DATABASE_URL``, else SQLite
    under ``CREDITWATCH_DATA_DIR``), offering the snapshots in ``snapshots_dir`` (default:
    ``<data dir>/snapshots``)."""
    site = Site(
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
    app.state.site = site
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/api", response_class=HTMLResponse, include_in_schema=False)
    def api_page(request: Request, site: SiteDep) -> HTMLResponse:
        return site.render(request, "api.html", schema=app.openapi())

    @app.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Any:
        if has_nul(request):  # no path or query of this app holds one; databases refuse them
            response = site.error_response(request, 400, "a NUL character (%00) in the address")
        else:
            response = await call_next(request)
        lang = request.query_params.get("lang")
        if lang in LANGUAGES:
            response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, samesite="lax")
        return secure(response)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return site.error_response(request, exc.status_code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        if is_api(request):
            return site.error_response(request, 422, jsonable_errors(exc))
        detail = "; ".join(
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg')}" for e in exc.errors()
        )
        return site.error_response(request, 422, detail)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> Response:
        """Any other exception: Starlette answers it outside every middleware (then logs it
        with its traceback), so this answer gets its headers here; it names nothing of it."""
        detail = Translator(language(request))("server_error_detail")
        try:
            response = site.error_response(request, 500, detail)
        except Exception:  # the error page itself failed: plain text, still secured
            response = PlainTextResponse(detail, status_code=500)
        return secure(response)

    return app


def serve(*, host: str, port: int, snapshots_dir: Path | None, redact: bool) -> None:
    """Serve the app with uvicorn until interrupted (``creditwatch serve``)."""
    import uvicorn

    app = create_app(snapshots_dir=snapshots_dir, redact=redact)
    uvicorn.run(app, host=host, port=port, log_level="info", proxy_headers=False)
