"""The scheduler daemon behind ``creditwatch schedule``: every source crawled on its registry
schedule, alerts delivered on theirs, with APScheduler 3 keeping the jobs in the project
database.

Jobs. One job per source, ``crawl:<source>``, on the source's cron expression in its own
time zone (``schedule.timezone``, Asia/Shanghai unless declared) with its ``jitter`` seconds,
plus ``alerts:send``: one pass of ``alerts.sender.send_pending`` (bundle the digests whose
window closed, deliver what is due), every ``alerts_every`` seconds and as soon as a run raised
events. The job functions are module-level (``crawl_job``, ``alerts_job``) and take plain
arguments, so the jobs pickle into the job store: the ``scheduler_jobs`` table of the project
database (SQLAlchemyJobStore), which keeps each job's next run time across restarts.

Reconciling. On start the registry is read again and compared with the stored jobs
(``plan``/``reconcile``): a source without a job gets one; a job whose trigger changed
(cron, time zone, jitter, interval) is replaced and gets a new next run time; a job whose
crawl options changed (replay cassette, Scrapy settings, delist-after) keeps its next run
time; an unchanged job is left as stored; a job whose source is gone (or not selected) is
removed.

Overlap. Every job has ``max_instances=1`` (a trigger firing while its source is still
crawling is skipped), ``coalesce=True`` (runs missed while the daemon was down become one)
and a misfire grace period (a run missed by more than that is skipped, not run late). Before
crawling, a job also asks the database: a run of the source still in progress (``running``,
or ``fetched`` and being finished) whose process is alive (another daemon, a manual
``creditwatch crawl``) means this trigger is skipped; one whose process is gone is closed
first (``pipeline.finalize.finish_left_runs``).

Crashes. A crawl writes only its own rows until change detection merges them in one
transaction, so a crawl killed while fetching leaves no records or events, only a run stuck
in ``running`` and its staged rows. A crawl killed after its fetcher marked the run
``fetched`` lost only the finish step. At start-up every run of this host whose process is
gone is closed: ``running`` ones are marked ``aborted`` and their staging dropped
(``storage/daemon.py``), ``fetched`` ones are finished (``pipeline/finalize.py``).

Stopping. SIGTERM (or SIGINT, or the end of ``run_for``) stops new runs from starting and
waits up to ``stop_timeout`` seconds for the crawls in progress to finish; a second signal, or
the timeout, stops their processes (SIGTERM, then SIGKILL after ``KILL_GRACE`` seconds) and
their runs end ``aborted``.

Several hosts (PostgreSQL). Only one daemon fires triggers: the one holding the leader lock
(``storage.daemon.LeaderLock``, a session-level advisory lock on a connection of its own).
Another daemon started on the same database logs that it is standing by and tries again
every ``STANDBY_POLL`` seconds; it does nothing else (no sweep, no reconciling) until the
leader's session ends, and then takes over with the stored jobs and their next run times.
A leader that loses its lock's connection stops (exit status 1) rather than risk a second
leader; its service manager restarts it, standing by. With ``queue`` (``schedule --queue``)
a crawl job does not crawl: it defers the crawl to the procrastinate queue
(``pipeline/queue.py``) for ``creditwatch worker`` processes on any host, and the queue's lock
replaces the database guard above; a source declaring ``schedule.shards: N`` gets N jobs per
trigger, one per shard of its watchlist (``pipeline.queue.defer_crawls``). Without the queue
``shards`` is ignored: the daemon crawls the whole watchlist in one run. SQLite has no leader
and no queue: one daemon, crawling in its own process.

Tests and demos. ``replay_dir`` replays ``DIR/<source>.yaml`` on every run instead of the live
site (only sources with a cassette there are scheduled); ``interval`` replaces every cron
expression with "every N seconds" (no jitter); ``settings`` pass Scrapy settings to every
crawl (``DOWNLOAD_DELAY=0.2`` slows a replay down); ``run_for`` stops the daemon after N
seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from procrastinate import App
from sqlalchemy import Engine
from sqlalchemy.engine import Row

from alerts.sender import send_pending
from core.clock import TIMEZONE_NAME
from core.health import IN_PROGRESS_STATES
from core.registry import SourceDef, broken_sources, load_registry
from pipeline.finalize import finish_left_runs
from pipeline.processes import parent_of
from pipeline.processes import process_alive as process_alive  # the tests' import
from pipeline.queue import defer_crawls, ensure_schema, open_app
from pipeline.run import CrawlError, CrawlSpec, NothingToCrawl, crawl
from storage.daemon import LeaderLock, is_postgres, running_runs
from storage.engine import database_url, get_engine, upgrade
from storage.models import SchedulerJob
from storage.runs import get_run, recent_runs, this_host
from storage.shards import crawl_key

log = logging.getLogger("creditwatch.schedule")

JOBS_TABLE = SchedulerJob.__tablename__
CRAWL_FUNC = "pipeline.daemon:crawl_job"
ALERTS_FUNC = "pipeline.daemon:alerts_job"
ALERTS_JOB = "alerts:send"
KILL_GRACE = 10.0  # seconds between SIGTERM and SIGKILL when a stop cannot wait
LEADER_LOCK = "scheduler"
STANDBY_POLL = 1.0  # seconds between a standing-by daemon's tries for the leader lock
LEADER_CHECK = 5.0  # seconds between the leader's checks that its lock's session answers


class DaemonError(ValueError):
    """The schedule cannot be built: an unknown source, a bad cron expression, bad options."""


@dataclass(frozen=True)
class DaemonOptions:
    sources: tuple[str, ...] = ()  # empty: every source of the registry
    replay_dir: Path | None = None  # replay DIR/<source>.yaml instead of the live site
    interval: float | None = None  # seconds; replaces every cron expression
    delist_after: int | None = None  # None: the source's own
    settings: dict[str, str] = field(default_factory=dict)  # Scrapy settings for every crawl
    alerts_every: float = 300.0  # seconds between alert passes; 0: no alerts job
    misfire_grace: int = 3600  # seconds a missed run may start late
    workers: int = 4  # crawls (of different sources) at once
    stop_timeout: float = 900.0  # seconds a stop waits for crawls in progress
    run_for: float | None = None  # stop after this many seconds
    timezone: str = TIMEZONE_NAME  # the scheduler's, and the alerts job's
    queue: bool = False  # PostgreSQL: defer crawls to the queue for `creditwatch worker`s

    def __post_init__(self) -> None:
        if self.interval is not None and self.interval <= 0:
            raise DaemonError("--interval must be positive")
        if self.alerts_every < 0:
            raise DaemonError("--alerts-every must be 0 (no alerts job) or positive")
        if self.misfire_grace < 1:
            raise DaemonError("--misfire-grace must be at least 1 second")
        if self.workers < 1:
            raise DaemonError("--workers must be at least 1")
        if self.delist_after is not None and self.delist_after < 1:
            raise DaemonError("--delist-after must be at least 1")
        if self.replay_dir is not None and not self.replay_dir.is_dir():
            raise DaemonError(f"replay directory {self.replay_dir} does not exist")
        _zone(self.timezone)


# --- triggers -------------------------------------------------------------------------------

_CRON_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APS_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # APScheduler's order


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError) as exc:
        raise DaemonError(f"unknown time zone {name!r}") from exc


def _cron_day(text: str) -> int:
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    if text.lower()[:3] in _CRON_DAYS:
        return _CRON_DAYS.index(text.lower()[:3])
    raise ValueError(f"bad day of week {text!r}")


def crontab_weekdays(field_: str) -> str:
    """A crontab day-of-week field (0 or 7 is Sunday) as APScheduler 3 names. APScheduler 3's
    own numbers start at Monday, so ``CronTrigger.from_crontab("0 9 * * 1")`` fires on
    Tuesdays; names mean the same in both."""
    if field_ == "*":
        return "*"
    days: set[int] = set()
    for part in field_.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low, high = (_cron_day(end) for end in span.split("-", 1))
        else:
            low = _cron_day(span)
            high = 6 if step_text else low
        if high < low or step < 1:
            raise ValueError(f"bad day-of-week range {part!r}")
        days.update(day % 7 for day in range(low, high + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(name for name in _APS_DAYS if _CRON_DAYS.index(name) in days)


def crontab_trigger(expr: str, timezone: str, jitter: int | None = None) -> BaseTrigger:
    """A trigger firing as cron(8) would fire ``expr`` (minute hour day month weekday) in
    ``timezone``, each run delayed by up to ``jitter`` random seconds. As in cron, when both
    day of month and day of week are restricted, either one matching is enough."""
    fields = expr.split()
    if len(fields) != 5:
        raise DaemonError(f"cron expression {expr!r} needs 5 fields, has {len(fields)}")
    minute, hour, day, month, weekday = fields
    zone = _zone(timezone)
    try:
        common = {"minute": minute, "hour": hour, "month": month, "timezone": zone}
        days = crontab_weekdays(weekday)
        if not day.startswith("*") and not weekday.startswith("*"):
            return OrTrigger(
                [CronTrigger(day=day, **common), CronTrigger(day_of_week=days, **common)],
                jitter=jitter or None,
            )
        return CronTrigger(day=day, day_of_week=days, jitter=jitter or None, **common)
    except ValueError as exc:
        raise DaemonError(f"cron expression {expr!r}: {exc}") from exc


# --- the jobs we want, and reconciling them with the stored ones ----------------------------


@dataclass(frozen=True)
class JobSpec:
    """A job as the registry and the options want it. ``describe`` names the trigger; a
    stored job whose name differs has another trigger and is replaced."""

    id: str
    func: str
    args: tuple[Any, ...]
    trigger: BaseTrigger = field(compare=False)
    describe: str
    timezone: str
    misfire_grace: int

    @property
    def name(self) -> str:
        return f"{self.id} [{self.describe}]"

    def matches(self, job: Job) -> bool:
        return self.name == job.name and self.func == job.func_ref

    def same_settings(self, job: Job) -> bool:
        return (
            tuple(job.args) == self.args
            and job.misfire_grace_time == self.misfire_grace
            and job.coalesce is True
            and job.max_instances == 1
        )


def cassette_for(replay_dir: Path, source_id: str) -> Path | None:
    for suffix in (".yaml", ".yml"):
        path = replay_dir / f"{source_id}{suffix}"
        if path.is_file():
            return path.resolve()
    return None


def desired_jobs(sources: Iterable[SourceDef], options: DaemonOptions) -> list[JobSpec]:
    """The jobs ``options`` want for ``sources`` (the registry's, normally)."""
    sources = list(sources)
    known = {source.id for source in sources}
    unknown = [sid for sid in options.sources if sid not in known]
    if unknown:
        raise DaemonError(
            f"unknown source(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    jobs = []
    for source in sources:
        if options.sources and source.id not in options.sources:
            continue
        crawl: dict[str, Any] = {
            "mode": "live",
            "cassette": None,
            "delist_after": options.delist_after,
            "settings": dict(sorted(options.settings.items())),
            "watchlist": source.watchlist,
        }
        shards = getattr(source, "shards", 1)  # a test's stand-in source may not say
        if shards > 1:  # queued as one job per shard; one run here without the queue
            crawl["shards"] = shards
        if options.replay_dir is not None:
            cassette = cassette_for(options.replay_dir, source.id)
            if cassette is None:
                continue
            crawl.update(mode="replay", cassette=str(cassette))
        timezone = source.timezone or TIMEZONE_NAME
        if options.interval:
            trigger: BaseTrigger = IntervalTrigger(
                seconds=options.interval, timezone=_zone(timezone)
            )
            describe = f"every {options.interval:g}s"
        else:
            jitter = source.jitter
            try:
                trigger = crontab_trigger(source.cron, timezone, jitter)
            except DaemonError as exc:  # one bad schedule must not stop the other sources
                log.error("source %s not scheduled: %s", source.id, exc)
                continue
            describe = f"cron {source.cron} {timezone}" + (f" jitter {jitter}s" if jitter else "")
        jobs.append(
            JobSpec(
                id=f"crawl:{source.id}",
                func=CRAWL_FUNC,
                args=(source.id, crawl),
                trigger=trigger,
                describe=describe,
                timezone=timezone,
                misfire_grace=options.misfire_grace,
            )
        )
    if options.alerts_every:
        jobs.append(
            JobSpec(
                id=ALERTS_JOB,
                func=ALERTS_FUNC,
                args=(),
                trigger=IntervalTrigger(
                    seconds=options.alerts_every, timezone=_zone(options.timezone)
                ),
                describe=f"every {options.alerts_every:g}s",
                timezone=options.timezone,
                misfire_grace=max(1, int(options.alerts_every)),
            )
        )
    return jobs


@dataclass(frozen=True)
class PlanItem:
    id: str
    action: str  # keep · update (options only; next run kept) · add · replace · remove
    spec: JobSpec | None
    job: Job | None

    def next_run(self, now: datetime) -> datetime | None:
        """When the job runs next: as stored, or as its new trigger would have it."""
        if self.action in ("keep", "update") and self.job is not None:
            return self.job.next_run_time
        if self.action in ("add", "replace") and self.spec is not None:
            return self.spec.trigger.get_next_fire_time(None, now)
        return None


def plan(stored: Iterable[Job], desired: Iterable[JobSpec]) -> list[PlanItem]:
    """What reconciling ``stored`` jobs with ``desired`` ones does, job by job."""
    by_id = {job.id: job for job in stored}
    items = []
    for spec in desired:
        job = by_id.pop(spec.id, None)
        if job is None:
            action = "add"
        elif not spec.matches(job):
            action = "replace"
        elif not spec.same_settings(job):
            action = "update"
        else:
            action = "keep"
        items.append(PlanItem(spec.id, action, spec, job))
    items += [PlanItem(job.id, "remove", None, job) for job in by_id.values()]
    return items


def reconcile(scheduler: BackgroundScheduler, desired: Iterable[JobSpec]) -> list[PlanItem]:
    """Make the scheduler's stored jobs what ``desired`` says; the scheduler must be started
    (paused is best: nothing runs half-way through)."""
    items = plan(scheduler.get_jobs(), desired)
    for item in items:
        spec = item.spec
        if item.action == "remove":
            scheduler.remove_job(item.id)
        elif item.action in ("add", "replace") and spec is not None:
            scheduler.add_job(
                spec.func,
                trigger=spec.trigger,
                id=spec.id,
                name=spec.name,
                args=spec.args,
                misfire_grace_time=spec.misfire_grace,
                coalesce=True,
                max_instances=1,
                replace_existing=True,
            )
        elif item.action == "update" and spec is not None:
            scheduler.modify_job(
                spec.id,
                args=spec.args,
                misfire_grace_time=spec.misfire_grace,
                coalesce=True,
                max_instances=1,
            )
    return items


def build_scheduler(url: str, options: DaemonOptions) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=get_engine(url), tablename=JOBS_TABLE)},
        executors={"default": ThreadPoolExecutor(options.workers)},
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": options.misfire_grace,
        },
        timezone=_zone(options.timezone),
    )


@contextlib.contextmanager
def paused_scheduler(url: str, options: DaemonOptions) -> Iterator[BackgroundScheduler]:
    """A scheduler over the stored jobs that runs none of them (for reading and reconciling)."""
    scheduler = build_scheduler(url, options)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def schedule_rows(
    options: DaemonOptions,
    *,
    url: str | None = None,
    sources: Iterable[SourceDef] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """``schedule --list``: every job the daemon would hold if started with ``options``, with
    its next run in its time zone, its trigger, and what starting would change (``status``)."""
    url = url or database_url()
    upgrade(url)
    desired = desired_jobs(load_registry().values() if sources is None else sources, options)
    with paused_scheduler(url, options) as scheduler:
        items = plan(scheduler.get_jobs(), desired)
        now = now or datetime.now(_zone(options.timezone))
        with get_engine(url).connect() as conn:
            last = {
                spec.args[0]: next(iter(recent_runs(conn, spec.args[0], limit=1)), None)
                for spec in desired
                if spec.func == CRAWL_FUNC
            }
        rows = []
        for item in items:
            spec, job = item.spec, item.job
            zone = _zone(spec.timezone if spec else options.timezone)
            next_run = item.next_run(now)
            source = spec.args[0] if spec and spec.args else None
            run = last.get(source) if source else None
            crawl = spec.args[1] if spec and len(spec.args) > 1 else {}
            rows.append(
                {
                    "id": item.id,
                    "next_run": (
                        next_run.astimezone(zone).isoformat(timespec="seconds")
                        if next_run
                        else None
                    ),
                    "trigger": spec.describe if spec else (job.name if job else None),
                    "status": {
                        "keep": "stored",
                        "update": "stored, options change at start",
                        "add": "new at start",
                        "replace": "trigger changes at start",
                        "remove": "removed at start",
                    }[item.action],
                    "mode": crawl.get("mode"),
                    "cassette": crawl.get("cassette"),
                    "last_run": f"{run.run_id} {run.state}" if run is not None else None,
                }
            )
    return rows


# --- processes ---------------------------------------------------------------------------------


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


# --- the jobs -------------------------------------------------------------------------------

_current: Daemon | None = None  # the daemon of this process, for its jobs


def run_source(
    url: str,
    source_id: str,
    options: dict[str, Any],
    *,
    stopping: threading.Event | None = None,
    guard: bool = True,
) -> Row[Any] | None:
    """One scheduled crawl of ``source_id``, unless a live run of it is in progress; returns
    the finished run, or None when skipped (or refused: a cassette not of the source).
    ``guard=False`` (the queue's workers) skips the check for a run in progress: the queue's
    lock already holds every other crawl of the source back."""
    engine = get_engine(url)
    aborted, _ = finish_left_runs(
        engine, source=source_id, why="marked aborted before the next run"
    )
    for run_id in aborted:
        log.warning("run %s had lost its process: marked aborted", run_id)
    busy: Sequence[Row[Any]] = ()
    if guard:
        with engine.connect() as conn:
            busy = running_runs(conn, source=source_id, states=IN_PROGRESS_STATES)
    if busy:
        run = busy[-1]
        log.warning(
            "%s: skipped, run %s is still running (pid %s on %s)",
            source_id,
            run.run_id,
            run.pid,
            run.host,
        )
        return None
    if stopping is not None and stopping.is_set():
        return None
    spec = CrawlSpec(
        source=source_id,
        mode=options.get("mode") or "live",
        cassette=Path(options["cassette"]) if options.get("cassette") else None,
        delist_after=options.get("delist_after"),
        settings=dict(options.get("settings") or {}),
        watchlist=options.get("watchlist"),
        shard=options.get("shard"),
    )
    named = f"{source_id} shard {spec.shard}" if spec.shard else source_id
    log.info("%s: crawl starting (%s)", named, spec.mode)
    try:
        run_id = crawl(spec, url=url)
    except NothingToCrawl as exc:  # an empty shard: no run
        log.info("%s: not crawled: %s", named, exc)
        return None
    except CrawlError as exc:  # refused before any run was made: the wrong cassette
        log.error("%s: not crawled: %s", named, exc)
        return None
    with engine.connect() as conn:
        run = get_run(conn, run_id)
    log.info(
        "run %s %s: pages %s, records %s, events %s%s",
        run_id,
        run.state,
        run.pages,
        run.records,
        run.events,
        f" ({run.error})" if run.error else "",
    )
    return run


def crawl_job(source_id: str, options: dict[str, Any]) -> str | None:
    """The ``crawl:<source>`` job (APScheduler calls it by reference from the job store):
    one crawl here, or with ``queue`` one crawl job deferred for the workers."""
    if _current is not None and _current.options.queue:
        jobs = _current.defer(source_id, options)
        return ", ".join(f"job {job_id}" for job_id in jobs) or None
    run = (
        run_source(database_url(), source_id, options)
        if _current is None
        else _current.run_source(source_id, options)
    )
    return run.run_id if run is not None else None


def alerts_job() -> dict[str, int]:
    """The ``alerts:send`` job: the library call behind ``creditwatch alerts send``."""
    return deliver_alerts(_current.url if _current is not None else database_url())


def deliver_alerts(url: str) -> dict[str, int]:
    """One pass of the alert sender (bundle closed digests, deliver what is due), logged when
    it did anything: the scheduler's job and a worker after a run with events."""
    report = dict(send_pending(get_engine(url)))
    if any(report.values()):
        log.info(
            "alerts: delivered %s, retry later %s, failed %s, digests bundled %s",
            report.get("delivered", 0),
            report.get("retry", 0),
            report.get("failed", 0),
            report.get("digests", 0),
        )
    return report


# --- the daemon -----------------------------------------------------------------------------


def stop_crawl_processes(
    url: str, active: Callable[[], Collection[str]], wait: Callable[[float], object]
) -> None:
    """Stop the crawl processes this process started for the crawls ``active`` still names
    (a source, or ``SOURCE#K/N`` for one shard of it: ``storage.shards.crawl_key``): SIGTERM
    (Scrapy closes the run as aborted), SIGKILL after ``KILL_GRACE`` seconds (``crawl``
    marks it); returns when ``active`` is empty, or gives up 30 s after that."""
    sent: dict[int, float] = {}
    give_up = time.monotonic() + KILL_GRACE + 30
    while active() and time.monotonic() < give_up:
        crawls = set(active())
        with get_engine(url).connect() as conn:
            runs = [r for r in running_runs(conn, host=this_host()) if crawl_key(r) in crawls]
        for run in runs:
            pid = run.pid
            if not pid or pid == os.getpid() or parent_of(pid) not in (os.getpid(), None):
                continue
            if pid not in sent:
                log.warning("stopping run %s (pid %s)", run.run_id, pid)
                _signal(pid, signal.SIGTERM)
                sent[pid] = time.monotonic()
            elif time.monotonic() - sent[pid] > KILL_GRACE:
                _signal(pid, signal.SIGKILL)
        wait(0.3)


def sweep_left_runs(engine: Engine) -> tuple[list[str], list[str]]:
    """The start-up sweep: close every run of this host whose process is gone, before any job
    runs (``finish_left_runs``); returns (aborted, finished) ids. One run that cannot be
    closed is logged and left for its source's next job, which tries again."""
    aborted, finished = [], []
    with engine.connect() as conn:
        sources = sorted(
            {run.source for run in running_runs(conn, host=this_host(), states=IN_PROGRESS_STATES)}
        )
    for source in sources:
        try:
            closed = finish_left_runs(
                engine, source=source, why="found running when the scheduler started"
            )
        except Exception:
            log.exception("runs of %s left by a process that is gone could not be closed", source)
            continue
        aborted += closed[0]
        finished += closed[1]
    for run_id in aborted:
        log.warning("run %s was left running by a process that is gone: marked aborted", run_id)
    for run_id in finished:
        log.warning("run %s was left fetched by a process that is gone: finished", run_id)
    return aborted, finished


class Daemon:
    """One scheduler process. ``serve()`` runs it until a signal or ``run_for``; tests can
    drive ``start()``/``stop()`` themselves."""

    def __init__(
        self,
        options: DaemonOptions,
        *,
        url: str | None = None,
        sources: Iterable[SourceDef] | None = None,
    ) -> None:
        self.options = options
        self.url = url or database_url()
        self.sources = list(sources) if sources is not None else None
        self.scheduler: BackgroundScheduler | None = None
        self.stopping = threading.Event()  # no new crawls
        self.forced = threading.Event()  # and stop the ones in progress
        self.lost_lead = False  # the leader lock's session broke: stop, exit status 1
        self._active: dict[str, float] = {}  # source → when its crawl started
        self._changed = threading.Condition()
        self._ends: float | None = None  # time.monotonic() when run_for elapses
        self.leader: LeaderLock | None = None
        self.queue: App | None = None  # the procrastinate App crawls are deferred to
        if options.queue and not is_postgres(self.url):
            raise DaemonError(
                "--queue needs PostgreSQL (DATABASE_URL=postgresql://...): on SQLite the "
                "scheduler crawls in its own process"
            )

    # jobs call these (from the executor's threads)

    def run_source(self, source_id: str, options: dict[str, Any]) -> Row[Any] | None:
        if self.stopping.is_set():
            return None
        with self._changed:
            self._active[source_id] = time.monotonic()
        try:
            run = run_source(self.url, source_id, options, stopping=self.stopping)
        finally:
            with self._changed:
                self._active.pop(source_id, None)
                self._changed.notify_all()
        if run is not None and run.events:
            self._wake_alerts()
        return run

    def defer(self, source_id: str, options: dict[str, Any]) -> list[int]:
        """Queue one trigger's crawl of ``source_id`` for the workers, one job per shard;
        the ids of the jobs queued (a crawl of a lock already waiting is skipped)."""
        if self.stopping.is_set() or self.queue is None:
            return []
        queued = []
        for lock, job_id in defer_crawls(self.queue, source_id, options):
            if job_id is None:
                log.warning("%s: skipped, a crawl of it is already waiting in the queue", lock)
            else:
                log.info("%s: crawl queued as job %s", lock, job_id)
                queued.append(job_id)
        return queued

    def _wake_alerts(self) -> None:
        """A run that raised events brings the next alerts pass forward to now."""
        scheduler = self.scheduler
        if scheduler is None or self.stopping.is_set():
            return
        with contextlib.suppress(Exception):  # no alerts job, or the scheduler is stopping
            scheduler.modify_job(
                ALERTS_JOB, next_run_time=datetime.now(_zone(self.options.timezone))
            )

    def _fired(self, event: JobSubmissionEvent) -> None:
        """One line per trigger fired, with the time it was due: with several daemons, the
        record that each trigger fired once, in the leader."""
        due = ", ".join(t.isoformat(timespec="seconds") for t in event.scheduled_run_times)
        log.info("job %s fired, due %s", event.job_id, due)

    @property
    def active(self) -> list[str]:
        with self._changed:
            return sorted(self._active)

    # lifecycle

    def lead(self) -> bool:
        """On PostgreSQL, take the leader lock, standing by while another daemon holds it;
        False when stopped (signal, ``run_for``) before leading. SQLite: True at once."""
        if not is_postgres(self.url):
            return True
        if self.leader is None:
            label = f"creditwatch schedule pid {os.getpid()} on {this_host()}"
            self.leader = LeaderLock(self.url, LEADER_LOCK, label)
        if self.leader.try_acquire():
            return True
        holder = self.leader.holder()
        if holder is not None:
            log.info("standing by: another scheduler leads (%s); taking over when it stops", holder)
        else:
            log.info("standing by: the leader lock is not free yet; trying every %gs", STANDBY_POLL)
        while not self.stopping.wait(STANDBY_POLL):
            if self._ends is not None and time.monotonic() >= self._ends:
                log.info("--run-for elapsed")
                self.request_stop()
                break
            if self.leader.try_acquire():
                log.info("the leader is gone: this scheduler leads now (pid %s)", os.getpid())
                return True
        return False

    def start(self) -> list[PlanItem]:
        """Lead (PostgreSQL), close runs left by dead processes, reconcile the jobs, start
        scheduling; nothing (and no scheduler) when stopped while standing by."""
        global _current
        if not self.lead():
            return []
        upgrade(self.url)
        engine = get_engine(self.url)
        if self.options.queue:
            ensure_schema(engine)
            self.queue = open_app(self.url)
        sweep_left_runs(engine)
        with engine.connect() as conn:
            for run in running_runs(conn, states=IN_PROGRESS_STATES):
                log.info(
                    "run %s is still %s (pid %s on %s)", run.run_id, run.state, run.pid, run.host
                )
        if self.sources is None:
            for problem in broken_sources():  # the others are scheduled all the same
                log.error("source not scheduled: %s", problem)
        sources = self.sources if self.sources is not None else load_registry().values()
        desired = desired_jobs(sources, self.options)
        if not any(spec.func == CRAWL_FUNC for spec in desired):
            log.warning("no source to schedule")
        self.scheduler = build_scheduler(self.url, self.options)
        self.scheduler.add_listener(self._fired, EVENT_JOB_SUBMITTED)
        self.scheduler.start(paused=True)
        _current = self
        items = reconcile(self.scheduler, desired)
        now = datetime.now(_zone(self.options.timezone))
        for item in items:
            next_run = item.next_run(now)
            zone = _zone(item.spec.timezone) if item.spec else None
            log.info(
                "job %s: %s%s",
                item.id,
                item.action,
                f", next run {next_run.astimezone(zone).isoformat(timespec='seconds')}"
                if next_run and zone
                else "",
            )
        self.scheduler.resume()
        return items

    def request_stop(self, signum: int | None = None, _frame: Any = None) -> None:
        """First call: stop starting crawls and let the running ones finish. Second: stop them."""
        if self.stopping.is_set():
            log.warning("stopping now: crawls in progress are stopped and marked aborted")
            self.forced.set()
        else:
            name = signal.Signals(signum).name if signum else "stop"
            log.info(
                "%s: no new crawls; waiting up to %gs for %s (signal again to stop them now)",
                name,
                self.options.stop_timeout,
                ", ".join(self.active) or "nothing",
            )
        self.stopping.set()

    def stop(self) -> None:
        """Stop scheduling, wait for the crawls in progress (up to ``stop_timeout``, or until
        ``forced``), stop those left, shut the scheduler down and let go of the lead."""
        self.stopping.set()
        scheduler = self.scheduler
        if scheduler is not None and scheduler.running:
            scheduler.pause()
        deadline = time.monotonic() + self.options.stop_timeout
        with self._changed:
            while self._active and not self.forced.is_set() and time.monotonic() < deadline:
                self._changed.wait(0.2)
        if self.active:
            self._stop_crawls()
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=True)
        global _current
        if _current is self:
            _current = None
        if self.queue is not None:
            self.queue.close()
            self.queue = None
        if self.leader is not None:
            self.leader.release()
            self.leader = None
        log.info("scheduler stopped")

    def _stop_crawls(self) -> None:
        stop_crawl_processes(self.url, lambda: self.active, self._wait_changed)

    def _wait_changed(self, seconds: float) -> None:
        with self._changed:
            self._changed.wait(seconds)

    def _still_leading(self) -> bool:
        if self.leader is None or self.leader.alive():
            return True
        log.error(
            "lost the leader lock (its database session broke): stopping, so that no second "
            "scheduler fires the same triggers; restart this daemon to stand by again"
        )
        self.lost_lead = True
        self.request_stop()
        return False

    def serve(self) -> int:
        """Run until SIGTERM/SIGINT or ``run_for``; the main thread only waits (and, leading
        on PostgreSQL, checks every ``LEADER_CHECK`` seconds that it still leads). Exit
        status 1 when the lead was lost."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        self._ends = time.monotonic() + self.options.run_for if self.options.run_for else None
        self.start()
        if self.scheduler is not None:
            log.info(
                "scheduler running (pid %s, %s%s); SIGTERM stops it",
                os.getpid(),
                ", ".join(job.id for job in self.scheduler.get_jobs()) or "no jobs",
                "; crawls go to the queue" if self.options.queue else "",
            )
        checked = time.monotonic()
        while not self.stopping.wait(0.2):
            if self._ends is not None and time.monotonic() >= self._ends:
                log.info("--run-for elapsed")
                self.request_stop()
            elif time.monotonic() - checked >= LEADER_CHECK:
                checked = time.monotonic()
                self._still_leading()
        self.stop()
        return 1 if self.lost_lead else 0
