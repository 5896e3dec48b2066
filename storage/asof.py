"""Lists as they stood: any list's entries on any date since its first run, and the
difference between two dates.

The state of a list on a date is what its last *healthy* run on or before that date (an
Asia/Shanghai date, as runs are dated) showed: nothing an unhealthy run claimed is vouched
for. It is rebuilt from ``record_history`` (every version of every entry, as intervals of
runs) and the ``delisted`` events, never from the current ``records``, so it does not move
when later runs are stored:

* a **database** list (``publication: database``) shows the entries whose version interval
  holds the run: the run saw them;
* an **announcement** list shows every entry announced by then, in its latest version, with
  the status its later events gave it (expired, removed) up to that run.

The current export is the same question asked of the newest healthy run.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import LargeBinary, String, Text, and_, case, cast, func, select, type_coerce
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from core.clock import SHANGHAI
from core.registry import get_source
from core.schema import NON_CONTENT_FIELDS, RECORD_FIELDS, content_of
from storage.models import Event, Record, RecordHistory, Run, RunList, table_of
from storage.types import utc

RECORDS = table_of(Record)
HISTORY = table_of(RecordHistory)
EVENTS = table_of(Event)
RUNS = table_of(Run)
RUN_LISTS = table_of(RunList)
SHOWN = ("active", "expired")
BATCH = 2000


@dataclass(frozen=True)
class Vouch:
    """The run that vouches for a list's state on a date."""

    list: str
    run_id: str
    seq: int
    at: datetime
    run_state: str
    health: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "list": self.list,
            "run_id": self.run_id,
            "seq": self.seq,
            "at": self.at.isoformat(),
            "run_state": self.run_state,
            "list_health": self.health,
        }


def run_date(at: datetime) -> date:
    """The date a run is filed under: its clock's date in Asia/Shanghai."""
    return at.astimezone(SHANGHAI).date()


def vouching_runs(
    conn: Connection, source: str, lists: Iterable[str], as_of: date | None = None
) -> dict[str, Vouch]:
    """Per list, its last healthy run on or before ``as_of`` (the newest when None).
    Lists with no such run are absent from the answer."""
    wanted = set(lists)
    rows = conn.execute(
        select(RUN_LISTS.c.list, RUN_LISTS.c.health, RUNS.c.run_id, RUNS.c.seq, RUNS.c.state)
        .add_columns(RUNS.c.started_at)
        .join(RUNS, RUNS.c.run_id == RUN_LISTS.c.run_id)
        .where(RUNS.c.source == source, RUN_LISTS.c.health == "healthy")
        .order_by(RUNS.c.seq)
    ).all()
    found: dict[str, Vouch] = {}
    for row in rows:
        if row.list not in wanted or row.started_at is None:
            continue
        if as_of is not None and run_date(row.started_at) > as_of:
            continue
        found[row.list] = Vouch(
            row.list, row.run_id, row.seq, row.started_at, row.state, row.health
        )
    return found


def _by_key(conn: Connection, column: Any) -> Any:
    """Order by code point on either database (PostgreSQL's locale collations differ)."""
    return column.collate("C") if conn.dialect.name == "postgresql" else column


def status_events(conn: Connection, list_id: str, seq: int) -> dict[str, tuple[int, str]]:
    """Per entry, the last status its events gave it up to run ``seq``: (run seq, status)."""
    rows = conn.execute(
        select(EVENTS.c.record_key, EVENTS.c.event, EVENTS.c.cause, RUNS.c.seq)
        .join(RUNS, RUNS.c.run_id == EVENTS.c.run_id)
        .where(
            EVENTS.c.list == list_id,
            EVENTS.c.event.in_(("listed", "relisted", "delisted")),
            RUNS.c.seq <= seq,
        )
        .order_by(EVENTS.c.id)
    ).all()
    status: dict[str, tuple[int, str]] = {}
    for row in rows:
        if row.event != "delisted":
            status[row.record_key] = (row.seq, "active")
        else:
            status[row.record_key] = (row.seq, "expired" if row.cause == "expired" else "removed")
    return status


class Row(NamedTuple):
    """One entry as a run left it: the stored values, and the lifecycle fields apart."""

    data: dict[str, Any]
    status: str
    first_seen: datetime
    last_seen: datetime

    def record(self) -> dict[str, Any]:
        """The schema record, fields in the schema's order."""
        out = {name: self.data.get(name) for name in RECORD_FIELDS}
        out["status"] = self.status
        out["first_seen"] = self.first_seen.isoformat()
        out["last_seen"] = self.last_seen.isoformat()
        return out


def iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date | datetime) else value


def iter_list(
    conn: Connection,
    list_id: str,
    vouch: Vouch,
    *,
    announced: bool,
    include_removed: bool = False,
) -> Iterator[dict[str, Any]]:
    """The list's records as run ``vouch`` left them, by ``record_key``, streamed."""
    for row in iter_rows(
        conn, list_id, vouch, announced=announced, include_removed=include_removed
    ):
        yield row.record()


def iter_rows(
    conn: Connection,
    list_id: str,
    vouch: Vouch,
    *,
    announced: bool,
    include_removed: bool = False,
) -> Iterator[Row]:
    """``iter_list`` before the records are assembled (writers that want columns)."""
    hist = HISTORY.c
    for (data,), status, first_seen, last_seen in _versions(
        conn, list_id, vouch, (hist.data,), announced=announced, include_removed=include_removed
    ):
        yield Row(data, status, first_seen, last_seen)
    if include_removed and not announced:
        later = status_events(conn, list_id, vouch.seq)
        yield from _removed_by_then(conn, list_id, vouch, later)


class JsonRow(NamedTuple):
    """``Row`` with ``data`` still the database's JSON (UTF-8 bytes) and its ``extra`` apart,
    for writers that hand the bytes straight to a columnar JSON reader instead of decoding."""

    data: bytes
    extra: str | None  # the JSON text of data["extra"]; None or "null" when it has none
    status: str
    first_seen: datetime
    last_seen: datetime

    def decoded(self) -> Row:
        return Row(orjson.loads(self.data), self.status, self.first_seen, self.last_seen)


def iter_json_rows(
    conn: Connection, list_id: str, vouch: Vouch, *, announced: bool
) -> Iterator[JsonRow]:
    """``iter_rows`` (without removed entries) with the values as JSON bytes. SQLite hands its
    stored text over as bytes (CAST AS BLOB, no decoding); PostgreSQL sends jsonb as text,
    encoded here (as bytea it would travel hex-encoded, twice the size)."""
    data = HISTORY.c.data
    as_bytes = conn.dialect.name == "sqlite"
    columns = (cast(data, LargeBinary if as_bytes else Text), cast(data["extra"], Text))
    for (text, extra), status, first_seen, last_seen in _versions(
        conn, list_id, vouch, columns, announced=announced, include_removed=False
    ):
        yield JsonRow(text if as_bytes else text.encode(), extra, status, first_seen, last_seen)


def _versions(
    conn: Connection,
    list_id: str,
    vouch: Vouch,
    columns: tuple[ColumnElement[Any], ...],
    *,
    announced: bool,
    include_removed: bool,
) -> Iterator[tuple[tuple[Any, ...], str, datetime, datetime]]:
    """The version of each entry that run ``vouch`` shows, by ``record_key``: ``columns`` of
    its history row, its status then, first and last seen."""
    hist, rec = HISTORY.c, RECORDS.c
    seq = vouch.seq
    query = (
        select(
            rec.record_key,
            hist.status,
            hist.first_run_seq,
            # Times as the driver gives them, parsed once per distinct value (a list of a
            # million entries holds a few dozen distinct run times).
            type_coerce(rec.first_seen, String).label("first_seen"),
            type_coerce(
                case((hist.last_run_seq >= seq, vouch.at), else_=hist.last_at), String
            ).label("last_seen"),
            *columns,
        )
        .join(RECORDS, rec.id == hist.record_id)
        # records.list is the history's list too; saying so lets the database walk the
        # (list, record_key) index in order instead of sorting every row with its data
        .where(rec.list == list_id, hist.list == list_id, hist.first_run_seq <= seq)
        .order_by(_by_key(conn, rec.record_key))
    )
    if announced:  # every entry announced by then, in its latest version
        latest = (
            select(hist.record_id, func.max(hist.first_run_seq).label("first_run_seq"))
            .where(hist.list == list_id, hist.first_run_seq <= seq)
            .group_by(hist.record_id)
            .subquery()
        )
        query = query.join(
            latest,
            and_(
                latest.c.record_id == hist.record_id,
                latest.c.first_run_seq == hist.first_run_seq,
            ),
        )
    else:  # a database list shows what the run saw: the one version whose interval holds it
        query = query.where(hist.last_run_seq >= seq)
    # Only announcement lists take status from events.
    later = status_events(conn, list_id, seq) if announced else {}
    shown = (*SHOWN, "removed") if include_removed else SHOWN
    result = conn.execution_options(yield_per=BATCH).execute(query)
    for key, status, first_run_seq, first_seen, last_seen, *values in result:
        event = later.get(key)
        if event is not None and event[0] > first_run_seq:
            status = event[1]
        if status in shown:
            yield tuple(values), status, utc(first_seen), utc(last_seen)


def _removed_by_then(
    conn: Connection, list_id: str, vouch: Vouch, later: dict[str, tuple[int, str]]
) -> Iterator[Row]:
    """Entries of a database list delisted by run ``vouch`` (not shown by it), in their last
    version before it, with status ``removed``: ``include_removed`` adds them after the rest."""
    hist, rec = HISTORY.c, RECORDS.c
    gone = sorted(key for key, (_, status) in later.items() if status == "removed")
    for start in range(0, len(gone), 500):
        keys = gone[start : start + 500]
        latest = (
            select(hist.record_id, func.max(hist.first_run_seq).label("first_run_seq"))
            .join(RECORDS, rec.id == hist.record_id)
            .where(hist.list == list_id, hist.first_run_seq <= vouch.seq, rec.record_key.in_(keys))
            .group_by(hist.record_id)
            .subquery()
        )
        rows = conn.execute(
            select(rec.record_key, rec.first_seen, hist.data, hist.last_at, hist.last_run_seq)
            .join(latest, latest.c.record_id == hist.record_id)
            .join(RECORDS, rec.id == hist.record_id)
            .where(hist.first_run_seq == latest.c.first_run_seq)
            .order_by(_by_key(conn, rec.record_key))
        ).all()
        for row in rows:
            if row.last_run_seq < vouch.seq:  # not shown by the run: delisted before it
                yield Row(row.data, "removed", row.first_seen, row.last_at)


def records_as_of(
    conn: Connection,
    source: str,
    lists: Iterable[str],
    as_of: date | None = None,
    *,
    include_removed: bool = False,
) -> tuple[list[dict[str, Any]], dict[str, Vouch], list[str]]:
    """Each list's records on ``as_of`` (today's state when None), sorted by list then
    ``record_key``; the runs that vouch for them; the lists no healthy run vouches for yet."""
    lists = sorted(lists)
    vouches = vouching_runs(conn, source, lists, as_of)
    declared = {lst.id: lst for lst in get_source(source).lists}
    out: list[dict[str, Any]] = []
    for list_id in lists:
        if list_id in vouches:
            out.extend(
                iter_list(
                    conn,
                    list_id,
                    vouches[list_id],
                    announced=not declared[list_id].diffs_absence,
                    include_removed=include_removed,
                )
            )
    out.sort(key=lambda r: (r["list"], r["record_key"]))
    return out, vouches, [lst for lst in lists if lst not in vouches]


# -- differences between two dates ------------------------------------------------------------


def _cause_between(
    conn: Connection, list_id: str, keys: list[str], after: int, upto: int
) -> dict[str, str]:
    """The cause of the last ``delisted`` event of each entry in runs (after, upto]."""
    causes: dict[str, str] = {}
    for start in range(0, len(keys), 500):
        rows = conn.execute(
            select(EVENTS.c.record_key, EVENTS.c.cause)
            .join(RUNS, RUNS.c.run_id == EVENTS.c.run_id)
            .where(
                EVENTS.c.list == list_id,
                EVENTS.c.event == "delisted",
                EVENTS.c.record_key.in_(keys[start : start + 500]),
                RUNS.c.seq > after,
                RUNS.c.seq <= upto,
            )
            .order_by(EVENTS.c.id)
        ).all()
        causes.update({row.record_key: row.cause for row in rows})
    return causes


def field_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    """Field-level changes between two versions of a record: content, then status
    (provenance and sighting times are not changes)."""
    before, after = content_of(old), content_of(new)
    changes: dict[str, list[Any]] = {}
    for name in RECORD_FIELDS:
        if name in NON_CONTENT_FIELDS:
            continue
        if name == "extra":
            extra_old, extra_new = before.get("extra") or {}, after.get("extra") or {}
            for key in sorted(set(extra_old) | set(extra_new)):
                if extra_old.get(key) != extra_new.get(key):
                    changes[f"extra.{key}"] = [extra_old.get(key), extra_new.get(key)]
        elif before.get(name) != after.get(name):
            changes[name] = [before.get(name), after.get(name)]
    if old.get("status") != new.get("status"):
        changes["status"] = [old.get("status"), new.get("status")]
    return changes


DIFF_FIELDS = (
    "change", "list", "record_key", "entity_id", "entity_name", "case_number", "title",
    "status_from", "status_to", "cause", "changes",
)  # fmt: skip


def diff(
    conn: Connection, source: str, lists: Iterable[str], from_date: date, to_date: date
) -> tuple[list[dict[str, Any]], dict[str, tuple[Vouch | None, Vouch | None]]]:
    """Entries added, removed (with the cause, when a ``delisted`` event says it) and changed
    (field by field) between the lists' states on two dates; and the runs compared."""
    rows: list[dict[str, Any]] = []
    declared = {lst.id: lst for lst in get_source(source).lists}
    lists = sorted(lists)
    start = vouching_runs(conn, source, lists, from_date)
    end = vouching_runs(conn, source, lists, to_date)
    for list_id in lists:
        announced = not declared[list_id].diffs_absence
        before, after = (
            {
                r["record_key"]: r
                for r in iter_list(conn, list_id, runs[list_id], announced=announced)
            }
            if list_id in runs
            else {}
            for runs in (start, end)
        )
        # Why an entry left, or changed status: the last `delisted` event between the runs.
        # An entry gone without one was absent but not (yet) delisted.
        asked = sorted(
            key
            for key in set(before) | set(after)
            if key not in after or (key in before and before[key]["status"] != after[key]["status"])
        )
        causes = _cause_between(
            conn,
            list_id,
            asked,
            start[list_id].seq if list_id in start else 0,
            end[list_id].seq if list_id in end else 0,
        )
        for key in sorted(set(before) | set(after)):
            old, new = before.get(key), after.get(key)
            if old is None:
                kind, changes, cause = "added", None, None
            elif new is None:
                kind, changes, cause = "removed", None, causes.get(key, "absent")
            else:
                changes = field_changes(old, new)
                if not changes:
                    continue
                kind, cause = "changed", causes.get(key) if "status" in changes else None
            shown = new or old
            assert shown is not None
            rows.append(
                {
                    "change": kind,
                    "list": list_id,
                    "record_key": key,
                    "entity_id": shown["entity_id"],
                    "entity_name": shown["entity_name"],
                    "case_number": shown["case_number"],
                    "title": shown["title"],
                    "status_from": old["status"] if old else None,
                    "status_to": new["status"] if new else None,
                    "cause": cause,
                    "changes": changes,
                }
            )
    return rows, {lst: (start.get(lst), end.get(lst)) for lst in lists}


def export_records(
    conn: Connection,
    source: str,
    lists: Iterable[str],
    *,
    include_removed: bool = False,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each list's entries as its latest healthy run left them (values and status then;
    ``storage.asof`` says what that means for database and announcement lists), sorted by
    list then record_key; and the lists no healthy run vouches for yet."""
    records, _, unvouched = records_as_of(conn, source, lists, include_removed=include_removed)
    return records, unvouched
