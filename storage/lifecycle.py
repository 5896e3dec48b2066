"""Change detection: merge one run's staged records into ``records`` and raise events.

Everything is set-based SQL over whole lists (national lists reach millions of entries);
Python only touches the rows whose content changed, to spell out field-level ``changes``.
The lifecycle follows SCHEMA.md: baseline ``listed`` on a list's first run; ``listed``,
``modified``, ``relisted``; ``delisted`` by ``expired`` when the run's date passes
``valid_until``, by ``published_removal`` when the entry's own row or a removal announcement
says so, or by ``disappeared`` after N consecutive healthy absences. A list that is not
healthy in the run never counts absence, and a list published as announcements never does:
its entries are not repeated by later pages, so they end by expiry or published removal
only (``expire_unseen``: their expiry is checked whether or not this run read them again).

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
    String,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from core.schema import EVENT_FIELDS, content_of
from storage.models import (
    Event,
    PendingDelisting,
    Record,
    RecordHistory,
    RunRecord,
    RunRemoval,
    table_of,
)
from storage.sql import json_object, sha256_hex
from storage.types import JSONType

RECORDS = table_of(Record)
STAGED = table_of(RunRecord)
EVENTS = table_of(Event)
HISTORY = table_of(RecordHistory)
REMOVALS = table_of(RunRemoval)
PENDING = table_of(PendingDelisting)


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


def baseline_lists(conn: Connection, lists: list[str]) -> list[str]:
    """Lists with no stored entry yet: this run is their baseline."""
    known = set(
        conn.execute(select(RECORDS.c.list).where(RECORDS.c.list.in_(lists)).distinct()).scalars()
    )
    return [lst for lst in lists if lst not in known]


# The event columns set-based SQL fills, in the schema's order: all but ``changes``, which
# only ``modified`` events have (built in Python, ``_insert_modified``).
EVENT_COLUMNS = [name for name in EVENT_FIELDS if name != "changes"]


def apply_run(conn: Connection, run: RunDetection) -> Counter[str]:
    """Merge the run's staged records and raise its events, in the caller's transaction."""
    counts: Counter[str] = Counter()
    staged = STAGED.c
    rec = RECORDS.c
    this_run = staged.run_id == run.run_id
    same_entry = and_(rec.list == staged.list, rec.record_key == staged.record_key)
    staged_valid = or_(staged.valid_until.is_(None), staged.valid_until >= run.run_date)
    staged_removed = and_(
        staged.removed, or_(staged.removed_on.is_(None), staged.removed_on <= run.run_date)
    )
    staged_active = and_(~staged_removed, staged_valid)
    staged_status = case((staged_removed, "removed"), (staged_valid, "active"), else_="expired")
    staged_evidence = _provenance(staged.data)
    baselines = baseline_lists(conn, run.lists)
    active_before = _active_unheld(conn, run)

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
            _json_text(staged.data, "entity_name"),
            _json_text(staged.data, "case_number"),
            _json_text(staged.data, "title"),
            literal(cause, String) if cause else null(),
            baseline,
            literal(run.run_id),
            literal(run.at, EVENTS.c.at.type),
            staged_evidence,
        ]

    def insert_events(rows: Any) -> int:
        return _inserted(conn, insert(EVENTS).from_select(EVENT_COLUMNS, rows))

    # 1. New entries: `listed` (baseline on a list's first run; none for the already expired
    # or removed).
    is_new = ~exists().where(same_entry)
    counts["listed"] += insert_events(
        select(
            *staged_event(
                "listed", None, staged.list.in_(baselines) if baselines else literal(False)
            )
        )
        .where(this_run, is_new, staged_active)
        .order_by(staged.list, staged.record_key)
    )
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
                literal(run.at, rec.last_seen.type),
                literal(0),
                staged.content_hash,
                literal(run.run_id),
                staged.data,
            ).where(this_run, is_new),
        )
    )

    # 2. Entries seen before: relisted, modified, expired, removed in their own row.
    seen_before = and_(this_run, same_entry, rec.last_run_id != run.run_id)
    removed_now = and_(staged_removed, rec.status != "removed")
    counts["relisted"] += insert_events(
        select(*staged_event("relisted", None, literal(False)))
        .where(seen_before, rec.status != "active", staged_active)
        .order_by(staged.list, staged.record_key)
    )
    # The removal fields appearing are the delisting's news, not a correction of the entry.
    counts["modified"] += _insert_modified(conn, run, and_(seen_before, ~removed_now))
    counts["delisted"] += insert_events(
        select(*staged_event("delisted", "expired", literal(False)))
        .where(seen_before, rec.status == "active", ~staged_removed, ~staged_valid)
        .order_by(staged.list, staged.record_key)
    )
    counts["delisted"] += insert_events(
        select(*staged_event("delisted", "published_removal", literal(False)))
        .where(seen_before, removed_now)
        .order_by(staged.list, staged.record_key)
    )
    # Rewrite the stored values only where they differ (content or provenance): on a list of
    # millions most entries are unchanged, and rewriting their JSON is most of the cost.
    conn.execute(
        update(RECORDS)
        .where(seen_before, rec.data != staged.data)
        .values(
            entity_id=staged.entity_id,
            entity_name=_json_text(staged.data, "entity_name"),
            uscc=_json_text(staged.data, "uscc"),
            case_number=_json_text(staged.data, "case_number"),
            title=_json_text(staged.data, "title"),
            valid_until=staged.valid_until,
            content_hash=staged.content_hash,
            data=staged.data,
        )
    )
    conn.execute(
        update(RECORDS)
        .where(seen_before)
        .values(status=staged_status, last_seen=run.at, absent_runs=0, last_run_id=run.run_id)
    )

    # 3. Removal announcements, then expiry of announced entries no page repeats.
    counts["delisted"] += _apply_removals(conn, run)
    counts["delisted"] += _expire_unseen(conn, run)

    # 3b. Held entries this run saw again leave the hold by themselves.
    _end_holds_seen_again(conn, run)

    # 4. Absence, only where the list was healthy in this run; held entries wait for their
    # maintainer, so they neither leave nor count here.
    if run.healthy:
        absent = and_(
            rec.list.in_(sorted(run.healthy)),
            rec.status.in_(("active", "expired")),
            rec.last_run_id != run.run_id,
        )
        conn.execute(update(RECORDS).where(absent).values(absent_runs=rec.absent_runs + 1))
        gone = and_(absent, rec.absent_runs >= run.delist_after, ~_held(rec))
        for list_id in sorted(run.healthy):
            evidence = run.absence_evidence.get(list_id, {})
            leaving = and_(gone, rec.list == list_id)
            if _hold(conn, run, list_id, leaving, active_before.get(list_id, 0), evidence):
                continue
            counts["delisted"] += insert_events(
                select(*_run_delisting(run, "disappeared", literal(evidence, JSONType)))
                .where(leaving, rec.status == "active")
                .order_by(rec.record_key)
            )
            conn.execute(update(RECORDS).where(leaving).values(status="removed"))

    _extend_history(conn, run)
    conn.execute(STAGED.delete().where(this_run))
    conn.execute(REMOVALS.delete().where(REMOVALS.c.run_id == run.run_id))
    return counts


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
    base the guard measures a run's disappearances against."""
    lists = sorted(lst for lst in run.healthy if lst in run.guards)
    if not lists:
        return {}
    rec = RECORDS.c
    rows = conn.execute(
        select(rec.list, func.count())
        .where(rec.list.in_(lists), rec.status == "active", ~_held(rec))
        .group_by(rec.list)
    ).all()
    return {row[0]: row[1] for row in rows}


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
    rec, pending = RECORDS.c, PENDING.c
    same = and_(rec.list == pending.list, rec.record_key == pending.record_key)
    for state, why in (
        ("superseded", rec.status == "removed"),
        ("returned", rec.last_run_id == run.run_id),
    ):
        conn.execute(
            update(PENDING)
            .where(
                pending.source == run.source, pending.state == "pending", exists().where(same, why)
            )
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
    entries on the list. A removal dated after the run's date is not in force yet.
    """
    rec, rm = RECORDS.c, REMOVALS.c
    in_force = and_(
        rm.run_id == run.run_id,
        or_(rm.removed_on.is_(None), rm.removed_on <= run.run_date),
    )
    names_entry = and_(
        rm.list == rec.list,
        case((rm.by_case, rm.record_key == rec.record_key), else_=rm.entity_id == rec.entity_id),
    )
    matched = and_(rec.status.in_(("active", "expired")), exists().where(in_force, names_entry))
    rows = conn.execute(
        select(rm.list, rm.record_key, rm.data).where(
            rm.run_id == run.run_id, ~exists().where(names_entry)
        )
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
        .where(in_force, names_entry)
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
    conn.execute(update(RECORDS).where(where).values(status=status))
    return count


def _insert_modified(conn: Connection, run: RunDetection, seen_before: Any) -> int:
    staged, rec = STAGED.c, RECORDS.c
    rows = conn.execute(
        select(
            staged.source,
            staged.list,
            staged.record_key,
            staged.entity_id,
            rec.data.label("old"),
            staged.data.label("new"),
        )
        .where(seen_before, rec.content_hash != staged.content_hash)
        .order_by(staged.list, staged.record_key)
    ).all()
    events = []
    for row in rows:
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
    if events:
        conn.execute(insert(EVENTS), events)
    return len(events)


def _extend_history(conn: Connection, run: RunDetection) -> None:
    """Record what this run saw as intervals of runs per version of each entry."""
    rec, hist = RECORDS.c, HISTORY.c
    seen_now = and_(rec.source == run.source, rec.last_run_id == run.run_id)
    # Run numbers are consecutive per source: an interval continues only from the run just
    # before this one, so a run that did not see the entry (whatever its health) ends it.
    previous = run.seq - 1
    if previous >= 1:
        conn.execute(
            update(HISTORY)
            .where(
                hist.source == run.source,
                hist.last_run_seq == previous,
                exists().where(
                    rec.id == hist.record_id,
                    seen_now,
                    rec.content_hash == hist.content_hash,
                    rec.status == hist.status,
                ),
            )
            .values(last_run_seq=run.seq, last_at=run.at)
        )
    already = exists().where(hist.record_id == rec.id, hist.last_run_seq == run.seq)
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
                literal(run.seq),
                literal(run.at, hist.first_at.type),
                literal(run.at, hist.last_at.type),
                rec.status,
                rec.content_hash,
                rec.data,
            ).where(seen_now, ~already),
        )
    )
