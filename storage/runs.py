"""Runs: creating them, stamping their clock, finishing them, and reading them back."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    and_,
    bindparam,
    func,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection, Row

from core.registry import SourceDef
from core.summary import RunSummary
from storage.models import (
    EntryState,
    Fetch,
    ListPage,
    Record,
    Run,
    RunList,
    RunRecord,
    RunRemoval,
    Source,
    table_of,
)
from storage.runlog import RECORDS_FIELD, RUN_FILL, staged_record
from storage.sql import advisory_key, insert_ignore

RUNS = table_of(Run)
RUN_LISTS = table_of(RunList)
SOURCES = table_of(Source)
FETCHES = table_of(Fetch)
LIST_PAGES = table_of(ListPage)
STAGED = table_of(RunRecord)
STAGED_REMOVALS = table_of(RunRemoval)
RECORDS = table_of(Record)
STATE = table_of(EntryState)


class UnknownRun(LookupError):
    pass


def sync_source(conn: Connection, source: SourceDef) -> None:
    """Keep the ``sources`` table equal to the registry's declaration."""
    row = {
        "id": source.id,
        "name_zh": source.name_zh,
        "name_en": source.name_en,
        "jurisdiction": source.jurisdiction,
        "region_code": source.region_code,
        "base_url": source.base_url,
        "declaration": source.raw,
        "updated_at": datetime.now(UTC),
    }
    if conn.execute(select(SOURCES.c.id).where(SOURCES.c.id == source.id)).first():
        conn.execute(update(SOURCES).where(SOURCES.c.id == source.id).values(**row))
    else:
        insert_ignore(conn, SOURCES, [row])


def lock_source(conn: Connection, source: str, what: str) -> None:
    """Hold ``what`` (``runs``, ``finish``) of ``source`` until the transaction ends, on
    PostgreSQL; nothing to do on SQLite, where a writing transaction excludes the others."""
    if conn.dialect.name != "postgresql":
        return
    key, params = advisory_key(f"{what}:{source}")
    conn.execute(text(f"SELECT pg_advisory_xact_lock({key})"), params)


def create_run(
    engine: Engine,
    source: SourceDef,
    *,
    mode: str,
    cassette: str | None,
    delist_after: int,
    summary: dict[str, Any] | None = None,
) -> str:
    """A new run of ``source``, numbered after its previous ones (``xmtravel:3``) under the
    source's lock (shards of one source start together); ``summary`` is what the run is
    recorded with from its first moment (a shard's place)."""
    with engine.begin() as conn:
        lock_source(conn, source.id, "runs")
        sync_source(conn, source)
        seq = (
            conn.execute(select(func.max(RUNS.c.seq)).where(RUNS.c.source == source.id)).scalar()
            or 0
        ) + 1
        run_id = f"{source.id}:{seq}"
        conn.execute(
            RUNS.insert().values(
                run_id=run_id,
                source=source.id,
                seq=seq,
                mode=mode,
                cassette=cassette,
                state="running",
                pid=os.getpid(),
                host=this_host(),
                delist_after=delist_after,
                summary=summary,
            )
        )
    return run_id


def set_clock(engine: Engine, run_id: str, started_at: datetime, origin: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(RUNS)
            .where(RUNS.c.run_id == run_id)
            .values(started_at=started_at, clock_origin=origin)
        )


def set_error(engine: Engine, run_id: str, error: str) -> None:
    """Say why a finished run went wrong, where its summary alone would not."""
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.run_id == run_id).values(error=error))


def set_pid(engine: Engine, run_id: str, pid: int) -> None:
    with engine.begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.run_id == run_id).values(pid=pid))


def this_host() -> str:
    """The host a run is stamped with: only there can its process be seen."""
    return socket.gethostname()


def pid_running(pid: int) -> bool:
    """Whether a process ``pid`` of this host exists and has not ended (a zombie has; one of
    another user counts as running). Shared by the run sweep and the alert claims."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return True  # no /proc to ask: it exists
    return stat.rsplit(b")", 1)[-1].split()[:1] not in ([b"Z"], [b"X"])


def get_run(conn: Connection, run_id: str) -> Row[Any]:
    row = conn.execute(select(RUNS).where(RUNS.c.run_id == run_id)).first()
    if row is None:
        raise UnknownRun(f"no run {run_id!r}")
    return row


def has_runs(conn: Connection, source: str | None = None) -> bool:
    """Whether the database holds any run (of ``source``, when given)."""
    query = select(RUNS.c.run_id)
    if source is not None:
        query = query.where(RUNS.c.source == source)
    return conn.execute(query.limit(1)).first() is not None


def list_runs(conn: Connection, source: str | None = None, limit: int = 50) -> Sequence[Row[Any]]:
    query = select(RUNS).order_by(RUNS.c.started_at.desc().nulls_last(), RUNS.c.seq.desc())
    if source:
        query = query.where(RUNS.c.source == source)
    return conn.execute(query.limit(limit)).all()


def recent_runs(conn: Connection, source: str, limit: int = 5) -> Sequence[Row[Any]]:
    """The source's last ``limit`` runs in the order they were made, newest first (a replay
    takes its clock from its cassette, so start times need not follow that order)."""
    return conn.execute(
        select(RUNS).where(RUNS.c.source == source).order_by(RUNS.c.seq.desc()).limit(limit)
    ).all()


def run_lists(conn: Connection, run_id: str) -> Sequence[Row[Any]]:
    return conn.execute(
        select(RUN_LISTS).where(RUN_LISTS.c.run_id == run_id).order_by(RUN_LISTS.c.list)
    ).all()


def fetch_rows(conn: Connection, run_id: str) -> Sequence[Row[Any]]:
    return conn.execute(
        select(FETCHES).where(FETCHES.c.run_id == run_id).order_by(FETCHES.c.id)
    ).all()


def list_page_rows(conn: Connection, run_id: str) -> Sequence[Row[Any]]:
    return conn.execute(
        select(LIST_PAGES)
        .where(LIST_PAGES.c.run_id == run_id)
        .order_by(LIST_PAGES.c.list, LIST_PAGES.c.page_no)
    ).all()


def staged_counts(conn: Connection, run_id: str) -> dict[str, int]:
    rows = conn.execute(
        select(STAGED.c.list, func.count()).where(STAGED.c.run_id == run_id).group_by(STAGED.c.list)
    ).all()
    return {row[0]: row[1] for row in rows}


def staged_fill_rates(
    conn: Connection, run_id: str, fields: Iterable[str]
) -> dict[str, dict[str, float]]:
    """Per list, the share of the run's staged records in which each of ``fields`` (top-level
    schema fields) is filled: not null, not an empty string, list or object. Counted by the
    writer as it staged them (``run_fill``): a record staged as key and digests alone is not
    read back, and a list of millions costs one row per field."""
    names = sorted(set(fields))
    if not names:
        return {}
    fill = RUN_FILL.c
    counted: dict[str, dict[str, int]] = {}
    rows = conn.execute(
        select(fill.list, fill.field, fill.filled).where(
            fill.run_id == run_id, fill.field.in_([*names, RECORDS_FIELD])
        )
    )
    for row in rows:
        counted.setdefault(row.list, {})[row.field] = row.filled
    return {
        list_id: {name: counts.get(name, 0) / counts[RECORDS_FIELD] for name in names}
        for list_id, counts in counted.items()
        if counts.get(RECORDS_FIELD)
    }


def repeated_keys(conn: Connection, run_id: str) -> dict[str, dict[str, Any]]:
    """Per list, keys the run staged more than once: ``repeats`` (rows that repeated an
    entry with its content) and ``collided`` (keys that came with other content), each with
    up to ``examples`` keys."""
    examples = 5
    out: dict[str, dict[str, Any]] = {}
    rows = conn.execute(
        select(STAGED.c.list, STAGED.c.record_key, STAGED.c.repeats, STAGED.c.collided)
        .where(_staged_by(conn, run_id), _repeated())
        .order_by(STAGED.c.list, STAGED.c.record_key)
    )
    for row in rows:
        found = out.setdefault(
            row.list, {"repeats": 0, "repeated": [], "collided": 0, "colliding": []}
        )
        kind = ("collided", "colliding") if row.collided else ("repeats", "repeated")
        found[kind[0]] += 1 if row.collided else row.repeats
        if len(found[kind[1]]) < examples:
            found[kind[1]].append(row.record_key)
    return out


def _staged_by(conn: Connection, run_id: str) -> Any:
    """``run_id = ?`` for queries of repeated keys. On SQLite spelled ``+run_id`` so its
    planner cannot take the staging's primary key (a walk over the whole run) and reads the
    partial index of repeated keys instead; PostgreSQL weighs the two by its statistics."""
    if conn.dialect.name == "sqlite":
        return literal_column("+run_records.run_id") == run_id
    return STAGED.c.run_id == run_id


def _repeated() -> Any:
    """Staged keys that came more than once, spelled ``repeats > 0`` literally: only then
    can the databases use the partial index ``ix_run_records_repeated`` instead of reading
    every staged entry (a bound parameter hides that it is the index's condition)."""
    return STAGED.c.repeats > literal_column("0")


def withdraw_collided(conn: Connection, run_id: str, lists: Iterable[str]) -> int:
    """Unstage the keys of ``lists`` that came with two different contents: the run cannot
    say which is the entry, and staging either would read as a correction."""
    wanted = sorted(lists)
    if not wanted:
        return 0
    return conn.execute(
        STAGED.delete().where(
            _staged_by(conn, run_id),
            _repeated(),
            STAGED.c.collided,
            STAGED.c.list.in_(wanted),
        )
    ).rowcount


def seen_again_counts(conn: Connection, run_id: str) -> dict[str, int]:
    """Per list, how many of the run's staged entries were stored before."""
    rows = conn.execute(
        select(STAGED.c.list, func.count())
        .select_from(STAGED.join(STATE, _same_state()))
        .where(STAGED.c.run_id == run_id)
        .group_by(STAGED.c.list)
    ).all()
    return {row[0]: row[1] for row in rows}


def changed_entries(
    conn: Connection, run_id: str, lists: Iterable[str] | None = None, page: int = 1000
) -> Iterator[Row[Any, Any, Any, Any]]:
    """(list, record_key, old, new) of the run's staged entries (of ``lists`` when given)
    whose content differs from what is stored: the candidates for ``modified``. Read a page
    at a time by key, so memory stays bounded and the caller may restage between pages.
    Compared in the narrow hot state; only the changed entries' stored rows are read."""
    rec = RECORDS.c
    key = tuple_(STAGED.c.list, STAGED.c.record_key)
    query = (
        select(
            STAGED.c.list,
            STAGED.c.record_key,
            rec.data.label("old"),
            STAGED.c.data.label("new"),
        )
        .select_from(STAGED.join(STATE, _same_state()).join(RECORDS, rec.id == STATE.c.record_id))
        .where(STAGED.c.run_id == run_id, STATE.c.content_hash != STAGED.c.content_hash)
        .order_by(STAGED.c.list, STAGED.c.record_key)
        .limit(page)
    )
    if lists is not None:
        query = query.where(STAGED.c.list.in_(sorted(lists)))
    after: tuple[str, str] | None = None
    while True:
        rows = conn.execute(query if after is None else query.where(key > tuple_(*after)))
        batch = rows.all()
        yield from batch
        if len(batch) < page:
            return
        after = (batch[-1].list, batch[-1].record_key)


def restage(conn: Connection, run_id: str, rows: Sequence[dict[str, Any]]) -> None:
    """Replace staged entries (``list``, ``record_key``, ``data``, ``content_hash`` per
    row), with the columns detection reads from the data (validity, removal, entity)."""
    if not rows:
        return
    names = (
        "entity_id",
        "valid_until",
        "removed",
        "removed_on",
        "data",
        "content_hash",
        "prov_hash",
    )
    values = []
    for row in rows:
        staged = staged_record(run_id, row["data"], row["content_hash"])
        values.append(
            {"b_list": row["list"], "b_key": row["record_key"]}
            | {f"b_{name}": staged[name] for name in names}
        )
    conn.execute(
        update(STAGED)
        .where(
            STAGED.c.run_id == run_id,
            STAGED.c.list == bindparam("b_list"),
            STAGED.c.record_key == bindparam("b_key"),
        )
        .values({name: bindparam(f"b_{name}") for name in names}),
        values,
    )


def _same_state() -> Any:
    state = STATE.c
    return and_(state.list == STAGED.c.list, state.record_key == STAGED.c.record_key)


def last_live_start(conn: Connection, source_id: str) -> datetime | None:
    """When the source's newest run that fetched from the portal (live or recording) started;
    None if every run was replayed: a replay carries its cassette's dates, which say nothing
    of whether the schedule runs."""
    started: datetime | None = conn.execute(
        select(func.max(RUNS.c.started_at)).where(
            RUNS.c.source == source_id, RUNS.c.mode != "replay"
        )
    ).scalar()
    return started


def last_healthy_list_records(
    conn: Connection, source: str, before_seq: int | None = None
) -> dict[str, tuple[str, int]]:
    """Per list of ``source``: (run id, records) of the newest run, before ``before_seq``
    when given, in which that list was healthy (``run_lists``): what ``max_drop`` compares
    a run with."""
    healthy = and_(RUNS.c.source == source, RUN_LISTS.c.health == "healthy")
    if before_seq is not None:
        healthy = and_(healthy, RUNS.c.seq < before_seq)
    joined = RUN_LISTS.join(RUNS, RUNS.c.run_id == RUN_LISTS.c.run_id)
    latest = (
        select(RUN_LISTS.c.list, func.max(RUNS.c.seq).label("seq"))
        .select_from(joined)
        .where(healthy)
        .group_by(RUN_LISTS.c.list)
        .subquery()
    )
    rows = conn.execute(
        select(RUN_LISTS.c.list, RUN_LISTS.c.run_id, RUN_LISTS.c.records)
        .select_from(joined)
        .join(latest, and_(latest.c.list == RUN_LISTS.c.list, latest.c.seq == RUNS.c.seq))
        .where(RUNS.c.source == source)
    ).all()
    return {row.list: (row.run_id, row.records) for row in rows}


def latest_healthy_runs(conn: Connection, source: str) -> dict[str, Row[Any]]:
    """Per list of ``source``, the newest run in which that list was healthy."""
    rows = conn.execute(
        select(RUN_LISTS.c.list, RUNS)
        .join(RUNS, RUNS.c.run_id == RUN_LISTS.c.run_id)
        .where(RUNS.c.source == source, RUN_LISTS.c.health == "healthy")
        .order_by(RUNS.c.seq)
    ).all()
    return {row.list: row for row in rows}


def store_health(conn: Connection, run_id: str, lists: list[dict[str, Any]]) -> None:
    conn.execute(RUN_LISTS.delete().where(RUN_LISTS.c.run_id == run_id))
    if lists:
        conn.execute(RUN_LISTS.insert(), [{"run_id": run_id, **row} for row in lists])


def mark_fetched(engine: Engine, run_id: str) -> bool:
    """The fetcher recorded everything of a ``running`` run: it becomes ``fetched``, for the
    finish step to judge and detect outside the fetcher. False when it was not ``running``."""
    with engine.begin() as conn:
        return _move_state(conn, run_id, "running", "fetched")


def claim_fetched(conn: Connection, run_id: str) -> bool:
    """Take the finish of a ``fetched`` run for the transaction of ``conn``; False when the run
    is not ``fetched`` (another finisher finished it, or it never fetched everything).

    Must be the transaction's first statement. It writes the row (to the state it has), which
    holds the row against every other finisher until this transaction ends: PostgreSQL's row
    lock, SQLite's write lock. A second finisher waits there, then reads the committed state
    and finds nothing to do; if this transaction rolls back, the run is ``fetched`` again."""
    return _move_state(conn, run_id, "fetched", "fetched")


def _move_state(conn: Connection, run_id: str, from_state: str, to_state: str) -> bool:
    """One conditional update: whether the run was in ``from_state`` (and now is ``to_state``)."""
    query = update(RUNS).where(RUNS.c.run_id == run_id, RUNS.c.state == from_state)
    return conn.execute(query.values(state=to_state)).rowcount == 1


def finish_run(
    conn: Connection,
    run_id: str,
    *,
    state: str,
    summary: RunSummary | None = None,
    **columns: Any,
) -> None:
    """Write a finished run's verdict: its ``state``, ``summary`` (kept as its JSON) and any
    other ``runs`` columns (``ended_at``, ``pages``, ``records``, ``events``)."""
    if summary is not None:
        columns["summary"] = summary.stored()
    conn.execute(update(RUNS).where(RUNS.c.run_id == run_id).values(state=state, **columns))


def run_summary(run: Row[Any]) -> RunSummary:
    """The summary of a run row (empty for a run that never finished)."""
    return RunSummary.load(run.summary)


def fail_run(
    engine: Engine,
    run_id: str,
    state: str,
    error: str,
    at: datetime,
    *,
    states: Sequence[str] = ("running",),
) -> bool:
    """Close a run that never reached change detection, dropping its staged rows in the same
    transaction; False (and nothing dropped) when the run was no longer in one of ``states``
    (``running``; ``fetched`` too where the finish step itself failed)."""
    with engine.begin() as conn:
        closed = conn.execute(
            update(RUNS)
            .where(RUNS.c.run_id == run_id, RUNS.c.state.in_(list(states)))
            .values(state=state, error=error, ended_at=at)
        ).rowcount
        if closed != 1:
            return False
        conn.execute(STAGED.delete().where(STAGED.c.run_id == run_id))
        conn.execute(STAGED_REMOVALS.delete().where(STAGED_REMOVALS.c.run_id == run_id))
        conn.execute(RUN_FILL.delete().where(RUN_FILL.c.run_id == run_id))
    return True
