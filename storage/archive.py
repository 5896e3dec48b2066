"""The raw archive: every response body stored once by its sha256, gzip-compressed, with a
row per response received (URL, method, status, headers, fetch time)."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from w3lib.encoding import html_to_unicode

from storage.models import RawBody, RawResponse, table_of

BODIES = table_of(RawBody)
RESPONSES = table_of(RawResponse)


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def body_row(body: bytes, sha256: str | None = None) -> dict[str, object]:
    # mtime=0 keeps the compressed bytes a pure function of the body.
    return {
        "sha256": sha256 or body_sha256(body),
        "size": len(body),
        "compression": "gzip",
        "data": gzip.compress(body, mtime=0),
    }


@dataclass(frozen=True)
class ArchivedResponse:
    sha256: str
    url: str
    method: str
    status: int
    headers: list[list[str]]
    fetched_at: datetime | None
    run_id: str
    body: bytes

    @property
    def content_type(self) -> str | None:
        return next((v for n, v in self.headers if n.lower() == "content-type"), None)

    def text(self) -> str:
        """The body as text, in the charset the response declared (header or ``<meta>``)."""
        _, text = html_to_unicode(self.content_type, self.body)
        return text


class NotArchived(LookupError):
    pass


def find_sha(conn: Connection, prefix: str) -> str:
    """Resolve a full or abbreviated sha256 (at least 6 hex digits), like git does."""
    prefix = prefix.strip().lower()
    if len(prefix) < 6:
        raise NotArchived("give at least 6 hex digits of the sha256")
    shas = (
        conn.execute(select(BODIES.c.sha256).where(BODIES.c.sha256.like(f"{prefix}%")).limit(2))
        .scalars()
        .all()
    )
    if not shas:
        raise NotArchived(f"no archived response with sha256 {prefix}…")
    if len(shas) > 1:
        raise NotArchived(f"sha256 prefix {prefix} is ambiguous")
    return shas[0]


def get_response(conn: Connection, sha_or_prefix: str) -> ArchivedResponse:
    """The most recent response whose body has this hash, with its body decompressed."""
    sha = find_sha(conn, sha_or_prefix)
    body = conn.execute(select(BODIES).where(BODIES.c.sha256 == sha)).one()
    meta = conn.execute(
        select(RESPONSES).where(RESPONSES.c.sha256 == sha).order_by(RESPONSES.c.id.desc()).limit(1)
    ).one()
    data = gzip.decompress(body.data) if body.compression == "gzip" else body.data
    return ArchivedResponse(
        sha256=sha,
        url=meta.url,
        method=meta.method,
        status=meta.status,
        headers=meta.headers or [],
        fetched_at=meta.fetched_at,
        run_id=meta.run_id,
        body=data,
    )


def responses_of_run(conn: Connection, run_id: str) -> int:
    """How many responses a run has archived so far (a crawl's progress)."""
    return conn.execute(
        select(func.count()).select_from(RESPONSES).where(RESPONSES.c.run_id == run_id)
    ).scalar_one()
