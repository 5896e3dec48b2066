"""Crawl workers on several hosts (issue 19, item 3): `creditwatch schedule --queue` defers
crawls to procrastinate on PostgreSQL, `creditwatch worker` processes take them, one
scheduler leads by an advisory lock, and a worker killed mid-crawl is noticed by the others
(heartbeats) and its crawl run again. Every process here is a real one, on its own test
schema, replaying shipped cassettes; heartbeats are shortened so a death is seen in ~2 s."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text
from typer.testing import CliRunner

from core.registry import get_source
from pipeline.cli import app as cli_app
from pipeline.processes import parent_of
from pipeline.queue import TASK, defer_crawl, ensure_schema, open_app, reap_stalled
from storage.engine import get_engine, upgrade
from storage.models import Event, Record, Run, RunRecord
from storage.runs import create_run, set_pid
from tests.conftest import PG_ADMIN_URL, PG_PROBLEM
from tests.helpers import DAY1, FIXTURES, until
from tests.replay_cache import Replay

RUNS = Run.__table__
CLI = [sys.executable, "-m", "pipeline.cli"]
# Short heartbeats: a dead worker is taken for dead 2 s after its last one.
FAST_HEARTBEAT = ("--heartbeat", "0.5", "--stalled-after", "2")

# --- databases and processes ------------------------------------------------------------------


@pytest.fixture
def pg_schema() -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL schemas (as conftest's ``db_url``), as many as the test asks for."""
    if PG_PROBLEM:
        pytest.skip(PG_PROBLEM)
    admin = create_engine(PG_ADMIN_URL)
    made: list[tuple[str, str]] = []

    def make() -> str:
        schema = f"cw_test_{uuid.uuid4().hex[:12]}"
        with admin.begin() as conn:
            conn.execute(text(f'create schema "{schema}"'))
        sep = "&" if "?" in PG_ADMIN_URL else "?"
        url = f"{PG_ADMIN_URL}{sep}options=-csearch_path%3D{schema}"
        made.append((schema, url))
        return url

    yield make
    for schema, url in made:
        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
    admin.dispose()


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``start(url, log, *args)``: a ``creditwatch`` process in its own process group (as a
    service's cgroup); whatever is still running at the end is killed with its group."""
    started: list[subprocess.Popen[bytes]] = []

    def start(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
        with log.open("ab") as stream:
            proc = subprocess.Popen(
                [*CLI, *args],
                env={**os.environ, "DATABASE_URL": url},
                stdout=stream,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _stop(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """SIGTERM, and the process must end by itself, status 0."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"did not stop on SIGTERM:\n{log.read_text()}") from None
    assert code == 0, log.read_text()


def _runs(url: str) -> list[Any]:
    with get_engine(url).connect() as conn:
        return conn.execute(select(RUNS).order_by(RUNS.c.source, RUNS.c.seq)).all()


def _jobs(url: str) -> list[Any]:
    with get_engine(url).connect() as conn:
        return conn.execute(
            text(
                "SELECT id, args->>'source_id' AS source, status::text AS status, attempts "
                "FROM procrastinate_jobs WHERE task_name = :task ORDER BY id"
            ),
            {"task": TASK},
        ).all()


def _job_spans(url: str) -> dict[int, list[tuple[Any, Any]]]:
    """When each job was taken and when it ended, in the database's time: (start, end)."""
    with get_engine(url).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT job_id, type::text AS type, at FROM procrastinate_events "
                "WHERE type IN ('started', 'succeeded', 'failed', 'deferred_for_retry') "
                "ORDER BY id"
            )
        ).all()
    spans: dict[int, list[tuple[Any, Any]]] = {}
    for row in rows:
        if row.type == "started":
            spans.setdefault(row.job_id, []).append((row.at, None))
        else:
            start, _ = spans[row.job_id][-1]
            spans[row.job_id][-1] = (start, row.at)
    return spans


FIRED = re.compile(r"job crawl:(\w+) fired, due (\S+)")


def _fired(log: Path) -> list[tuple[str, str]]:
    return FIRED.findall(log.read_text())


def _finished(url: str, source: str) -> list[Any]:
    return [r for r in _runs(url) if r.source == source and r.state not in ("running", "fetched")]


# --- SQLite keeps the in-process daemon -------------------------------------------------------


def test_worker_and_queue_refuse_sqlite(sqlite_url: str) -> None:
    runner = CliRunner()
    for args in (["worker"], ["schedule", "--queue", "--run-for", "1"]):
        result = runner.invoke(cli_app, args, env={"DATABASE_URL": sqlite_url})
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "needs PostgreSQL" in lines[0], result.output


# --- reaping the jobs of dead workers, in-process -----------------------------------------------


def _stale_worker(url: str) -> int:
    """A worker as procrastinate registers it, silent for an hour."""
    with get_engine(url).begin() as conn:
        worker_id = conn.execute(text("SELECT procrastinate_register_worker_v1()")).scalar_one()
        conn.execute(
            text(
                "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
                "WHERE id = :id"
            ),
            {"id": worker_id},
        )
    return int(worker_id)


def _take(url: str, worker_id: int) -> int:
    """The next crawl job, taken by ``worker_id`` as its fetch would."""
    with get_engine(url).begin() as conn:
        return int(
            conn.execute(
                text("SELECT id FROM procrastinate_fetch_job_v2(ARRAY['crawls'], :worker)"),
                {"worker": worker_id},
            ).scalar_one()
        )


@pytest.mark.postgres
def test_reaping_waits_for_a_live_process_and_never_queues_a_source_twice(
    pg_schema: Callable[[], str],
) -> None:
    url = pg_schema()
    upgrade(url)
    engine = get_engine(url)
    assert ensure_schema(engine) is True and ensure_schema(engine) is False
    queue = open_app(url)
    options = {"mode": "replay", "cassette": str(DAY1), "settings": {}}
    sleeper = None
    try:
        job = defer_crawl(queue, "xmtravel", options)
        assert job is not None
        assert _take(url, _stale_worker(url)) == job
        run_id = create_run(
            engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=2
        )
        # the dead worker's crawl process still runs on this host: the job waits for it
        sleeper = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)", "-s", f"CW_RUN_ID={run_id}"]
        )
        set_pid(engine, run_id, sleeper.pid)
        assert reap_stalled(engine, 2) == []
        assert [(j.id, j.status) for j in _jobs(url)] == [(job, "doing")]
        sleeper.kill()
        sleeper.wait()
        (reaped,) = reap_stalled(engine, 2)
        assert (reaped.job_id, reaped.aborted, reaped.outcome) == (job, (run_id,), "retried")
        assert [(j.id, j.status) for j in _jobs(url)] == [(job, "todo")]
        (run,) = _runs(url)
        assert run.state == "aborted" and f"the worker of crawl job {job} is gone" in run.error
        assert reap_stalled(engine, 2) == []  # nothing twice

        # taken again by a worker that dies too, while the next trigger's crawl already
        # waits: that one is the retry, the dead one fails
        assert _take(url, _stale_worker(url)) == job
        waiting = defer_crawl(queue, "xmtravel", options)
        assert waiting is not None and defer_crawl(queue, "xmtravel", options) is None
        (reaped,) = reap_stalled(engine, 2)
        assert (reaped.job_id, reaped.aborted, reaped.outcome) == (job, (), "failed")
        assert [(j.id, j.status) for j in _jobs(url)] == [(job, "failed"), (waiting, "todo")]
        # a worker heard from recently is alive: its job is left alone
        with engine.begin() as conn:
            fresh = conn.execute(text("SELECT procrastinate_register_worker_v1()")).scalar_one()
        assert _take(url, int(fresh)) == waiting
        assert reap_stalled(engine, 2) == []
    finally:
        queue.close()
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


# --- the acceptance tests ---------------------------------------------------------------------


@pytest.mark.replay
@pytest.mark.postgres
def test_two_workers_and_one_scheduler_run_each_trigger_once(
    pg_schema: Callable[[], str],
    processes: Callable[..., subprocess.Popen[bytes]],
    replay_dir: Path,
    tmp_path: Path,
) -> None:
    (replay_dir / "caac.yaml").symlink_to(FIXTURES / "caac" / "caac-day1.yaml")
    url = pg_schema()
    upgrade(url)
    workers = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    procs = [
        processes(url, log, "worker", "--concurrency", "1", *FAST_HEARTBEAT) for log in workers
    ]
    sched_log = tmp_path / "schedule.log"
    scheduler = processes(
        url, sched_log, "schedule", "--queue", "--replay-dir", str(replay_dir),
        "--interval", "5", "--alerts-every", "0",
    )  # fmt: skip
    try:
        # two triggers of each source; the scheduler stops before a third
        until(
            lambda: all(
                sum(source == s for s, _ in _fired(sched_log)) >= 2
                for source in ("xmtravel", "caac")
            ),
            60,
            "two triggers of each source",
            every=0.2,
        )
        _stop(scheduler, sched_log)
        # what the triggers queued is crawled
        until(
            lambda: all(j.status not in ("todo", "doing") for j in _jobs(url)),
            90,
            "the queue to drain",
            every=0.3,
        )
    finally:
        for proc, log in zip(procs, workers, strict=True):
            _stop(proc, log)

    fired = _fired(sched_log)
    assert "already waiting" not in sched_log.read_text()
    jobs, runs = _jobs(url), _runs(url)
    for source in ("xmtravel", "caac"):
        triggers = [due for s, due in fired if s == source]
        assert len(triggers) == len(set(triggers)) >= 2
        # every trigger: one job, one run, no more, no less
        assert [j.status for j in jobs if j.source == source] == ["succeeded"] * len(triggers)
        source_runs = [r for r in runs if r.source == source]
        assert len(source_runs) == len(triggers)
        assert {r.state for r in source_runs} == {"healthy"}
        assert {j.attempts for j in jobs if j.source == source} == {1}
        # one crawl of a source at a time: its jobs' spans (database time) do not overlap
        spans = sorted(span for j in jobs if j.source == source for span in _job_spans(url)[j.id])
        assert all(end <= later for (_, end), (later, _) in itertools.pairwise(spans))
    xmtravel = [r for r in runs if r.source == "xmtravel"]
    assert [r.events for r in xmtravel][:2] == [20, 0]  # the same cassette twice
    # both workers crawled
    for log in workers:
        assert re.search(r"job \d+: crawl of (xmtravel|caac)", log.read_text()), log.read_text()


@pytest.mark.replay
@pytest.mark.postgres
def test_a_worker_killed_mid_crawl_is_aborted_and_retried_elsewhere(
    pg_schema: Callable[[], str],
    processes: Callable[..., subprocess.Popen[bytes]],
    replayed: Callable[..., list[str]],
    tmp_path: Path,
) -> None:
    url, reference = pg_schema(), pg_schema()
    replayed(reference, Replay(DAY1))  # the same cassette, crawled once, undisturbed
    upgrade(url)
    ensure_schema(get_engine(url))
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [processes(url, log, "worker", "--concurrency", "1", *FAST_HEARTBEAT) for log in logs]
    queue = open_app(url)
    try:
        slow = {"CW_PACE": "0.08", "CONCURRENT_REQUESTS_PER_DOMAIN": "1"}
        options = {
            "mode": "replay", "cassette": str(DAY1), "delist_after": None,
            "settings": slow, "watchlist": None,
        }  # fmt: skip
        job_id = defer_crawl(queue, "xmtravel", options)
        assert defer_crawl(queue, "xmtravel", options) is None  # one waits already

        def fetching() -> Any:  # the run, once a worker's crawl process holds it
            pids = {w.pid for w in workers}
            return next(
                (r for r in _runs(url) if r.state == "running" and parent_of(r.pid or 0) in pids),
                None,
            )

        killed = until(fetching, 60, "a worker's crawl process")
        time.sleep(2.0)  # mid-run: Scrapy started, about a third of the pages fetched
        (victim,) = [w for w in workers if w.pid == parent_of(killed.pid)]
        survivor_log = logs[1 - workers.index(victim)]
        os.killpg(victim.pid, signal.SIGKILL)  # the worker and its crawl, as a host going down
        victim.wait()
        until(lambda: any(r.state == "healthy" for r in _runs(url)), 90, "the retried crawl", 0.2)
        until(lambda: _jobs(url)[0].status == "succeeded", 30, "the job to succeed")
    finally:
        queue.close()
        for proc, log in zip(workers, logs, strict=True):
            if proc.poll() is None:
                _stop(proc, log)

    first, retried = _runs(url)
    assert (first.run_id, first.state) == (killed.run_id, "aborted")
    assert f"the worker of crawl job {job_id} is gone" in first.error
    assert retried.state == "healthy" and retried.events == 20
    (job,) = _jobs(url)
    assert (job.id, job.status) == (job_id, "succeeded")
    assert f"job {job_id} (xmtravel): worker gone, back in the queue" in survivor_log.read_text()
    assert re.search(rf"job {job_id}: crawl of xmtravel \(attempt 2\)", survivor_log.read_text())

    # nothing of the killed run is stored; the rest is what one undisturbed crawl stores
    assert _stored(url) == _stored(reference)
    records, events = Record.__table__, Event.__table__
    with get_engine(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(records)).scalar_one() == 31
        assert conn.execute(select(events.c.run_id).distinct()).scalars().all() == [retried.run_id]
        staged = RunRecord.__table__
        assert not conn.execute(select(staged).where(staged.c.run_id == killed.run_id)).first()


def _stored(url: str) -> tuple[list[Any], list[Any]]:
    """The records (key, content) and events (key, kind) of a database, whichever runs."""
    records, events = Record.__table__, Event.__table__
    with get_engine(url).connect() as conn:
        return (
            sorted(
                conn.execute(select(records.c.list, records.c.record_key, records.c.content_hash))
            ),
            sorted(conn.execute(select(events.c.list, events.c.record_key, events.c.event))),
        )


@pytest.mark.replay
@pytest.mark.postgres
def test_two_daemons_started_at_once_fire_each_trigger_once(
    pg_schema: Callable[[], str],
    processes: Callable[..., subprocess.Popen[bytes]],
    replay_dir: Path,
    tmp_path: Path,
) -> None:
    url = pg_schema()
    upgrade(url)
    args = ("schedule", "--queue", "--replay-dir", str(replay_dir), "--interval", "1")
    logs = [tmp_path / "schedule-a.log", tmp_path / "schedule-b.log"]
    daemons = [processes(url, log, *args, "--alerts-every", "0") for log in logs]
    try:
        until(lambda: any(len(_fired(log)) >= 2 for log in logs), 60, "the leader to fire twice")
        leader, standby = (0, 1) if len(_fired(logs[0])) >= 2 else (1, 0)
        until(lambda: "standing by" in logs[standby].read_text(), 10, "the other to stand by")
        assert not _fired(logs[standby])

        # killed with the trigger's next run stored, not between firing and storing it
        def between_triggers() -> bool:
            with get_engine(url).connect() as conn:
                next_run = conn.execute(
                    text("SELECT next_run_time FROM scheduler_jobs WHERE id = 'crawl:xmtravel'")
                ).scalar_one()
            return next_run - time.time() > 0.4

        until(between_triggers, 10, "a moment between two triggers", every=0.02)
        os.killpg(daemons[leader].pid, signal.SIGKILL)
        daemons[leader].wait()
        until(lambda: len(_fired(logs[standby])) >= 2, 30, "the standby to take over and fire")
        _stop(daemons[standby], logs[standby])
    finally:
        for proc in daemons:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    before = [due for _, due in _fired(logs[leader])]
    after = [due for _, due in _fired(logs[standby])]
    standing_by = logs[standby].read_text()
    assert "standing by: another scheduler leads (creditwatch schedule pid" in standing_by
    assert standing_by.index("this scheduler leads now") < standing_by.index("fired, due")
    # no trigger fired twice, by one daemon or by the two; the successor carries on after
    assert len(set(before + after)) == len(before) + len(after)
    assert max(before) < min(after)


@pytest.mark.replay
@pytest.mark.postgres
def test_sigterm_waits_then_stops_the_crawl_and_requeues_its_job(
    pg_schema: Callable[[], str],
    processes: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    url = pg_schema()
    upgrade(url)
    ensure_schema(get_engine(url))
    log = tmp_path / "worker.log"
    worker = processes(url, log, "worker", "--stop-timeout", "1")
    queue = open_app(url)
    try:
        slow = {"CW_PACE": "0.5", "CONCURRENT_REQUESTS_PER_DOMAIN": "1"}
        job = defer_crawl(
            queue, "xmtravel", {"mode": "replay", "cassette": str(DAY1), "settings": slow}
        )
        until(
            lambda: any(
                r.state == "running" and parent_of(r.pid or 0) == worker.pid for r in _runs(url)
            ),
            60,
            "the worker's crawl process",
        )
        _stop(worker, log)
    finally:
        queue.close()
    (run,) = _runs(url)
    assert run.state == "aborted"
    assert [(j.id, j.status, j.attempts) for j in _jobs(url)] == [(job, "todo", 1)]
    output = log.read_text()
    assert "SIGTERM: no new jobs; waiting up to 1s for xmtravel" in output
    assert (
        f"job {job}: run {run.run_id} stopped by the worker's shutdown; back in the queue" in output
    )
