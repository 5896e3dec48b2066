"""What every route of the web app shares: the ``Site`` (database, snapshots directory,
redaction, templates) routes reach through ``SiteDep``, and the helpers that make a page safe
to show.

Every scraped value is escaped (Jinja2 autoescape); links to scraped URLs are only made for
http(s) URLs. Bidi controls (U+202E and the like), C0/C1 controls but tab and line breaks,
and the line and paragraph separators in any value shown are written as their code
(``\\u202e``, ``\\u0000``) and scraped values sit in ``<bdi>``: a name can neither reverse
the text around it nor hide what it says.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode, urlsplit

import jinja2
from fastapi import Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from markupsafe import Markup
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from alerts.links import DEFAULT_BASE_URL, base_url
from core.clock import SHANGHAI
from core.registry import ListDef, RegistryError, SourceDef, get_source, load_registry
from storage.asof import Vouch, run_date, vouching_runs
from storage.browse import status_counts
from web.i18n import DEFAULT, Translator, pick_language
from web.models import RunRef

HERE = Path(__file__).resolve().parent
PER_PAGE = 50
MAX_PER_PAGE = 500
# What a page writes as its code: bidi controls (embeddings, overrides, isolates and marks,
# U+061C, U+200E/F, U+202A-E, U+2066-9: shown raw, a scraped name could reverse the text after
# it), C0 and C1 controls (NUL, BEL, ESC ...; tab and line breaks are whitespace to HTML and
# stay), the line and paragraph separators, the BOM and the interlinear annotations.
HIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
    "\u2066-\u2069\ufeff\ufff9-\ufffb]"
)
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


@dataclass
class Site:
    """The app's state: one per ``create_app``, on ``app.state.site``."""

    engine: Engine
    snapshots_dir: Path
    redact: bool
    env: jinja2.Environment = field(default_factory=lambda: environment())
    counts: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)

    def counts_for(self, conn: Connection, lst: ListDef, vouch: Vouch) -> dict[str, int]:
        """A list's entries by status as a run left them (cached: a run's counts never
        change)."""
        key = (lst.id, vouch.run_id)
        if key not in self.counts:
            if len(self.counts) >= COUNTS_CACHE:
                self.counts.clear()
            self.counts[key] = status_counts(conn, lst, vouch)
        return self.counts[key]

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        lang = language(request)
        other = "en" if lang == "zh" else "zh"
        html = self.env.get_template(template).render(
            request=request,
            t=Translator(lang),
            lang=lang,
            other_lang=other,
            switch_url=with_params(request, lang=other),
            page_url=lambda **changes: with_params(request, **changes),
            redact=self.redact,
            **context,
        )
        return HTMLResponse(html, status_code=status_code)

    def error_response(
        self, request: Request, status: int, detail: Any, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Every error's answer: JSON under /api/, else the error page in the reader's
        language. The headers middleware (or, for an exception, ``crashed``) secures it."""
        if is_api(request):
            response: Response = JSONResponse({"detail": detail}, status_code=status)
        else:
            key, hint = error_texts(status)
            response = self.render(
                request,
                "error.html",
                status,
                key=key,
                hint=hint,
                status=status,
                detail=detail,
                # A 500's detail is already in the reader's language (``crashed``); others
                # are the routes' English, shown in full only in the English UI.
                detail_localised=status >= 500,
            )
        response.headers.update(headers or {})
        return response


ERROR_TITLES = {400: "bad_request", 403: "forbidden", 404: "not_found", 405: "ui_error_method"}
ERROR_HINTS = (400, 403, 404, 405, 422, 500)


def error_texts(status: int) -> tuple[str, str]:
    """The catalogue keys of an error page's title and of its explanation, by status: the
    routes' details are English, so the page leads with these."""
    if status >= 500:
        return "server_error", "ui_error_hint_500"
    title = ERROR_TITLES.get(status, "bad_request")
    return title, f"ui_error_hint_{status if status in ERROR_HINTS else 'other'}"


def site_of(request: Request) -> Site:
    return request.app.state.site  # type: ignore[no-any-return]


SiteDep = Annotated[Site, Depends(site_of)]


# -- templates ----------------------------------------------------------------------------------


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=shown,
    )
    env.filters["when"] = when_in_page
    env.filters["day"] = day
    env.filters["http_url"] = http_url
    env.filters["quote"] = lambda value: quote(str(value), safe=":")
    env.filters["pretty"] = lambda value: json.dumps(value, ensure_ascii=False, indent=1)
    env.filters["cell"] = cell
    env.filters["bdi"] = bdi
    env.filters["codes"] = codes
    env.globals["INSTANT_FIELDS"] = INSTANT_FIELDS
    return env


def visible(value: str) -> str:
    """``value`` with its bidi controls and other hidden characters (NUL, ESC, U+2028 ...)
    written as their code (``\\u202e``), as alert messages write them: seen, and unable to
    reorder, hide or break anything."""
    return HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", value)


def shown(value: Any) -> Any:
    """Every value a template writes (Jinja2's ``finalize``): text made ``visible``. Markup is
    the template's own doing (``bdi``) or, for an archived page's ``srcdoc``, meant exact."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return visible(value)
    return value


def bdi(value: Any) -> Markup:
    """A scraped value isolated in ``<bdi>``: right-to-left text in it stays inside it."""
    return Markup("<bdi>{}</bdi>").format(visible(str(value)))


def codes(value: Any) -> Markup:
    """Catalogue text with its `backticked` values (ids, parameter values, commands) as
    ``<code>``: set apart from the words around them, as a reader types them."""
    parts = str(value).split("`")
    return Markup("").join(
        Markup("<code>{}</code>").format(part) if i % 2 else Markup("{}").format(part)
        for i, part in enumerate(parts)
    )


def when(value: Any, lang: str = DEFAULT) -> Markup | str:
    """A stored instant as Beijing time, to the minute, its zone named in ``lang`` (北京时间,
    UTC+8), in a ``<time>`` that carries the exact instant."""
    if not value:
        return "—"
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        local = moment.astimezone(SHANGHAI)
    except (TypeError, ValueError, AttributeError):
        return str(value)  # not an instant: shown as stored rather than failing the page
    zone = Translator(lang)("ui_tz")
    return Markup('<time datetime="{}">{} {}</time>').format(
        local.isoformat(), local.strftime("%Y-%m-%d %H:%M"), zone
    )


@jinja2.pass_context
def when_in_page(context: Any, value: Any) -> Markup | str:
    """``when`` in the page's language (templates write ``{{ at | when }}``)."""
    return when(value, context.get("lang") or DEFAULT)


# Fields of records and events that hold instants (shown with ``when`` in field tables).
INSTANT_FIELDS = frozenset(
    {"first_seen", "last_seen", "listed_at", "delisted_at", "fetched_at", "at", "started_at"}
)


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


# -- requests -----------------------------------------------------------------------------------


def language(request: Request) -> str:
    return pick_language(request.query_params.get("lang"), request.cookies.get(LANG_COOKIE))


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


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


def public_base(request: Request) -> str:
    """Where readers reach this app, for absolute links (feeds): ``CREDITWATCH_BASE_URL``
    (set it behind a proxy, whose inner address the request shows), else the address the
    request came in on."""
    try:
        return base_url(None, fallback=str(request.base_url))
    except ValueError:  # a Host header that makes no address
        return base_url(None, fallback=DEFAULT_BASE_URL)


def parse_date(value: str | None, name: str) -> date | None:
    """A date parameter: empty (as GET forms send it) is none; anything but YYYY-MM-DD is 422."""
    if value is None or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(422, f"{name} takes a date, YYYY-MM-DD (got {value!r})") from None


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


# -- the registry -------------------------------------------------------------------------------


def registry() -> dict[str, SourceDef]:
    return {source_id: get_source(source_id) for source_id in load_registry()}


def vouches(conn: Connection, src: SourceDef) -> dict[str, Vouch]:
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
