"""Change detection: merge one run's staged records into ``records`` and raise events.

National lists reach ten million entries, so a run costs two set-based passes over the
list and work in proportion to what changed, nothing more. The passes compare the staged
records with ``entry_state``, a narrow mirror of ``records`` (key, content hash, status,
absences, last sighting): staged ⟕ state keeps the entries that are new or differ
(``DIFF``), state ▷ staged the ones the run missed (``ABSENT``). Every later step (events,
``records``, history) reads those scratch tables; an entry seen again unchanged is compared
once and written nowhere: its ``records.last_seen`` stays None (the list's latest run, in
``list_state``, saw it) and its history interval stays open (``OPEN_SEQ``). Python only
touches the rows whose content changed, to spell out field-level ``changes``.

The lifecycle follows SCHEMA.md: baseline ``listed`` on a list's first run; ``listed``,
``modified``, ``relisted``; ``delisted`` by ``expired`` when the run's date passes
``valid_until``, by ``published_removal`` when the entry's own row or a removal announcement
says so, or by ``disappeared`` after N consecutive healthy absences. A list that is not
healthy in the run never counts absence, and neither does a list published as announcements
or read in part by design (``coverage: partial``): their entries are not all repeated by
later pages, so they end by expiry or published removal only (``expire_unseen``: their
expiry is checked whether or not this run read them again). A run that vouches for some
subjects only (a shard of a watchlist, ``RunDetection.scope``) misses and counts absent only
their entries.

The mass-delisting guard (``RunDetection.guards``, the registry's ``delisting_guard``): when
one healthy run would delist by ``disappeared`` more than ``share`` of a list's active
entries and at least ``min_count`` of them, none of the list's entries leaves in that run.
Every entry that would have left (active ones, and expired ones that would be removed
silently) is held in ``pending_delistings`` with the run's clock and absence evidence, its
record untouched, and ``RunDetection.held`` counts the held delistings per list for the
maintainers' alert. Held entries are then out of later runs' absence handling: they are
neither delisted nor held again nor counted (numerator or denominator) by a later guard,
until a maintainer releases or discards them (``storage.pending``). A later run that sees
a held entry again ends its hold by itself (``returned``; ``superseded`` when the entry
comes back with a published removal).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    type_coerce,
    union,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from core.schema import EVENT_FIELDS, content_of
from storage.models import (
    OPEN_SEQ,
    EntryState,
    Event,
    ListState,
    PendingDelisting,
    Record,
    RecordHistory,
    RunFill,
    RunRecord,
    RunRemoval,
    table_of,
)
from storage.sql import driving_join, json_object, sha256_hex
from storage.types import JSONType

RECORDS = table_of(Record)
KNOWN = RECORDS.alias("known")  # the stored record of an entry staged without its own
STAGED = table_of(RunRecord)
EVENTS = table_of(Event)
HISTORY = table_of(RecordHistory)
REMOVALS = table_of(RunRemoval)
FILL = table_of(RunFill)
PENDING = table_of(PendingDelisting)
STATE = table_of(EntryState)
LIST_STATE = table_of(ListState)
MODIFIED_BATCH = 2000  # modified entries read, diffed and written at a time


@dataclass
class RunDetection:
    """What change detection needs to know about one finished crawl."""

    run_id: str
    source: str
    seq: int
    at: datetime
    run_date: date
    lists: list[str]
    healthy: set[str]  # lists whose absences count: healthy in this run, and databases
    delist_after: int = 2
    absence_evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    expire_unseen: set[str] = field(default_factory=set)  # announcement lists
    # list -> (share, min_count): the mass-delisting guard (registry's delisting_guard)
    guards: dict[str, tuple[float, int]] = field(default_factory=dict)
    unmatched_removals: list[dict[str, Any]] = field(default_factory=list)  # set by apply_run
    # list -> delistings the guard held as pending in this run (active entries); set by apply_run
    held: dict[str, int] = field(default_factory=dict)
    # list -> the subjects (entity ids) whose entries this run vouches for: a shard of a
    # watchlist misses, and counts absent, only its own subjects' entries. Lists not named
    # here are vouched for whole.
    scope: dict[str, list[str]] = field(default_factory=dict)


def event_id(run_id: str, list_id: str, record_key: str, kind: str) -> str:
    """Stable id of an event; the SQL side computes the same value with ``sha256_hex``."""
    return hashlib.sha256(f"{run_id}|{list_id}|{record_key}|{kind}".encode()).hexdigest()[:32]


def sql_event_id(run_id: Any, list_col: Any, key_col: Any, kind: str) -> Any:
    """``event_id`` computed in SQL; ``run_id`` is an expression (a literal or a column)."""
    text = run_id + "|" + list_col + "|" + key_col + f"|{kind}"
    return func.substr(sha256_hex(text), 1, 32)


def _json_text(col: Any, key: str) -> Any:
    return col[key].as_string()


def _provenance(data: Any) -> Any:
    """``{source_url, raw_sha256}`` of a stored or staged record: an event's evidence."""
    return json_object(
        "source_url", _json_text(data, "source_url"), "raw_sha256", _json_text(data, "raw_sha256")
    )


def content_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` over content fields; ``extra`` is compared label by label."""
    old, new = content_of(old), content_of(new)
    changes: dict[str, list[Any]] = {}
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if name == "extra":
            before, after = before or {}, after or {}
            for label in sorted(set(before) | set(after)):
                if before.get(label) != after.get(label):
                    changes[f"extra.{label}"] = [before.get(label), after.get(label)]
        elif before != after:
            changes[name] = [before, after]
    return changes


def baseline_lists(
    conn: Connection, lists: list[str], scope: dict[str, list[str]] | None = None
) -> list[str]:
    """Lists with no stored entry yet: this run is their baseline. A list the run vouches for
    in part (``scope``, a shard of a watchlist) has its baseline when none of the scope's
    subjects has an entry on it yet: each shard's first run is its subjects' baseline."""
    state, rec = STATE.c, RECORDS.c
    scope = scope or {}
    out = []
    for list_id in lists:
        if list_id in scope:
            known = select(literal(1)).where(rec.list == list_id, rec.entity_id.in_(scope[list_id]))
        else:
            known = select(literal(1)).where(state.list == list_id)
        if conn.execute(known.limit(1)).first() is None:
            out.append(list_id)
    return out


# The event columns set-based SQL fills, in the schema's order: all but ``changes``, which
# only ``modified`` events have (built in Python, ``_insert_modified``).
EVENT_COLUMNS = [name for name in EVENT_FIELDS if name != "changes"]

# Scratch tables of one detection, in the database's temporary space: the few entries of a
# run that differ from their hot state (``DIFF``), those it missed (``ABSENT``) and every
# record whose row this run wrote (``TOUCHED``). Everything after the two passes that build
# them reads these, never a whole list again.
_SCRATCH = MetaData()
DIFF = Table(
    "cw_run_diff",
    _SCRATCH,
    Column("list", String, primary_key=True),
    Column("record_key", String, primary_key=True),
    Column("record_id", Integer),  # None for a new entry until it is stored
    Column("is_new", Boolean, nullable=False),
    Column("old_hash", String),
    Column("old_status", String),
    Column("old_prov", String),
    Column("new_prov", String),
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
ABSENT = Table(
    "cw_run_absent",
    _SCRATCH,
    Column("record_id", Integer, primary_key=True),
    Column("list", String, nullable=False),
    Column("record_key", String, nullable=False),
    Column("missed", Boolean, nullable=False),  # the list's previous run saw it, this one not
    Column("counted", Boolean, nullable=False),  # an absence from a healthy list
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
TOUCHED = Table(
    "cw_run_touched",
    _SCRATCH,
    Column("record_id", Integer, primary_key=True),
    Column("seen", Boolean, nullable=False),  # shown by this run
    prefixes=["TEMPORARY"],
    postgresql_on_commit="DROP",
)
SCRATCH_TABLES = (DIFF, ABSENT, TOUCHED)


def apply_run(conn: Connection, run: RunDetection) -> Counter[str]:
    """Merge the run's staged records and raise its events, in the caller's transaction.

    Two passes meet every entry: staged ⟕ ``entry_state`` keeps the entries whose content,
    status or sighting differ (``DIFF``), ``entry_state`` ▷ staged the ones the run missed
    (``ABSENT``). Every later step works on those few rows; an entry seen again unchanged
    is compared once and written nowhere.
    """
    counts: Counter[str] = Counter()
    _prepare(conn)
    staged, diff = STAGED.c, DIFF.c
    covered = _covered_lists(conn, run)
    previous = _list_states(conn, covered)
    baselines = baseline_lists(conn, run.lists, run.scope)
    active_before = _active_unheld(conn, run)
    staged_valid = or_(staged.valid_until.is_(None), staged.valid_until >= run.run_date)
    staged_removed = and_(
        staged.removed, or_(staged.removed_on.is_(None), staged.removed_on <= run.run_date)
    )
    staged_active = and_(~staged_removed, staged_valid)
    staged_status = case((staged_removed, "removed"), (staged_valid, "active"), else_="expired")
    _diff_pass(conn, run, staged_status)
    _absent_pass(conn, run, covered)

    # The run's differing entries with their staged rows, and the stored record of those
    # staged without theirs (read as stored: only their status or sighting differs).
    with_staged = driving_join(
        DIFF,
        STAGED,
        and_(
            staged.run_id == run.run_id,
            staged.list == diff.list,
            staged.record_key == diff.record_key,
        ),
    ).outerjoin(KNOWN, and_(staged.data.is_(None), KNOWN.c.id == diff.record_id))
    _check_stored_as_staged(conn, with_staged)

    read = read_data()

    def staged_event(kind: str, cause: str | None, baseline: Any) -> list[Any]:
        return [
            sql_event_id(
                literal(run.run_id, String),
                staged.list,
                staged.record_key,
                kind if not cause else f"{kind}:{cause}",
            ),
            literal(kind),
            staged.source,
            staged.list,
            staged.record_key,
            staged.entity_id,
            _json_text(read, "entity_name"),
            _json_text(read, "case_number"),
            _json_text(read, "title"),
            literal(cause, String) if cause else null(),
            baseline,
            literal(run.run_id),
            literal(run.at, EVENTS.c.at.type),
            _provenance(read),
        ]

    def insert_events(where: Any, columns: list[Any]) -> int:
        rows = (
            select(*columns)
            .select_from(with_staged)
            .where(where)
            .order_by(staged.list, staged.record_key)
        )
        return _inserted(conn, insert(EVENTS).from_select(EVENT_COLUMNS, rows))

    # 1. New entries: `listed` (baseline on a list's first run; none for the already expired
    # or removed), stored with their hot state.
    baseline = staged.list.in_(baselines) if baselines else literal(False)
    counts["listed"] += insert_events(
        and_(diff.is_new, staged_active), staged_event("listed", None, baseline)
    )
    _store_new(conn, run, with_staged, staged_status)

    # 2. Entries seen before: relisted, modified, expired, removed in their own row.
    before = ~diff.is_new
    removed_now = and_(staged_removed, diff.old_status != "removed")
    counts["relisted"] += insert_events(
        and_(before, diff.old_status != "active", staged_active),
        staged_event("relisted", None, literal(False)),
    )
    # The removal fields appearing are the delisting's news, not a correction of the entry.
    counts["modified"] += _insert_modified(conn, run, with_staged, and_(before, ~removed_now))
    counts["delisted"] += insert_events(
        and_(before, diff.old_status == "active", ~staged_removed, ~staged_valid),
        staged_event("delisted", "expired", literal(False)),
    )
    counts["delisted"] += insert_events(
        and_(before, removed_now), staged_event("delisted", "published_removal", literal(False))
    )
    _rewrite_seen(conn, run, with_staged, staged_status)

    # 3. Removal announcements, then expiry of announced entries no page repeats.
    counts["delisted"] += _apply_removals(conn, run)
    counts["delisted"] += _expire_unseen(conn, run)

    # 3b. Held entries this run saw again leave the hold by themselves.
    _end_holds_seen_again(conn, run)

    # 4. Absence, only where the list was healthy in this run; held entries wait for their
    # maintainer, so they neither leave nor count here.
    counts["delisted"] += _count_absences(conn, run, active_before)

    _mark_missed(conn, previous)
    _extend_history(conn, run, previous)
    _sync_state(conn)
    _advance_lists(conn, run, covered)
    _unstage(conn, run.run_id)
    _drop_scratch(conn)
    return counts


def read_data() -> Any:
    """The record a differing entry was read with: its staged one, else (staged without it,
    ``storage.runlog``) the stored one, which ``_check_stored_as_staged`` vouches for."""
    return type_coerce(func.coalesce(STAGED.c.data, KNOWN.c.data), JSONType)


class StagingOutOfDate(RuntimeError):
    """An entry was staged without its record, as stored, but the store moved on since."""


def _check_stored_as_staged(conn: Connection, with_staged: Any) -> None:
    """Entries staged without their record were, when staged, as stored (same content and
    provenance digests): refuse to merge if one no longer is, rather than lose what it read.
    One run per source at a time makes this a broken invariant, not a race to wait out."""
    staged, diff = STAGED.c, DIFF.c
    moved = conn.execute(
        select(diff.list, diff.record_key)
        .select_from(with_staged)
        .where(
            staged.data.is_(None),
            or_(
                diff.is_new,
                diff.old_hash != staged.content_hash,
                diff.old_prov.is_distinct_from(staged.prov_hash),
            ),
        )
        .limit(1)
    ).first()
    if moved is not None:
        raise StagingOutOfDate(
            f"{moved.list} {moved.record_key!r} was staged as stored, but its stored record "
            "changed before detection: run the source again"
        )


def _unstage(conn: Connection, run_id: str) -> None:
    """Drop the run's staging. On SQLite, when no other run has rows staged, emptying the
    whole table is SQLite's truncate (pages freed, not rows deleted one by one: seconds at ten
    million); this transaction holds the database's write lock, so no crawl can stage rows
    in between. PostgreSQL deletes the run's rows (a TRUNCATE would lock out other crawls)."""
    staged = STAGED.c
    others = select(literal(1)).where(or_(staged.run_id < run_id, staged.run_id > run_id))
    if conn.dialect.name == "sqlite" and conn.execute(others.limit(1)).first() is None:
        conn.execute(STAGED.delete())
    else:
        conn.execute(STAGED.delete().where(staged.run_id == run_id))
    conn.execute(REMOVALS.delete().where(REMOVALS.c.run_id == run_id))
    conn.execute(FILL.delete().where(FILL.c.run_id == run_id))


def _prepare(conn: Connection) -> None:
    """Fresh scratch tables; on PostgreSQL, room for the two whole-list joins to hash in
    memory (``SET LOCAL``: this transaction only)."""
    _drop_scratch(conn)
    for table in SCRATCH_TABLES:
        table.create(conn)
    if conn.dialect.name == "postgresql":
        conn.execute(text("SET LOCAL work_mem = '256MB'"))


def _drop_scratch(conn: Connection) -> None:
    for table in SCRATCH_TABLES:
        conn.execute(text(f"DROP TABLE IF EXISTS {table.name}"))


def _analyze(conn: Connection, table: Table) -> None:
    """A scratch table's real size (a few thousand rows against a staging of millions) for
    the planner: PostgreSQL keeps no statistics of temporary tables until asked. On SQLite
    this alone did not turn the joins round (the staging has no statistics either):
    ``driving_join`` fixes their order there."""
    conn.execute(text(f"ANALYZE {table.name}"))


def _covered_lists(conn: Connection, run: RunDetection) -> list[str]:
    """The run's lists whose entries' sightings it settles: those it read an entry of, and
    those healthy in it (a healthy empty list misses every entry). A list the run read
    nothing of, unhealthy, leaves every sighting as it was."""
    staged = STAGED.c
    read = {
        list_id
        for list_id in run.lists
        if conn.execute(
            select(literal(1)).where(staged.run_id == run.run_id, staged.list == list_id).limit(1)
        ).first()
    }
    return sorted(read | (run.healthy & set(run.lists)))


def _list_states(conn: Connection, lists: list[str]) -> dict[str, tuple[int, datetime]]:
    """(seq, time) of the latest run that saw each list, before this one."""
    ls = LIST_STATE.c
    rows = conn.execute(select(ls.list, ls.last_seq, ls.last_at).where(ls.list.in_(lists))).all()
    return {row.list: (row.last_seq, row.last_at) for row in rows}


def _diff_pass(conn: Connection, run: RunDetection, staged_status: Any) -> None:
    """Staged ⟕ hot state: keep the entries that are new, read with other content or another
    status, or back after a run that missed them."""
    staged, state = STAGED.c, STATE.c
    joined = STAGED.outerjoin(
        STATE, and_(state.list == staged.list, state.record_key == staged.record_key)
    )
    conn.execute(
        insert(DIFF).from_select(
            [
                "list",
                "record_key",
                "record_id",
                "is_new",
                "old_hash",
                "old_status",
                "old_prov",
                "new_prov",
            ],
            select(
                staged.list,
                staged.record_key,
                state.record_id,
                state.record_id.is_(None),
                state.content_hash,
                state.status,
                state.prov_hash,
                staged.prov_hash,
            )
            .select_from(joined)
            .where(
                staged.run_id == run.run_id,
                or_(
                    state.record_id.is_(None),
                    state.content_hash != staged.content_hash,
                    state.status != staged_status,
                    state.last_seen_seq.is_not(None),
                    state.prov_hash.is_distinct_from(staged.prov_hash),
                ),
            ),
        )
    )
    _analyze(conn, DIFF)


def _absent_pass(conn: Connection, run: RunDetection, covered: list[str]) -> None:
    """Hot state ▷ staged: the entries of the covered lists this run did not show, when that
    matters: the list's previous run saw them (their sighting ends), or their absence counts
    (a healthy list, and not removed already)."""
    if not covered:
        return
    staged, state = STAGED.c, STATE.c
    healthy = sorted(run.healthy & set(covered))
    missed = state.last_seen_seq.is_(None)
    counted = (
        and_(state.list.in_(healthy), state.status.in_(("active", "expired")))
        if healthy
        else literal(False)
    )
    shown = exists().where(
        staged.run_id == run.run_id,
        staged.list == state.list,
        staged.record_key == state.record_key,
    )
    rec = RECORDS.c
    vouched: list[ColumnElement[bool]] = [
        state.list.in_([lst for lst in covered if lst not in run.scope])
    ]
    for list_id, subjects in sorted(run.scope.items()):
        if list_id in covered:
            theirs = select(rec.id).where(rec.list == list_id, rec.entity_id.in_(subjects))
            vouched.append(and_(state.list == list_id, state.record_id.in_(theirs)))
    conn.execute(
        insert(ABSENT).from_select(
            ["record_id", "list", "record_key", "missed", "counted"],
            select(state.record_id, state.list, state.record_key, missed, counted).where(
                or_(*vouched), or_(missed, counted), ~shown
            ),
        )
    )
    _analyze(conn, ABSENT)


def _touch(conn: Connection, ids: Any) -> None:
    """Add records to ``TOUCHED``: ``ids`` selects (record id, shown by this run); a record
    already there keeps its first entry."""
    if conn.dialect.name == "postgresql":
        statement: Any = postgresql.insert(TOUCHED).on_conflict_do_nothing()
    else:  # SQLite cannot parse ON CONFLICT after INSERT … SELECT … FROM without a WHERE
        statement = insert(TOUCHED).prefix_with("OR IGNORE")
    conn.execute(statement.from_select(["record_id", "seen"], ids))


def _store_new(conn: Connection, run: RunDetection, with_staged: Any, staged_status: Any) -> None:
    """Store the run's new entries in ``records`` and ``entry_state``."""
    staged, diff, rec = STAGED.c, DIFF.c, RECORDS.c
    conn.execute(
        insert(RECORDS).from_select(
            [
                "source",
                "list",
                "record_key",
                "entity_id",
                "entity_name",
                "uscc",
                "case_number",
                "title",
                "valid_until",
                "status",
                "first_seen",
                "last_seen",
                "absent_runs",
                "content_hash",
                "last_run_id",
                "data",
            ],
            select(
                staged.source,
                staged.list,
                staged.record_key,
                staged.entity_id,
                _json_text(staged.data, "entity_name"),
                _json_text(staged.data, "uscc"),
                _json_text(staged.data, "case_number"),
                _json_text(staged.data, "title"),
                staged.valid_until,
                staged_status,
                literal(run.at, rec.first_seen.type),
                null(),
                literal(0),
                staged.content_hash,
                literal(run.run_id),
                staged.data,
            )
            .select_from(with_staged)
            .where(diff.is_new),
        )
    )
    conn.execute(
        update(DIFF)
        .where(diff.is_new)
        .values(
            record_id=select(rec.id)
            .where(rec.list == diff.list, rec.record_key == diff.record_key)
            .scalar_subquery()
        )
    )
    conn.execute(
        insert(STATE).from_select(
            [
                "list",
                "record_key",
                "record_id",
                "content_hash",
                "prov_hash",
                "status",
                "absent_runs",
                "last_seen_seq",
            ],
            select(
                rec.list,
                rec.record_key,
                rec.id,
                rec.content_hash,
                diff.new_prov,
                rec.status,
                literal(0),
                null(),
            )
            .select_from(DIFF.join(RECORDS, rec.id == diff.record_id))
            .where(diff.is_new),
        )
    )
    _touch(conn, select(diff.record_id, literal(True)))


def _rewrite_seen(
    conn: Connection, run: RunDetection, with_staged: Any, staged_status: Any
) -> None:
    """The differing entries seen before: their stored values where the run read others
    (content or provenance), their status, sighting and absence in any case."""
    staged, diff, rec = STAGED.c, DIFF.c, RECORDS.c
    data = read_data()
    read = (
        select(
            diff.record_id,
            staged.entity_id,
            _json_text(data, "entity_name").label("entity_name"),
            _json_text(data, "uscc").label("uscc"),
            _json_text(data, "case_number").label("case_number"),
            _json_text(data, "title").label("title"),
            staged.valid_until,
            staged.content_hash,
            data.label("data"),
            staged_status.label("status"),
        )
        .select_from(with_staged)
        .where(~diff.is_new)
        .subquery()
    )
    conn.execute(
        update(RECORDS)
        .where(rec.id == read.c.record_id, rec.data != read.c.data)
        .values(
            entity_id=read.c.entity_id,
            entity_name=read.c.entity_name,
            uscc=read.c.uscc,
            case_number=read.c.case_number,
            title=read.c.title,
            valid_until=read.c.valid_until,
            content_hash=read.c.content_hash,
            data=read.c.data,
        )
    )
    conn.execute(
        update(RECORDS)
        .where(rec.id == read.c.record_id)
        .values(status=read.c.status, last_seen=None, absent_runs=0, last_run_id=run.run_id)
    )


def _count_absences(conn: Connection, run: RunDetection, active_before: dict[str, int]) -> int:
    """Count this run's healthy absences, then delist (or hold, by the guard) the entries
    absent from ``delist_after`` runs in a row."""
    if not run.healthy:
        return 0
    rec, absent = RECORDS.c, ABSENT.c
    counted = rec.id.in_(select(absent.record_id).where(absent.counted))
    conn.execute(update(RECORDS).where(counted).values(absent_runs=rec.absent_runs + 1))
    _touch(conn, select(absent.record_id, literal(False)).where(absent.counted))
    delisted = 0
    for list_id in sorted(run.healthy):
        evidence = run.absence_evidence.get(list_id, {})
        # The list's counted absences, by id: a condition on records.list would have the
        # databases walk the list's index instead.
        theirs = select(absent.record_id).where(absent.counted, absent.list == list_id)
        leaving = and_(rec.id.in_(theirs), rec.absent_runs >= run.delist_after, ~_held(rec))
        if _hold(conn, run, list_id, leaving, active_before.get(list_id, 0), evidence):
            continue
        delisted += _inserted(
            conn,
            insert(EVENTS).from_select(
                EVENT_COLUMNS,
                select(*_run_delisting(run, "disappeared", literal(evidence, JSONType)))
                .where(leaving, rec.status == "active")
                .order_by(rec.record_key),
            ),
        )
        conn.execute(update(RECORDS).where(leaving).values(status="removed"))
    return delisted


def _mark_missed(conn: Connection, previous: dict[str, tuple[int, datetime]]) -> None:
    """Entries the list's previous run saw and this one missed: their last sighting is that
    run's, and the version it saw ends there (their hot state follows in ``_sync_state``)."""
    rec, absent, hist = RECORDS.c, ABSENT.c, HISTORY.c
    for list_id, (seq, at) in sorted(previous.items()):
        missed = select(absent.record_id).where(absent.missed, absent.list == list_id)
        conn.execute(update(RECORDS).where(rec.id.in_(missed)).values(last_seen=at))
        conn.execute(
            update(HISTORY)
            .where(hist.record_id.in_(missed), hist.last_run_seq == OPEN_SEQ)
            .values(last_run_seq=seq, last_at=at)
        )
        _touch(
            conn,
            select(absent.record_id, literal(False)).where(absent.missed, absent.list == list_id),
        )


def _extend_history(
    conn: Connection, run: RunDetection, previous: dict[str, tuple[int, datetime]]
) -> None:
    """Versions of the entries this run saw and wrote: one whose values or status moved on
    ends at the list's previous run, and a new open version starts at this one. Versions of
    entries seen again unchanged stay open, unwritten."""
    rec, hist, touched = RECORDS.c, HISTORY.c, TOUCHED.c
    _analyze(conn, TOUCHED)
    written = select(touched.record_id).where(touched.seen)
    for list_id, (seq, at) in sorted(previous.items()):
        conn.execute(
            update(HISTORY)
            .where(
                hist.record_id.in_(written),
                hist.last_run_seq == OPEN_SEQ,
                hist.list == list_id,
                exists().where(
                    rec.id == hist.record_id,
                    or_(rec.content_hash != hist.content_hash, rec.status != hist.status),
                ),
            )
            .values(last_run_seq=seq, last_at=at)
        )
    still_open = exists().where(hist.record_id == rec.id, hist.last_run_seq == OPEN_SEQ)
    conn.execute(
        insert(HISTORY).from_select(
            [
                "record_id",
                "source",
                "list",
                "first_run_seq",
                "last_run_seq",
                "first_at",
                "last_at",
                "status",
                "content_hash",
                "data",
            ],
            select(
                rec.id,
                rec.source,
                rec.list,
                literal(run.seq),
                literal(OPEN_SEQ),
                literal(run.at, hist.first_at.type),
                literal(run.at, hist.last_at.type),
                rec.status,
                rec.content_hash,
                rec.data,
            ).where(rec.id.in_(written), ~still_open),
        )
    )


def _sync_state(conn: Connection) -> None:
    """The hot state of every record this run wrote, from its row; the provenance digest of
    those the run read, from their staging."""
    sync_hot_state(conn, RECORDS.c.id.in_(select(TOUCHED.c.record_id)))
    state, diff = STATE.c, DIFF.c
    conn.execute(
        update(STATE)
        .where(state.list == diff.list, state.record_key == diff.record_key, ~diff.is_new)
        .values(prov_hash=diff.new_prov)
    )


def sync_hot_state(conn: Connection, where: Any) -> None:
    """Copy content hash, status and absences of the records ``where`` selects into their hot
    state (``entry_state``), and whether the list's latest run saw them: whoever writes those
    columns of ``records`` (detection, a maintainer's release) calls this in the same
    transaction. An entry missed just now (its ``last_seen`` set by ``_mark_missed``) was last
    seen by the list's latest run before this one: ``list_state``, not yet advanced."""
    rec, state = RECORDS.c, STATE.c
    list_seen = (
        select(LIST_STATE.c.last_seq).where(LIST_STATE.c.list == state.list).scalar_subquery()
    )
    written = (
        select(
            rec.list, rec.record_key, rec.content_hash, rec.status, rec.absent_runs, rec.last_seen
        )
        .where(where)
        .subquery()
    )
    conn.execute(
        update(STATE)
        .where(state.list == written.c.list, state.record_key == written.c.record_key)
        .values(
            content_hash=written.c.content_hash,
            status=written.c.status,
            absent_runs=written.c.absent_runs,
            last_seen_seq=case(
                (written.c.last_seen.is_(None), null()),
                else_=func.coalesce(state.last_seen_seq, list_seen),
            ),
        )
    )


def _advance_lists(conn: Connection, run: RunDetection, covered: list[str]) -> None:
    """This run is now the latest that saw each covered list."""
    if not covered:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(LIST_STATE)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=[LIST_STATE.c.list],
            set_={
                "last_seq": statement.excluded.last_seq,
                "last_run_id": statement.excluded.last_run_id,
                "last_at": statement.excluded.last_at,
            },
            # Shards of one source may finish out of their numbering: never move back.
            where=LIST_STATE.c.last_seq < statement.excluded.last_seq,
        ),
        [
            {
                "list": list_id,
                "source": run.source,
                "last_seq": run.seq,
                "last_run_id": run.run_id,
                "last_at": run.at,
            }
            for list_id in covered
        ],
    )


def _inserted(conn: Connection, statement: Any) -> int:
    """Rows an ``INSERT … SELECT`` inserted. SQLAlchemy 2.1 keeps an INSERT's rowcount only
    when asked (psycopg otherwise reports -1, and the run's event counts went negative)."""
    return conn.execute(statement.execution_options(preserve_rowcount=True)).rowcount


def _held(rec: Any) -> Any:
    """The stored entry ``rec`` is held as a pending delisting."""
    pending = PENDING.c
    return exists().where(
        pending.list == rec.list, pending.record_key == rec.record_key, pending.state == "pending"
    )


def _active_unheld(conn: Connection, run: RunDetection) -> dict[str, int]:
    """Active entries of each guarded healthy list before this run, held ones left out: the
    base the guard measures a run's disappearances against. Counted in the hot state, less
    the (few) held entries."""
    lists = sorted(lst for lst in run.healthy if lst in run.guards)
    if not lists:
        return {}
    state, rec, pending = STATE.c, RECORDS.c, PENDING.c
    active: dict[str, int] = dict(
        conn.execute(
            select(state.list, func.count())
            .where(state.list.in_(lists), state.status == "active")
            .group_by(state.list)
        ).all()
    )
    held: dict[str, int] = dict(
        conn.execute(
            select(pending.list, func.count(func.distinct(pending.record_key)))
            .join(RECORDS, and_(rec.list == pending.list, rec.record_key == pending.record_key))
            .where(pending.list.in_(lists), pending.state == "pending", rec.status == "active")
            .group_by(pending.list)
        ).all()
    )
    return {list_id: active[list_id] - held.get(list_id, 0) for list_id in active}


def _hold(
    conn: Connection,
    run: RunDetection,
    list_id: str,
    leaving: Any,
    active: int,
    evidence: dict[str, Any],
) -> bool:
    """The mass-delisting guard for one list: hold everything ``leaving`` selects as pending
    (and return True) when its active entries are more than ``share`` of ``active`` and at
    least ``min_count``."""
    if list_id not in run.guards:
        return False
    share, min_count = run.guards[list_id]
    rec = RECORDS.c
    would = conn.execute(
        select(func.count()).select_from(RECORDS).where(leaving, rec.status == "active")
    ).scalar_one()
    if not (would >= min_count and would > share * active):
        return False
    guard = {"active": active, "would_delist": would, "share": share, "min_count": min_count}
    conn.execute(
        insert(PENDING).from_select(
            [
                "source",
                "list",
                "record_key",
                "entity_id",
                "entity_name",
                "run_id",
                "held_at",
                "status_before",
                "state",
                "guard",
                "evidence",
            ],
            select(
                rec.source,
                rec.list,
                rec.record_key,
                rec.entity_id,
                rec.entity_name,
                literal(run.run_id),
                literal(run.at, PENDING.c.held_at.type),
                rec.status,
                literal("pending"),
                literal(guard, JSONType),
                literal(evidence, JSONType),
            )
            .where(leaving)
            .order_by(rec.record_key),
        )
    )
    run.held[list_id] = would
    return True


def _end_holds_seen_again(conn: Connection, run: RunDetection) -> None:
    """Held entries of the source that this run saw: ``superseded`` when they came back
    removed (their ``published_removal`` was just raised), else ``returned``."""
    rec, pending, staged = RECORDS.c, PENDING.c, STAGED.c
    same = and_(rec.list == pending.list, rec.record_key == pending.record_key)
    shown = exists().where(
        staged.run_id == run.run_id,
        staged.list == pending.list,
        staged.record_key == pending.record_key,
    )
    for state, why in (
        ("superseded", exists().where(same, rec.status == "removed")),
        ("returned", shown),
    ):
        conn.execute(
            update(PENDING)
            .where(pending.source == run.source, pending.state == "pending", why)
            .values(state=state, decided_at=run.at, decided_by=f"run:{run.run_id}")
        )


def delisting_of_record(cause: str, *, run_id: Any, at: Any, evidence: Any) -> list[Any]:
    """The columns (``EVENT_COLUMNS`` order) of a ``delisted`` event raised from a stored
    record: one builder for change detection's absences and a maintainer's release of held
    delistings (``storage.pending``), so both raise the same row with the same ``event_id``.
    ``run_id``, ``at`` and ``evidence`` are SQL expressions (literals or columns)."""
    rec = RECORDS.c
    return [
        sql_event_id(run_id, rec.list, rec.record_key, f"delisted:{cause}"),
        literal("delisted"),
        rec.source,
        rec.list,
        rec.record_key,
        rec.entity_id,
        rec.entity_name,
        rec.case_number,
        rec.title,
        literal(cause),
        literal(False),
        run_id,
        at,
        evidence,
    ]


def _run_delisting(run: RunDetection, cause: str, evidence: Any) -> list[Any]:
    """``delisting_of_record`` raised by this run, at its clock."""
    return delisting_of_record(
        cause,
        run_id=literal(run.run_id, String),
        at=literal(run.at, EVENTS.c.at.type),
        evidence=evidence,
    )


def _apply_removals(conn: Connection, run: RunDetection) -> int:
    """End the entries that this run's removal announcements name.

    A row naming a case ends that entry; a row naming only a subject ends the subject's
    entries on the list. A removal dated after the run's date is not in force yet. Matched
    from the announcement's rows (by key, or by subject through the entity index), never by
    scanning a list.
    """
    rec, rm = RECORDS.c, REMOVALS.c
    this_run = rm.run_id == run.run_id
    if conn.execute(select(literal(1)).where(this_run).limit(1)).first() is None:
        return 0
    in_force = and_(this_run, or_(rm.removed_on.is_(None), rm.removed_on <= run.run_date))
    by_case = and_(rm.by_case, rm.list == rec.list, rm.record_key == rec.record_key)
    by_subject = and_(~rm.by_case, rm.list == rec.list, rm.entity_id == rec.entity_id)
    named = union(
        select(rec.id).join(REMOVALS, by_case).where(in_force),
        select(rec.id).join(REMOVALS, by_subject).where(in_force),
    )
    matched = and_(rec.status.in_(("active", "expired")), rec.id.in_(named))
    rows = conn.execute(
        select(rm.list, rm.record_key, rm.data)
        .where(
            this_run,
            ~exists().where(by_case),
            ~exists().where(by_subject),
        )
        .order_by(rm.list, rm.record_key)
    ).all()
    run.unmatched_removals = [
        {
            "list": row.list,
            "record_key": row.record_key,
            "entity_name": row.data.get("entity_name"),
            "source_url": row.data.get("source_url"),
        }
        for row in rows
    ]
    # The earliest matching row of the run is the evidence.
    first = (
        select(_provenance(rm.data))
        .where(in_force, or_(by_case, by_subject))
        .order_by(rm.record_key)
        .limit(1)
        .scalar_subquery()
    )
    return _delist_records(conn, run, "published_removal", first, matched, "removed")


def _expire_unseen(conn: Connection, run: RunDetection) -> int:
    """Announced entries past ``valid_until``: expired whether or not this run read them."""
    if not run.expire_unseen:
        return 0
    rec = RECORDS.c
    due = and_(
        rec.list.in_(sorted(run.expire_unseen)),
        rec.status == "active",
        rec.valid_until < run.run_date,
    )
    return _delist_records(conn, run, "expired", _provenance(rec.data), due, "expired")


def _delist_records(
    conn: Connection, run: RunDetection, cause: str, evidence: Any, where: Any, status: str
) -> int:
    """Raise ``delisted`` for the stored records ``where`` selects, then set their status."""
    rec = RECORDS.c
    count = _inserted(
        conn,
        insert(EVENTS).from_select(
            EVENT_COLUMNS,
            select(*_run_delisting(run, cause, evidence))
            .where(where)
            .order_by(rec.list, rec.record_key),
        ),
    )
    staged = STAGED.c
    shown = exists().where(
        staged.run_id == run.run_id,
        staged.list == rec.list,
        staged.record_key == rec.record_key,
    )
    _touch(conn, select(rec.id, shown).where(where))
    conn.execute(update(RECORDS).where(where).values(status=status))
    return count


def _insert_modified(conn: Connection, run: RunDetection, with_staged: Any, where: Any) -> int:
    """``modified`` events of the differing entries whose content moved, with their field
    changes spelled out in Python (a page of them at a time: bounded memory)."""
    staged, rec, diff = STAGED.c, RECORDS.c, DIFF.c
    query = (
        select(
            staged.source,
            staged.list,
            staged.record_key,
            staged.entity_id,
            rec.data.label("old"),
            staged.data.label("new"),
        )
        .select_from(with_staged.join(RECORDS, rec.id == diff.record_id))
        .where(where, diff.old_hash != staged.content_hash)
        .order_by(staged.list, staged.record_key)
    )
    inserted = 0
    events: list[dict[str, Any]] = []
    for row in conn.execute(query.execution_options(yield_per=MODIFIED_BATCH)):
        changes = content_changes(row.old, row.new)
        if not changes:
            continue
        events.append(
            {
                "event_id": event_id(run.run_id, row.list, row.record_key, "modified"),
                "event": "modified",
                "source": row.source,
                "list": row.list,
                "record_key": row.record_key,
                "entity_id": row.entity_id,
                "entity_name": row.new.get("entity_name"),
                "case_number": row.new.get("case_number"),
                "title": row.new.get("title"),
                "cause": None,
                "changes": changes,
                "baseline": False,
                "run_id": run.run_id,
                "at": run.at,
                "evidence": {
                    "source_url": row.new.get("source_url"),
                    "raw_sha256": row.new.get("raw_sha256"),
                },
            }
        )
        if len(events) >= MODIFIED_BATCH:
            inserted += _insert_rows(conn, events)
    return inserted + _insert_rows(conn, events)


def _insert_rows(conn: Connection, events: list[dict[str, Any]]) -> int:
    """Insert the ``modified`` events built so far and empty the list."""
    count = len(events)
    if events:
        conn.execute(insert(EVENTS), events)
        events.clear()
    return count


def last_seen() -> Any:
    """``records.last_seen`` as readers want it: the row's own time once a run missed the
    entry, else the time of the list's latest run (which saw it), labelled ``last_seen``."""
    rec = RECORDS.c
    latest = select(LIST_STATE.c.last_at).where(LIST_STATE.c.list == rec.list).scalar_subquery()
    return func.coalesce(rec.last_seen, latest).label("last_seen")
