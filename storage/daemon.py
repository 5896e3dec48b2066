"""What the scheduler daemon and every crawl's start ask of the run log: which runs are still
in progress, and which of them lost their process.

A crawl writes only to the run's own rows (archive, fetch log, list pages, staging) until
change detection merges the staging into ``records`` and ``events`` in one transaction
(``pipeline/finalize.py``). A crawl process that dies while fetching therefore leaves nothing
visible; what it leaves is a run stuck in ``running`` and its staged rows. Closing it marks
the run ``aborted`` with a note and drops the staging, in one transaction. The archive, fetch
log and list pages stay: they are the evidence of what the run did fetch.

A run ``fetched`` has all it needs: only the finish step (run by the crawl's conductor after
the fetcher exits) was lost if its process is gone, so it is finished, not aborted
(``dead_fetched_runs`` names them; the finish step lives above this layer).

Whether a process is alive is the caller's question (``alive``): this module only reads and
writes the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.engine import Connection, Row

from storage.models import Run, table_of
from storage.runs import fail_run, this_host

RUNS = table_of(Run)


def running_runs(
    conn: Connection,
    *,
    source: str | None = None,
    host: str | None = None,
    states: Sequence[str] = ("running",),
) -> Sequence[Row[Any]]:
    """Runs in one of ``states`` (default ``running``; ``IN_PROGRESS_STATES`` for every run
    without a verdict), oldest first; only ``source``'s and only those made on ``host`` (or
    with no host recorded) when given."""
    query = select(RUNS).where(RUNS.c.state.in_(list(states))).order_by(RUNS.c.source, RUNS.c.seq)
    if source is not None:
        query = query.where(RUNS.c.source == source)
    if host is not None:
        query = query.where(or_(RUNS.c.host == host, RUNS.c.host.is_(None)))
    return conn.execute(query).all()


def abort_dead_runs(
    engine: Engine,
    alive: Callable[[Row[Any]], bool],
    *,
    why: str,
    source: str | None = None,
    host: str | None = None,
) -> list[str]:
    """Abort every ``running`` run made on ``host`` (default: this host) whose process
    ``alive`` says is gone; returns their ids. Runs of other hosts are left alone: their
    processes cannot be seen from here."""
    host = host or this_host()
    with engine.connect() as conn:
        candidates = running_runs(conn, source=source, host=host)
    aborted = []
    for run in candidates:
        if alive(run):
            continue
        note = f"crawl process {run.pid} on {run.host or host} is gone; {why}"
        if fail_run(engine, run.run_id, "aborted", note, datetime.now(UTC)):
            aborted.append(run.run_id)
    return aborted


def dead_fetched_runs(
    engine: Engine,
    alive: Callable[[Row[Any]], bool],
    *,
    source: str | None = None,
    host: str | None = None,
) -> list[str]:
    """Ids of the ``fetched`` runs made on ``host`` (default: this host) whose process
    ``alive`` says is gone, oldest first: runs whose finish step was lost with its process."""
    host = host or this_host()
    with engine.connect() as conn:
        candidates = running_runs(conn, source=source, host=host, states=("fetched",))
    return [run.run_id for run in candidates if not alive(run)]
