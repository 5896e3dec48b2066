"""One search over every list of every source: a name, a USCC or a case number, answered as
the cross-source entities (``storage.entities``) whose entries match.

The database filters (no record is read into Python just to be rejected): a USCC by the
indexed ``uscc`` and ``entity_id`` columns (and, for a code that fails its check, the code as
published); a name as a substring of the stored ``entity_name_key`` (NFKC, traditional →
simplified, no whitespace, ASCII lower-case: the query is folded the same way, so 廈門 finds
厦门); a case number as a substring of the stored ``case_number_key`` (brackets folded) or of
the registration number. Substrings cannot use a B-tree index, so name and case searches
scan ``records`` inside the database; both are bounded by ``ROW_CAP`` rows and ``cap``
entities.

The rows found are then matched again in Python against what is shown (after ``transform``,
i.e. redaction when the app redacts): a redacting app cannot be asked whether a person's
full name or a legal representative's name is listed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.engine import Connection

from core.normalise.codes import compact
from core.normalise.text import case_number_key, fold
from storage.entities import RECORD_COLUMNS, Entity, of_entity_id, record_of
from storage.models import Record, table_of

RECORDS = table_of(Record)

MIN_CHARS = 2  # a folded query shorter than this would match half the database
MAX_CHARS = 100  # longer than any name or case number
ROW_CAP = 2000  # matching records read at most per search
CODE = re.compile(r"[0-9A-Z]{18}")

Transform = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Terms:
    """A query as each field compares it: ``code`` when it is shaped like a USCC (18 letters
    and digits once spaces are gone), else the folded ``name`` and ``case`` needles."""

    text: str
    code: str | None = None
    name: str | None = None
    case: str | None = None


class QueryError(ValueError):
    """A query not worth a search: ``reason`` is ``empty``, ``too_short`` or ``too_long``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def terms(query: str | None) -> Terms:
    """The query's terms, or ``QueryError`` for one that is empty, too short or too long."""
    text = unicodedata.normalize("NFKC", query or "").strip()
    if not text:
        raise QueryError("empty")
    if len(text) > MAX_CHARS:
        raise QueryError("too_long")
    code = compact(text)
    if CODE.fullmatch(code):
        return Terms(text, code=code)
    name = fold(text)
    if len(name) < MIN_CHARS:
        raise QueryError("too_short")
    return Terms(text, name=name, case=fold(case_number_key(text) or "") or None)


def matched_fields(found: Terms, record: dict[str, Any]) -> list[str]:
    """The fields of ``record`` (as shown) the query matches, in the order of the schema."""
    out = []
    if found.code:
        for name in ("uscc", "uscc_raw"):
            value = record.get(name)
            if isinstance(value, str) and compact(value) == found.code:
                out.append(name)
        return out[:1]
    shown_name = record.get("entity_name")
    if found.name and isinstance(shown_name, str) and found.name in fold(shown_name):
        out.append("entity_name")
    case_number = record.get("case_number")
    if (
        found.case
        and isinstance(case_number, str)
        and found.case in fold(case_number_key(case_number) or "")
    ):
        out.append("case_number")
    number = record.get("registration_no")
    if found.name and isinstance(number, str) and found.name in fold(number):
        out.append("registration_no")
    return out


def is_exact(found: Terms, record: dict[str, Any]) -> bool:
    """The query is the record's USCC or its whole name (folded), as shown."""
    if found.code:
        return bool(matched_fields(found, record))
    name = record.get("entity_name")
    return isinstance(name, str) and fold(name) == found.name


def _condition(found: Terms) -> Any:
    data = RECORDS.c.data
    if found.code:
        return or_(
            RECORDS.c.uscc == found.code,
            RECORDS.c.entity_id == f"uscc-{found.code}",
            func.upper(data["uscc_raw"].as_string()) == found.code,
        )
    conditions = [data["entity_name_key"].as_string().contains(found.name, autoescape=True)]
    conditions.append(
        func.lower(data["registration_no"].as_string()).contains(found.name, autoescape=True)
    )
    if found.case:
        conditions.append(
            func.lower(data["case_number_key"].as_string()).contains(found.case, autoescape=True)
        )
    return or_(*conditions)


def matching_records(
    conn: Connection, found: Terms, limit: int = ROW_CAP
) -> tuple[list[dict[str, Any]], bool]:
    """The records (current state, every list and source, removed ones included) the query
    matches in the database, whole-name and USCC matches first; at most ``limit``, and
    whether there were more."""
    exact: Any = (
        RECORDS.c.uscc == found.code
        if found.code
        else RECORDS.c.data["entity_name_key"].as_string() == found.name
    )
    rows = conn.execute(
        select(*RECORD_COLUMNS)
        .where(_condition(found))
        .order_by(case((exact, 0), else_=1), RECORDS.c.entity_id, RECORDS.c.list, RECORDS.c.id)
        .limit(limit + 1)
    ).all()
    return [record_of(row) for row in rows[:limit]], len(rows) > limit


@dataclass
class Hit:
    """An entity the query found, with every entry it is or was on across sources."""

    entity: Entity
    matched: list[str] = field(default_factory=list)  # fields matched, in any of its entries
    exact: bool = False  # the query is its USCC or one of its names, whole


@dataclass
class Found:
    terms: Terms
    hits: list[Hit]
    more: bool  # more entities matched than the cap (or than ROW_CAP records could show)
    cap: int


def search(
    conn: Connection,
    found: Terms,
    *,
    cap: int = 50,
    transform: Transform | None = None,
    row_cap: int = ROW_CAP,
) -> Found:
    """The entities (at most ``cap``) with an entry the query matches as ``transform`` shows
    it, exact matches first, each grouped across sources by ``storage.entities``."""
    records, more = matching_records(conn, found, row_cap)
    # Per matching entry: the fields it matched and whether whole; entity ids in order.
    entries: dict[tuple[str, str], tuple[list[str], bool]] = {}
    ids: list[str] = []
    for record in records:
        shown = transform(record) if transform else record
        fields = matched_fields(found, shown)
        if not fields:
            continue
        eid = record["entity_id"]
        if eid not in ids:
            if len(ids) == cap:
                more = True
                break
            ids.append(eid)
        entries[(record["list"], record["record_key"])] = (fields, is_exact(found, shown))
    hits: dict[str, Hit] = {}
    for eid in ids:
        # A source-scoped name id can span jurisdictions: each entity of it that holds a
        # matching entry is a hit.
        for entity in of_entity_id(conn, eid):
            if entity.key in hits:
                continue
            hit = Hit(entity)
            for r in entity.records:
                fields, exact = entries.get((r["list"], r["record_key"]), ([], False))
                hit.matched += [f for f in fields if f not in hit.matched]
                hit.exact = hit.exact or exact
            if hit.matched:
                hits[entity.key] = hit
    ordered = sorted(hits.values(), key=lambda h: not h.exact)  # stable: database order
    return Found(found, ordered[:cap], more or len(ordered) > cap, cap)
