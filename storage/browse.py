"""Reading the database for the web app: a list's entries on a date (searched, filtered and
paged), its counts by status, an entity's records and events across lists, pseudonymous
entity ids, a source's latest run.

A list's state comes from ``storage.asof`` (what its last healthy run on or before the date
showed), never from the ``records`` table, which also holds what unhealthy runs claimed. An
entity's page is the other question, "everything ever seen about this subject", so it reads
``records`` (current state of every entry, removed ones included) and ``events``.

Search and filters run over the entries as they are shown (after ``transform``, i.e. after
redaction when the app redacts), so a redacted app cannot be asked whether a full name is
listed. They stream the list once per request (twice for a database list's removed entries,
merged back into ``record_key`` order); only the page asked for is kept, and, sorted by a
field, the entries up to that page (at most ``SORT_DEPTH``): memory stays bounded however long
the list. The same pass notes which ``COLUMNS`` hold a value in any matching entry, so a page
shows a list's own columns and never one that is empty on every row.
"""

from __future__ import annotations

import builtins
import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from functools import total_ordering
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, Row

from core.normalise.text import case_number_key, fold
from core.redact import PERSON, pseudonym
from core.registry import ListDef
from core.schema import RECORD_FIELDS
from storage.asof import Vouch, iter_list, vouching_runs
from storage.events import event_dict
from storage.lifecycle import last_seen
from storage.models import Event, Record, Run, table_of
from storage.sql import sha256_hex

RECORDS = table_of(Record)
EVENTS = table_of(Event)
RUNS = table_of(Run)

STATUSES = ("active", "expired", "removed")
# The status filter: "" is what the list shows now (active and expired entries).
STATUS_FILTERS = ("", "active", "expired", "removed", "all")
PSEUDONYM_PREFIX = "redacted:"
# The fields a list page may show as columns, in order: each only when some matching entry
# has it (``uscc`` stands for the code as validated or, failing the check, as published).
COLUMNS = (
    "entity_name", "uscc", "id_number_masked", "registration_no", "case_number", "title",
    "reason", "measure", "fine_yuan", "confiscated_yuan", "authority", "decided_on",
    "published_on", "valid_until", "status",
)  # fmt: skip
ALWAYS = ("entity_name", "status")
NUMERIC = frozenset({"fine_yuan", "confiscated_yuan"})
SORT_DEPTH = 10_000  # a sorted view keeps this many entries at most: pages beyond are refused

Transform = Callable[[dict[str, Any]], dict[str, Any]]


# -- a list on a date ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryQuery:
    """Search and filters of a list page: ``q`` matches name, USCC, case number or title
    (folded: full/half width, traditional/simplified, case, brackets of case numbers)."""

    q: str | None = None
    status: str = ""
    decided_from: date | None = None
    decided_to: date | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUS_FILTERS:
            raise ValueError(f"status {self.status!r} is not one of {STATUS_FILTERS}")

    @property
    def include_removed(self) -> bool:
        return self.status in ("removed", "all")

    def matches(self, record: dict[str, Any]) -> bool:
        if self.status and self.status != "all" and record.get("status") != self.status:
            return False
        if self.decided_from or self.decided_to:
            decided = _date(record.get("decided_on"))
            if decided is None:
                return False
            if self.decided_from and decided < self.decided_from:
                return False
            if self.decided_to and decided > self.decided_to:
                return False
        return not self.q or text_matches(self.q, record)


def _date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None


def text_matches(query: str, record: dict[str, Any]) -> bool:
    """Whether ``query`` occurs in the record's name, title, USCC (as validated or as
    published) or case number, compared in their folded forms."""
    needle = fold(query)
    if not needle:
        return True
    for name in ("entity_name", "title", "uscc", "uscc_raw"):
        value = record.get(name)
        if isinstance(value, str) and needle in fold(value):
            return True
    case = record.get("case_number")
    if isinstance(case, str):
        case_needle = fold(case_number_key(query) or "")
        if case_needle and case_needle in fold(case_number_key(case) or ""):
            return True
    return False


def column_value(record: dict[str, Any], column: str) -> Any:
    """What a column shows of an entry (None: nothing)."""
    value = record.get(column)
    if column == "uscc":
        value = value or record.get("uscc_raw")
    return None if value == "" or value == [] else value


def sort_key(column: str) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """Entries by a column's value (numbers as numbers, the rest as text by code point),
    then ``record_key``: a total order, so pages of a sorted view never overlap."""

    def key(record: dict[str, Any]) -> tuple[Any, ...]:
        value = column_value(record, column)
        if value is None:
            return (1, 0.0 if column in NUMERIC else "", str(record.get("record_key")))
        if column in NUMERIC:
            try:
                return (0, float(value), str(record.get("record_key")))
            except (TypeError, ValueError):
                return (1, 0.0, str(record.get("record_key")))
        return (0, str(value), str(record.get("record_key")))

    return key


@dataclass
class EntryPage:
    """One page of a list's entries on a date, and the run that vouches for them."""

    list: str
    as_of: date | None
    vouch: Vouch | None
    total: int = 0  # entries matching the query, on every page
    offset: int = 0
    limit: int = 50
    # `builtins.list`: the field `list` above shadows the type for checkers.
    entries: builtins.list[dict[str, Any]] = field(default_factory=builtins.list)
    # The ``COLUMNS`` with a value in some matching entry (and ``ALWAYS``), in their order.
    columns: builtins.list[str] = field(default_factory=builtins.list)


def list_entries(
    conn: Connection,
    source: str,
    lst: ListDef,
    *,
    as_of: date | None = None,
    query: EntryQuery | None = None,
    offset: int = 0,
    limit: int = 50,
    transform: Transform | None = None,
    sort: str | None = None,
    descending: bool = False,
) -> EntryPage:
    """The entries of ``lst`` as its last healthy run on or before ``as_of`` (the newest when
    None) showed them, each passed through ``transform`` (redaction) before it is matched
    against ``query``; in ``record_key`` order, or by the column ``sort`` (empty values
    last either way); the ``limit`` entries from ``offset`` on, the number that matched and
    the columns they fill. A sorted page deeper than ``SORT_DEPTH`` is a ``ValueError``."""
    query = query or EntryQuery()
    if sort is not None and sort not in COLUMNS:
        raise ValueError(f"sort takes one of {', '.join(COLUMNS)}")
    if sort is not None and offset + limit > SORT_DEPTH:
        raise ValueError(f"a sorted view goes {SORT_DEPTH} entries deep at most")
    vouch = vouching_runs(conn, source, [lst.id], as_of).get(lst.id)
    page = EntryPage(lst.id, as_of, vouch, offset=offset, limit=limit)
    if vouch is None:
        return page
    filled: set[str] = set(ALWAYS)
    matching = matching_entries(conn, lst, vouch, query, transform)

    def noted(records: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for record in records:
            page.total += 1
            filled.update(
                c for c in COLUMNS if c not in filled and column_value(record, c) is not None
            )
            yield record

    if sort is None:
        for record in noted(matching):
            if offset < page.total <= offset + limit:
                page.entries.append(record)
    else:
        ordered = sorted_entries(noted(matching), sort, descending, offset + limit)
        page.entries = ordered[offset:]
    page.columns = [c for c in COLUMNS if c in filled]
    return page


def matching_entries(
    conn: Connection,
    lst: ListDef,
    vouch: Vouch,
    query: EntryQuery,
    transform: Transform | None = None,
) -> Iterator[dict[str, Any]]:
    """Every entry of ``lst`` run ``vouch`` shows that ``query`` matches (after
    ``transform``), in ``record_key`` order, streamed: for downloads of a whole view."""
    for record in _stream(conn, lst, vouch, query.include_removed, transform):
        if query.matches(record):
            yield record


def sorted_entries(
    records: Iterator[dict[str, Any]], column: str, descending: bool, keep: int
) -> builtins.list[dict[str, Any]]:
    """The first ``keep`` entries by ``column`` (ascending or descending, empty values last
    either way, ties by ``record_key``), holding no more than ``keep`` of them at a time."""
    key = sort_key(column)
    if descending:
        ascending = key

        def key(record: dict[str, Any]) -> tuple[Any, ...]:
            empty, value, record_key = ascending(record)
            return (empty, _Reversed(value), record_key)

    return heapq.nsmallest(keep, records, key=key)


@total_ordering
class _Reversed:
    """A value that sorts the other way round (text cannot be negated)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.value == other.value)

    __hash__ = None  # type: ignore[assignment]


def _stream(
    conn: Connection,
    lst: ListDef,
    vouch: Vouch,
    include_removed: bool,
    transform: Transform | None,
) -> Iterator[dict[str, Any]]:
    announced = not lst.diffs_absence
    records: Iterator[dict[str, Any]] = iter_list(
        conn, lst.id, vouch, announced=announced, include_removed=include_removed
    )
    if include_removed and not announced:
        # iter_list yields a database list's removed entries after all the others: merge
        # them back into record_key order, the order of every other view (and snapshot).
        shown = iter_list(conn, lst.id, vouch, announced=False)
        removed = (r for r in records if r["status"] == "removed")
        records = heapq.merge(shown, removed, key=lambda r: str(r["record_key"]))
    return map(transform, records) if transform else records


def status_counts(conn: Connection, lst: ListDef, vouch: Vouch) -> dict[str, int]:
    """Entries of ``lst`` by status as run ``vouch`` left them (removed ones included).

    Depends only on the list and the run (later runs do not move a run's view), so callers
    may cache it by ``(list, run_id)``."""
    counts = dict.fromkeys(STATUSES, 0)
    for record in iter_list(
        conn, lst.id, vouch, announced=not lst.diffs_absence, include_removed=True
    ):
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    return counts


def latest_run(conn: Connection, source: str) -> Row[Any] | None:
    """The source's newest run, whatever its state (the last healthy one may be older)."""
    return conn.execute(
        select(RUNS).where(RUNS.c.source == source).order_by(RUNS.c.seq.desc()).limit(1)
    ).first()


# -- an entity across lists ---------------------------------------------------------------------


def entity_records(conn: Connection, entity_id: str) -> list[dict[str, Any]]:
    """Every entry ever seen of the entity, in every list and source, in its current state
    (removed entries included), as schema records, by list then ``record_key``."""
    rows = conn.execute(
        select(
            RECORDS.c.data,
            RECORDS.c.status,
            RECORDS.c.first_seen,
            last_seen(),
        )
        .where(RECORDS.c.entity_id == entity_id)
        .order_by(RECORDS.c.list, RECORDS.c.record_key)
    ).all()
    out = []
    for row in rows:
        record = {name: row.data.get(name) for name in RECORD_FIELDS}
        record["status"] = row.status
        record["first_seen"] = row.first_seen.isoformat()
        record["last_seen"] = row.last_seen.isoformat()
        out.append(record)
    return out


def entity_events(conn: Connection, entity_id: str) -> list[dict[str, Any]]:
    """The entity's events in every list and source, oldest first, in the schema's shape."""
    rows = conn.execute(
        select(EVENTS).where(EVENTS.c.entity_id == entity_id).order_by(EVENTS.c.at, EVENTS.c.id)
    )
    return [event_dict(row) for row in rows]


def is_person(records: list[dict[str, Any]]) -> bool:
    """An entity is a natural person when any of its records says so (the safe reading for
    redaction)."""
    return any(r.get("entity_type") == PERSON for r in records)


def entity_for_pseudonym(conn: Connection, value: str) -> str | None:
    """The entity id whose pseudonym (``core.redact.pseudonym``) is ``value``, if it is a
    natural person's; the hash is compared in the database."""
    digest = value.removeprefix(PSEUDONYM_PREFIX).lower()
    if not value.startswith(PSEUDONYM_PREFIX) or len(digest) != 16:
        return None
    if any(c not in "0123456789abcdef" for c in digest):
        return None
    candidates = (
        conn.execute(
            select(RECORDS.c.entity_id)
            .where(func.substr(sha256_hex(RECORDS.c.entity_id), 1, 16) == digest)
            .distinct()
        )
        .scalars()
        .all()
    )
    for entity_id in candidates:
        if pseudonym(entity_id) == value and is_person(entity_records(conn, entity_id)):
            return entity_id
    return None
