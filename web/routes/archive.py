"""Archived responses as received: a page that shows one inert under a banner, and its exact
bytes as a download. Refused while redacting: a portal's page holds names and numbers
anywhere, so no rewriting of it could be trusted."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse

from storage.archive import NotArchived, get_response
from web.site import DOWNLOAD_CSP, RAW_CSP, Site, SiteDep

SHA_RE = re.compile(r"[0-9a-fA-F]{6,64}")

router = APIRouter()


def archived(site: Site, sha: str) -> Any:
    if not SHA_RE.fullmatch(sha):
        raise HTTPException(404, "give 6 to 64 hex digits of a sha256")
    if site.redact:
        raise HTTPException(
            403,
            "archived raw responses are not served while redacting: they contain "
            "persons' full names and ID numbers",
        )
    try:
        with site.engine.connect() as conn:
            return get_response(conn, sha)
    except NotArchived as exc:
        raise HTTPException(404, str(exc)) from None


def body_kind(content_type: str, body: bytes) -> str:
    """``html``, ``text`` (shown as escaped text) or ``binary`` (offered as a download)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    if "html" in kind or (not kind and body.lstrip()[:1] == b"<"):
        return "html"
    if kind.startswith("text/") or kind.endswith(("json", "xml", "javascript")):
        return "text"
    return "binary"


@router.get("/raw/{sha}", response_class=HTMLResponse, include_in_schema=False)
def raw_page(request: Request, site: SiteDep, sha: str, view: str = "page") -> HTMLResponse:
    response = archived(site, sha)
    content_type = response.content_type or ""
    kind = body_kind(content_type, response.body)
    text = response.text() if kind != "binary" else ""
    page = site.render(
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


@router.get(
    "/raw/{sha}/body",
    tags=["files"],
    summary="An archived response body, the exact bytes received, as a download",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}, 403: {}, 404: {}},
)
def raw_body(site: SiteDep, sha: str) -> Response:
    response = archived(site, sha)
    content_type = response.content_type or "application/octet-stream"
    return Response(
        response.body,
        media_type=content_type,
        headers={
            "Content-Disposition": f'attachment; filename="{response.sha256}.bin"',
            "Content-Security-Policy": DOWNLOAD_CSP,
        },
    )
