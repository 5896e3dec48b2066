"""The crawl queue: procrastinate on the project's PostgreSQL, so crawls run on any number of
hosts (``creditwatch worker``, ``pipeline/worker.py``) while one scheduler
(``creditwatch schedule --queue``) decides when.

Jobs. One task, ``crawl_source(source_id, options)``: one crawl of a source through the
daemon's own ``run_source`` (``options`` are the scheduler job's, as stored in
``scheduler_jobs``). A job is deferred with ``lock`` and ``queueing_lock`` both the source id,
and that is what keeps one run per source at a time, atomically, in PostgreSQL: no two jobs
of one lock are ``doing`` at once (a worker's fetch skips them), and no two of one queueing
lock wait in ``todo`` (a trigger firing while one waits is skipped: ``defer_crawl`` returns
None). The check-then-create guard of the in-process daemon (``storage.daemon.running_runs``)
is not used on this path.

Shards. A source declaring ``schedule.shards: N`` (a watchlist split in N, see
``crawlers.watchlist.Shard``) gets N jobs per trigger (``defer_crawls``), ``options["shard"]``
= ``K/N``, each with ``lock`` and ``queueing_lock`` ``SOURCE#K/N``: the shards run side by
side on different workers, and each shard still runs once at a time and waits at most once.

Schema. procrastinate's tables and functions are applied by ``ensure_schema``, not by an
Alembic migration: when ``procrastinate_jobs`` is missing, in one transaction under an
advisory lock, so two processes starting at once apply it once. Upgrading procrastinate
past a schema change is its own migrations' business (see docs/scale-out.md).

Dead workers. A worker sends a heartbeat every few seconds; a ``doing`` job whose worker has
been silent for ``stalled_after`` seconds (or was pruned) is stalled. ``reap_stalled`` closes
its runs as the start-up sweep closes a dead process's (``running``: aborted and staging
dropped, so nothing of it is visible; ``fetched``: finished) and puts the job back in the
queue, where another worker takes it; a job whose run was finished instead is marked
succeeded. The job's row stays locked (``FOR UPDATE SKIP LOCKED``) until that is done, so
two reapers never handle one job. Its runs are the source's runs in progress: the job's lock
made it the only queued crawl of its source (of its shard: a shard job's runs are the
source's runs recorded as that shard). Runs on the reaper's own host whose process is
still alive (a fetcher orphaned by its worker) are waited for: the job is left for a later
pass rather than retried next to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from procrastinate import App, SyncPsycopgConnector
from procrastinate.exceptions import AlreadyEnqueued
from procrastinate.schema import SchemaManager
from sqlalchemy import Engine
from sqlalchemy.engine import Connection, Row, make_url

from core.health import IN_PROGRESS_STATES
from pipeline.finalize import finish_fetched
from pipeline.processes import process_alive
from storage.daemon import (
    apply_queue_schema,
    finish_job,
    is_postgres,
    retry_job,
    running_runs,
    stalled_jobs,
)
from storage.runs import fail_run, this_host
from storage.shards import shard_label

log = logging.getLogger("creditwatch.queue")

TASK = "creditwatch.crawl_source"
QUEUE = "crawls"


class QueueError(ValueError):
    """The queue cannot be used here: the database is not PostgreSQL."""


def require_postgres(url: str, what: str) -> None:
    if not is_postgres(url):
        raise QueueError(
            f"{what} needs PostgreSQL (DATABASE_URL=postgresql://...); this database is "
            f"{make_url(url).get_backend_name()}, where `creditwatch schedule` crawls in its "
            "own process"
        )


def conninfo(url: str) -> str:
    """The libpq URI of a SQLAlchemy PostgreSQL URL (procrastinate connects with psycopg
    itself), query options such as the search path kept."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def ensure_schema(engine: Engine) -> bool:
    """Apply procrastinate's schema unless its tables exist; True when it was applied."""
    applied = apply_queue_schema(engine, SchemaManager.get_schema())
    if applied:
        log.info("crawl queue: procrastinate's schema applied")
    return applied


def open_app(url: str) -> App:
    """A procrastinate App for deferring from synchronous code (the scheduler), opened; a
    small pool, as deferring is one short statement."""
    connector = SyncPsycopgConnector(conninfo=conninfo(url), min_size=1, max_size=4)
    return App(connector=connector).open()


def crawl_lock(source_id: str, options: dict[str, Any]) -> str:
    """The queue lock of a crawl: the source, or ``SOURCE#K/N`` for one shard of it."""
    shard = options.get("shard")
    return f"{source_id}#{shard}" if shard else source_id


def defer_crawl(app: App, source_id: str, options: dict[str, Any]) -> int | None:
    """Queue one crawl of ``source_id`` (of one shard, with ``options["shard"]``); its job id,
    or None when one is already waiting."""
    lock = crawl_lock(source_id, options)
    deferrer = app.configure_task(TASK, lock=lock, queueing_lock=lock, queue=QUEUE)
    try:
        return deferrer.defer(source_id=source_id, options=options)
    except AlreadyEnqueued:
        return None


def shard_options(options: dict[str, Any]) -> list[dict[str, Any]]:
    """One trigger's crawls: the options as they are, or one per shard (``shards`` > 1)."""
    count = int(options.get("shards") or 1)
    if count <= 1:
        return [options]
    rest = {key: value for key, value in options.items() if key != "shards"}
    return [{**rest, "shard": f"{index}/{count}"} for index in range(1, count + 1)]


def defer_crawls(app: App, source_id: str, options: dict[str, Any]) -> list[tuple[str, int | None]]:
    """Queue one trigger's crawls of ``source_id``: (lock, job id or None when one of that
    lock is already waiting), one per shard."""
    return [
        (crawl_lock(source_id, each), defer_crawl(app, source_id, each))
        for each in shard_options(options)
    ]


# --- stalled jobs -------------------------------------------------------------------------


@dataclass(frozen=True)
class Reaped:
    job_id: int
    source: str
    aborted: tuple[str, ...]  # runs marked aborted
    finished: tuple[str, ...]  # runs whose finish step ran here
    outcome: str  # retried · succeeded · failed (another crawl of the source was waiting)


def reap_stalled(
    engine: Engine,
    stalled_after: float,
    *,
    alive: Callable[[Row[Any]], bool] = process_alive,
) -> list[Reaped]:
    """Close the runs of crawl jobs whose worker is gone and put the jobs back in the queue
    (see the module's docstring); what was done, job by job."""
    reaped = []
    with engine.begin() as conn:
        for job in stalled_jobs(conn, TASK, stalled_after):
            done = _reap(engine, conn, job, alive)
            if done is not None:
                reaped.append(done)
    return reaped


def _reap(
    engine: Engine,
    conn: Connection,
    job: Row[Any],
    alive: Callable[[Row[Any]], bool],
) -> Reaped | None:
    source = str(job.args.get("source_id"))
    shard = (job.args.get("options") or {}).get("shard")
    with engine.connect() as reading:
        runs = [  # the job's own runs: another shard of the source may be crawling meanwhile
            run
            for run in running_runs(reading, source=source, states=IN_PROGRESS_STATES)
            if shard_label(run) == shard
        ]
    named = f"{source} shard {shard}" if shard else source
    here = this_host()
    if any(run.host == here and alive(run) for run in runs):
        log.info("job %s (%s): worker gone, its crawl process still lives: waiting", job.id, named)
        return None
    silent = (
        f"no heartbeat since {job.last_heartbeat.astimezone(UTC).isoformat(timespec='seconds')}"
        if job.last_heartbeat is not None
        else "pruned as stalled"
    )
    note = f"the worker of crawl job {job.id} is gone ({silent}); the crawl is run again"
    aborted, finished = [], []
    for run in runs:
        if run.state == "running":
            if fail_run(engine, run.run_id, "aborted", note, datetime.now(UTC)):
                aborted.append(run.run_id)
        elif finish_fetched(engine, run.run_id) is not None:
            finished.append(run.run_id)
    if finished and not aborted:
        finish_job(conn, job.id, "succeeded")
        outcome = "succeeded"
    elif retry_job(conn, job.id):
        outcome = "retried"
    else:  # a crawl of the source is already waiting: that one is the retry
        finish_job(conn, job.id, "failed")
        outcome = "failed"
    for run_id in aborted:
        log.warning("run %s: %s; marked aborted", run_id, note.split(";")[0])
    for run_id in finished:
        log.warning("run %s had fetched when its worker died: finished", run_id)
    log.warning(
        "job %s (%s): worker gone, %s",
        job.id,
        named,
        {
            "retried": "back in the queue",
            "succeeded": "its run was finished: succeeded",
            "failed": "another crawl of the source was already waiting: failed",
        }[outcome],
    )
    return Reaped(job.id, source, tuple(aborted), tuple(finished), outcome)
