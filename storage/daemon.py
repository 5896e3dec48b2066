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

Several hosts on one PostgreSQL (``creditwatch schedule --queue`` and ``creditwatch
worker``) need one more thing of it: a scheduler must know it is the only one firing
triggers. ``LeaderLock`` is a session-level advisory lock on a connection of its own: the
daemon holding it leads, a second one waits for it, and PostgreSQL lets go of it the moment
the leader's session ends (its process killed, its host gone once TCP keepalives give up).
Advisory locks belong to the database, not to a schema, so every key is qualified by the
schema in use: two deployments (or two tests) in one database do not share a leader.

The crawl queue's own SQL is here too (procrastinate's tables, read and moved by its own
functions): applying its schema once, finding the jobs of workers that stopped sending
heartbeats, and retrying or closing them (``pipeline/queue.py`` decides which).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, create_engine, or_, select, text
from sqlalchemy.engine import Connection, Row, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from storage.models import Run, table_of
from storage.runs import fail_run, this_host
from storage.sql import advisory_key

RUNS = table_of(Run)
log = logging.getLogger("creditwatch.schedule")

# A leader whose host vanishes is let go by PostgreSQL once its keepalives fail (about 25 s),
# not after the kernel's default two hours; and its own check of the connection fails within
# TCP_USER_TIMEOUT instead of waiting on a dead socket.
KEEPALIVES = {"idle": 10, "interval": 5, "count": 3}
TCP_USER_TIMEOUT_MS = 20_000


def is_postgres(url: str) -> bool:
    return make_url(url).get_backend_name() == "postgresql"


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


# --- the crawl queue (procrastinate's tables) -----------------------------------------------


QUEUE_TABLES = "procrastinate_"


def migrated_here(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name``: procrastinate's tables are applied by
    :func:`apply_queue_schema`, not by our migrations, so autogenerate must not see them."""
    return not (type_ == "table" and (name or "").startswith(QUEUE_TABLES))


def apply_queue_schema(engine: Engine, schema_sql: str) -> bool:
    """Run ``schema_sql`` (procrastinate's schema) unless ``procrastinate_jobs`` exists, in one
    transaction under an advisory lock; True when it ran."""
    key, params = advisory_key("procrastinate-schema")
    with engine.begin() as conn:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({key})"), params)
        if conn.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar() is not None:
            return False
        # On the transaction's own connection, without parameters: psycopg sends the script
        # as written (it holds % signs and many statements).
        conn.connection.driver_connection.execute(schema_sql)  # type: ignore[union-attr]
    return True


_STALLED = text(
    """
    SELECT job.id, job.args, job.attempts, job.worker_id, worker.last_heartbeat
      FROM procrastinate_jobs job
      LEFT JOIN procrastinate_workers worker ON worker.id = job.worker_id
     WHERE job.status = 'doing' AND job.task_name = :task
       AND (worker.id IS NULL
            OR worker.last_heartbeat < now() - make_interval(secs => :stalled_after))
     ORDER BY job.id
       FOR UPDATE OF job SKIP LOCKED
    """
)


def stalled_jobs(conn: Connection, task: str, stalled_after: float) -> Sequence[Row[Any]]:
    """The running jobs of ``task`` whose worker has sent no heartbeat for ``stalled_after``
    seconds (or was pruned as stalled), locked for ``conn``'s transaction; jobs another
    transaction holds are skipped, so two sweeps never handle one job."""
    return conn.execute(_STALLED, {"task": task, "stalled_after": stalled_after}).all()


# What procrastinate's insert trigger sends; a retried job otherwise waits for the workers'
# next poll (5 s).
_WAKE = text(
    """
    SELECT pg_notify(channel, json_build_object('type', 'job_inserted', 'job_id', id)::text)
      FROM procrastinate_jobs,
           LATERAL (VALUES ('procrastinate_queue_v1#' || queue_name),
                           ('procrastinate_any_queue_v1')) AS channels (channel)
     WHERE id = :id
    """
)


def retry_job(conn: Connection, job_id: int) -> bool:
    """Put a running job back in the queue, at once, and wake the workers as a new job does
    (on commit); False (and nothing done) when a job of its queueing lock already waits."""
    try:
        with conn.begin_nested():
            conn.execute(
                text("SELECT procrastinate_retry_job_v2(:id, now(), NULL, NULL, NULL)"),
                {"id": job_id},
            )
    except IntegrityError:
        return False
    conn.execute(_WAKE, {"id": job_id})
    return True


def finish_job(conn: Connection, job_id: int, status: str) -> None:
    """End a running job ``succeeded`` or ``failed`` (as its worker would have)."""
    conn.execute(
        text(
            "SELECT procrastinate_finish_job_v1("
            ":id, CAST(:status AS procrastinate_job_status), false)"
        ),
        {"id": job_id, "status": status},
    )


class LeaderLock:
    """A session-level advisory lock held on a dedicated connection (not from the pool, so
    nothing recycles it): whoever holds it leads; ``alive`` says whether it still does."""

    def __init__(self, url: str, name: str, label: str) -> None:
        self.name = name
        self._engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "application_name": label[:63],
                "keepalives": 1,
                "keepalives_idle": KEEPALIVES["idle"],
                "keepalives_interval": KEEPALIVES["interval"],
                "keepalives_count": KEEPALIVES["count"],
                "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
            },
        )
        self._conn: Connection | None = None
        self.held = False

    def _connection(self) -> Connection:
        if self._conn is None:
            conn = self._engine.connect()
            for setting, value in KEEPALIVES.items():  # the server's side of this session
                conn.execute(text(f"SET tcp_keepalives_{setting} = {int(value)}"))
            self._conn = conn
        return self._conn

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False (and no error) when the database does not
        answer, so a standby keeps trying."""
        if self.held:
            return True
        key, params = advisory_key(self.name)
        try:
            got = (
                self._connection()
                .execute(text(f"SELECT pg_try_advisory_lock({key})"), params)
                .scalar_one()
            )
        except SQLAlchemyError as exc:
            log.warning("leader lock: the database does not answer: %s", exc.__class__.__name__)
            self._drop()
            return False
        self.held = bool(got)
        return self.held

    def holder(self) -> str | None:
        """Who holds the lock: the application name and address of its session."""
        key, params = advisory_key(self.name)
        query = f"""
            SELECT a.application_name, a.client_addr, a.pid
              FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND (l.classid::text::bigint, l.objid::text::bigint)
                   = (SELECT k1::bigint & 4294967295, k2::bigint & 4294967295
                        FROM (SELECT {key}) AS keys (k1, k2))
        """
        try:
            row = self._connection().execute(text(query), params).first()
        except SQLAlchemyError:
            self._drop()
            return None
        if row is None:
            return None
        where = f" from {row.client_addr}" if row.client_addr else ""
        return f"{row.application_name or 'a session'}{where} (backend {row.pid})"

    def alive(self) -> bool:
        """Whether the lock is still held: its session answers. A leader whose connection
        broke has lost the lock (PostgreSQL released it with the session)."""
        if not self.held or self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1")).scalar_one()
        except SQLAlchemyError:
            self.held = False
            self._drop()
            return False
        return True

    def release(self) -> None:
        if self.held and self._conn is not None:
            key, params = advisory_key(self.name)
            with contextlib.suppress(SQLAlchemyError):  # gone with its session otherwise
                self._conn.execute(text(f"SELECT pg_advisory_unlock({key})"), params)
        self.held = False
        self._drop()
        self._engine.dispose()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.close()
            self._conn = None
