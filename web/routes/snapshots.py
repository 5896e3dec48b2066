"""The snapshots directory: a page of snapshots and their manifests, their files as
downloads, and the same as JSON. Only direct subfolders holding a manifest are snapshots, and
only files their manifest names are served."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

from export.snapshots import MANIFEST
from web.models import SnapshotFile, SnapshotInfo
from web.site import DOWNLOAD_CSP, Site, SiteDep

SNAPSHOT_NAME_RE = re.compile(r"[^/\\\x00]+")

router = APIRouter()


def snapshots(site: Site) -> list[SnapshotInfo]:
    root = site.snapshots_dir
    if not root.is_dir():
        return []
    # Only what snapshot_dir serves: a symlink out of the directory is no snapshot here
    # (listing it would make the whole listing answer 404).
    return [
        snapshot_info(site, path.name) for path in sorted(root.iterdir()) if served(site, path.name)
    ]


def served(site: Site, name: str) -> bool:
    try:
        snapshot_dir(site, name)
    except HTTPException:
        return False
    return True


def snapshot_dir(site: Site, name: str) -> Path:
    """The snapshot directory called ``name``: a direct subfolder holding a manifest."""
    root = site.snapshots_dir.resolve()
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


def read_manifest(site: Site, name: str) -> dict[str, Any]:
    data = json.loads((snapshot_dir(site, name) / MANIFEST).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("files", []), list):
        raise ValueError("not a snapshot manifest")
    return data


def snapshot_info(site: Site, name: str) -> SnapshotInfo:
    base = f"/snapshots/{quote(name)}"
    try:
        manifest = read_manifest(site, name)
    except (OSError, ValueError) as exc:
        return SnapshotInfo(
            name=name, manifest_url=f"{base}/{MANIFEST}", downloadable=False, error=str(exc)
        )
    downloadable = not site.redact or manifest.get("redacted") is True
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


@router.get("/snapshots", response_class=HTMLResponse, include_in_schema=False)
def snapshots_page(request: Request, site: SiteDep) -> HTMLResponse:
    return site.render(
        request, "snapshots.html", snapshots=snapshots(site), directory=str(site.snapshots_dir)
    )


@router.get(
    "/snapshots/{name}/{file}",
    tags=["files"],
    summary="A file of a snapshot: manifest.json or a file its manifest names",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, 403: {}, 404: {}},
)
def snapshot_file(site: SiteDep, name: str, file: str) -> FileResponse:
    directory = snapshot_dir(site, name)
    if file == MANIFEST:
        return FileResponse(directory / MANIFEST, media_type="application/json")
    try:
        manifest = read_manifest(site, name)
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
    if site.redact and manifest.get("redacted") is not True:
        raise HTTPException(403, "unredacted snapshots are not offered while redacting")
    return FileResponse(
        path,
        filename=file,
        content_disposition_type="attachment",
        headers={"Content-Security-Policy": DOWNLOAD_CSP},
    )


@router.get(
    "/api/snapshots",
    tags=["api"],
    summary="The snapshots offered, each with its manifest and download URLs",
    response_model=list[SnapshotInfo],
)
def api_snapshots(site: SiteDep) -> list[SnapshotInfo]:
    return snapshots(site)
