"""What the scheduler daemon asks of the run log: which runs are still ``running``, and
closing those whose crawl process is gone.

A crawl writes only to the run's own rows (archive, fetch log, list pages, staging) until
change detection merges the staging into ``records`` and ``events`` in one transaction
(``pipeline/finalize.py``). A crawl process that dies before that commit therefore leaves
nothing visible; what it leaves is a run stuck in ``running`` and its staged rows. Closing it
marks the run ``aborted`` with a note and drops the staging, in one transaction. The archive,
fetch log and list pages stay: they are the evidence of what the run did fetch.

Whether a process is alive is the caller's question (``alive``): this module only reads and
writes the database.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, or_, select
from sqlalchemy.engine import Connection, Row

from storage.models import Run
from storage.runs import fail_run, this_host

RUNS = Run.__table__


def running_runs(
    conn: Connection, *, source: str | None = None, host: str | None = None
) -> Sequence[Row[Any]]:
    """Runs in state ``running``, oldest first; only ``source``'s and only those made on
    ``host`` (or with no host recorded) when given."""
    query = select(RUNS).where(RUNS.c.state == "running").order_by(RUNS.c.source, RUNS.c.seq)
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
