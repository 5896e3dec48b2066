"""The crawl worker behind ``creditwatch worker``: takes crawl jobs from the procrastinate
queue (``pipeline/queue.py``) and runs each through the daemon's ``run_source``, on any
number of hosts and processes sharing one PostgreSQL. A job of one shard of a watchlist
(``options["shard"]``, ``K/N``) crawls that shard: two shards of a source may run in one
worker or in two, each one a Scrapy process of its own with its own politeness budget.

Jobs. ``concurrency`` crawls at once, each in a thread of this process conducting its own
Scrapy child, as the in-process daemon does. A run that raised events is followed by one
alerts pass here (``alerts.sender.send_pending``; senders claim alerts, so this and the
scheduler's own pass never deliver one twice), as the daemon brings its alerts job forward.

Dead workers. procrastinate records a heartbeat of every worker each ``heartbeat`` seconds.
Every worker also sweeps, as often: a crawl job whose worker has been silent for
``stalled_after`` seconds is reaped (``pipeline.queue.reap_stalled``): its run aborted, the
job back in the queue, taken by whichever worker is free. Every worker of a deployment
should use the same two settings; ``stalled_after`` must stay well above ``heartbeat``.

Stopping. SIGTERM (or SIGINT) stops taking jobs and waits up to ``stop_timeout`` seconds for
the crawls in progress; after that, or at a second signal, their processes are stopped
(SIGTERM, SIGKILL after ``pipeline.daemon.KILL_GRACE`` seconds), their runs end ``aborted``,
and their jobs go back to the queue for another worker (``CrawlStopped`` is retried).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from procrastinate import App, JobContext, PsycopgConnector, RetryDecision
from procrastinate.exceptions import JobAborted
from procrastinate.job_context import AbortReason
from procrastinate.jobs import Job
from procrastinate.retry import BaseRetryStrategy
from procrastinate.worker import Worker

from pipeline.daemon import deliver_alerts, run_source, stop_crawl_processes
from pipeline.queue import (
    QUEUE,
    TASK,
    QueueError,
    conninfo,
    crawl_lock,
    ensure_schema,
    reap_stalled,
    require_postgres,
)
from storage.engine import database_url, get_engine, upgrade
from storage.runs import this_host

log = logging.getLogger("creditwatch.worker")


class WorkerError(ValueError):
    """The worker cannot start: bad options, or not PostgreSQL."""


class CrawlStopped(RuntimeError):
    """A crawl stopped by its worker's shutdown: its job goes back to the queue."""


class RetryStopped(BaseRetryStrategy):
    """Retry a crawl job only when its worker stopped it; a crawl that failed on its own has
    a failed run and waits for its next trigger."""

    def get_retry_decision(self, *, exception: BaseException, job: Job) -> RetryDecision | None:
        return (
            RetryDecision(retry_in={"seconds": 0}) if isinstance(exception, CrawlStopped) else None
        )


@dataclass(frozen=True)
class WorkerOptions:
    concurrency: int = 2  # crawls at once (each one a Scrapy process)
    stop_timeout: float = 900.0  # seconds a stop waits for crawls in progress
    heartbeat: float = 10.0  # seconds between heartbeats (and sweeps for dead workers)
    stalled_after: float = 30.0  # seconds of silence after which a worker is taken for dead

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise WorkerError("--concurrency must be at least 1")
        if self.stop_timeout < 0:
            raise WorkerError("--stop-timeout must be 0 or more")
        if self.heartbeat <= 0:
            raise WorkerError("--heartbeat must be positive")
        if self.stalled_after < 2 * self.heartbeat:
            raise WorkerError("--stalled-after must be at least twice --heartbeat")


def crawl_source(context: JobContext, source_id: str, options: dict[str, Any]) -> str | None:
    """The queue's one task: one crawl of ``source_id`` (returns its run id, None when
    refused); the worker running it is in the job's context."""
    worker: CrawlWorker = context.additional_context["crawl_worker"]
    return worker.run_job(context, source_id, options)


class CrawlWorker:
    """One worker process; ``serve()`` runs it until a signal."""

    def __init__(self, options: WorkerOptions, *, url: str | None = None) -> None:
        self.options = options
        self.url = url or database_url()
        try:
            require_postgres(self.url, "creditwatch worker")
        except QueueError as exc:
            raise WorkerError(str(exc)) from None
        self.name = f"{this_host()}:{os.getpid()}"
        self.stopping = threading.Event()  # no new jobs
        self.forced = threading.Event()  # and stop the crawls in progress
        self._active: dict[int, str] = {}  # job id → source (SOURCE#K/N for a shard)
        self._lock = threading.Lock()
        self._worker: Worker | None = None

    def app(self) -> App:
        app = App(connector=PsycopgConnector(conninfo=conninfo(self.url), min_size=1, max_size=4))
        app.task(name=TASK, queue=QUEUE, pass_context=True, retry=RetryStopped())(crawl_source)
        return app

    @property
    def active(self) -> list[str]:
        with self._lock:
            return sorted(self._active.values())

    # the task

    def run_job(self, context: JobContext, source_id: str, options: dict[str, Any]) -> str | None:
        job = context.job
        assert job.id is not None
        again = f" (attempt {job.attempts + 1})" if job.attempts else ""
        shard = f" shard {options['shard']}" if options.get("shard") else ""
        log.info("job %s: crawl of %s%s%s", job.id, source_id, shard, again)
        done, stopped = threading.Event(), threading.Event()
        key = crawl_lock(source_id, options)  # the crawl's runs: one shard's, or the source's
        watcher = threading.Thread(
            target=self._watch,
            args=(context, key, done, stopped),
            name=f"watch-job-{job.id}",
            daemon=True,
        )
        with self._lock:
            self._active[job.id] = key
        watcher.start()
        try:
            run = run_source(self.url, source_id, options, guard=False)
        finally:
            done.set()
            watcher.join()
            with self._lock:
                self._active.pop(job.id, None)
        if stopped.is_set() and (run is None or run.state == "aborted"):
            what = f"run {run.run_id}" if run is not None else "the crawl"
            if context.abort_reason() == AbortReason.USER_REQUEST:
                log.warning("job %s: %s stopped: the job was aborted", job.id, what)
                raise JobAborted(f"{what} stopped: the job was aborted")
            log.warning(
                "job %s: %s stopped by the worker's shutdown; back in the queue", job.id, what
            )
            raise CrawlStopped(f"{what} stopped by the worker's shutdown")
        if run is not None and run.events:
            self._send_alerts()
        return run.run_id if run is not None else None

    def _watch(
        self, context: JobContext, key: str, done: threading.Event, stopped: threading.Event
    ) -> None:
        """Stop the job's crawl process (``key``: its source, or ``SOURCE#K/N``, so a shard
        of the same source crawling next to it is left alone) when the worker is forced to
        stop, or the job is aborted (procrastinate's shutdown after ``stop_timeout``, or a
        user's request)."""
        while not done.wait(0.3):
            if self.forced.is_set() or context.should_abort():
                stopped.set()
                stop_crawl_processes(self.url, lambda: () if done.is_set() else (key,), done.wait)
                return

    def _send_alerts(self) -> None:
        try:
            deliver_alerts(self.url)
        except Exception:  # the scheduler's alerts job tries again
            log.exception("alerts: the pass after a run with events failed")

    # lifecycle

    def request_stop(self, signum: int | None = None) -> None:
        """First call: take no new jobs and let the crawls finish. Second: stop them."""
        if self.stopping.is_set():
            log.warning("stopping now: crawls in progress are stopped, their jobs requeued")
            self.forced.set()
            return
        name = signal.Signals(signum).name if signum else "stop"
        log.info(
            "%s: no new jobs; waiting up to %gs for %s (signal again to stop them now)",
            name,
            self.options.stop_timeout,
            ", ".join(self.active) or "nothing",
        )
        self.stopping.set()
        if self._worker is not None:
            self._worker.stop()

    def serve(self) -> int:
        upgrade(self.url)
        ensure_schema(get_engine(self.url))
        asyncio.run(self._serve())
        return 0

    async def _serve(self) -> None:
        app = self.app()
        async with app.open_async():
            self._worker = Worker(
                app=app,
                queues=[QUEUE],
                name=self.name,
                concurrency=self.options.concurrency,
                shutdown_graceful_timeout=self.options.stop_timeout,
                install_signal_handlers=False,
                update_heartbeat_interval=self.options.heartbeat,
                stalled_worker_timeout=self.options.stalled_after,
                additional_context={"crawl_worker": self},
            )
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop, signum)
            log.info(
                "worker %s taking crawl jobs (concurrency %s); SIGTERM stops it",
                self.name,
                self.options.concurrency,
            )
            sweeper = asyncio.create_task(self._sweep(), name="reap stalled crawl jobs")
            try:
                await self._worker.run()
            finally:
                sweeper.cancel()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(signum)
        log.info("worker %s stopped", self.name)

    async def _sweep(self) -> None:
        """Reap the crawl jobs of dead workers every ``heartbeat`` seconds."""
        engine = get_engine(self.url)
        while True:
            try:
                await asyncio.to_thread(reap_stalled, engine, self.options.stalled_after)
            except Exception:
                log.exception("sweeping the crawl jobs of dead workers failed; trying again")
            await asyncio.sleep(self.options.heartbeat)
