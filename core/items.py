"""What spiders emit: raw, portal-shaped facts, before any normalisation.

Spiders read pages and hand over text exactly as published, keyed by the portal's own
Chinese labels. Everything that interprets those texts lives in ``core.normalise``.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PageRef:
    """A page that contributed to an entry, pointing into the raw archive."""

    url: str
    sha256: str
    role: str  # "list", "detail", "subject", ...


@dataclass
class RawEntry:
    """One published entry on one list, as the portal shows it.

    ``fields`` are the label/value pairs of the page the entry was read from (the detail
    page where there is one), ``row`` the cells of its list-page row by column header, and
    ``subject`` the label/value pairs of the subject's profile page. Labels carry no
    trailing colon; values are the text as published (not yet trimmed or decoded).
    """

    source: str
    list: str  # full list id, "<source>.<list>"
    source_url: str
    raw_sha256: str
    fields: dict[str, str] = field(default_factory=dict)
    row: dict[str, str] = field(default_factory=dict)
    subject: dict[str, str] = field(default_factory=dict)
    # `builtins.list`: the field `list` above shadows the type for checkers.
    pages: builtins.list[PageRef] = field(default_factory=builtins.list)
    removal: bool = False  # a row of a removal announcement: it ends an entry, lists nothing


@dataclass
class ListPage:
    """One page of a list as fetched: the evidence for what the list showed."""

    source: str
    list: str
    url: str
    sha256: str
    page_no: int
    rows: int
    declared_total: int | None = None
    declared_pages: int | None = None


@dataclass
class AttachmentRead:
    """One file an announcement links to, and what reading it gave."""

    url: str
    sha256: str | None
    kind: str | None  # xls · xlsx · docx · pdf · html · image
    rows: int = 0
    error: str | None = None


@dataclass
class Announcement:
    """One announcement (公告) as read in a run: the unit an announcement list grows by.

    ``state`` is ``read`` (its rows were emitted), ``needs_transcription`` (the list is only
    an image: archived for a maintainer, no rows invented) or ``failed`` (``error`` says why;
    the next run tries it again).
    """

    source: str
    list: str
    url: str
    sha256: str
    title: str
    kind: str  # listing · removal
    state: str
    published_on: str | None = None
    rows: int = 0
    attachments: builtins.list[AttachmentRead] = field(default_factory=builtins.list)
    error: str | None = None
