"""The scheduler daemon (`creditwatch schedule`): triggers, reconciling stored jobs with the
registry, the database guard against overlapping runs, and the daemon itself as a process,
replaying the xmtravel cassettes on a short interval: restarted, stopped, killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text, update

from core.registry import RegistryError, get_source, load_registry, parse_source
from pipeline.daemon import (
    ALERTS_JOB,
    JOBS_TABLE,
    DaemonError,
    DaemonOptions,
    crontab_trigger,
    crontab_weekdays,
    desired_jobs,
    paused_scheduler,
    process_alive,
    reconcile,
    run_source,
    schedule_rows,
)
from storage.daemon import abort_dead_runs, running_runs
from storage.engine import get_engine, upgrade
from storage.models import Alert, Event, Record, RecordHistory, Run, RunRecord, RunRemoval
from storage.outbox import save_subscription
from storage.runs import create_run, set_pid
from tests.alert_receivers import webhook_receiver
from tests.helpers import DAY1, until

SHANGHAI = ZoneInfo("Asia/Shanghai")
CLI = [sys.executable, "-m", "pipeline.cli", "schedule"]
RUNS = Run.__table__


@dataclass(frozen=True)
class FakeSource:
    """What the scheduler reads of a registry source."""

    id: str
    cron: str = "0 10 * * *"
    timezone: str = "Asia/Shanghai"
    jitter: int = 0
    watchlist: str | None = None


# --- triggers ---------------------------------------------------------------------------------


def _fires(expr: str, after: datetime, n: int = 3, tz: str = "Asia/Shanghai") -> list[datetime]:
    trigger = crontab_trigger(expr, tz)
    times, previous, now = [], None, after
    for _ in range(n):
        previous = trigger.get_next_fire_time(previous, now)
        times.append(previous)
        now = previous
    return times


def test_crontab_weekdays_count_from_sunday_as_cron_does() -> None:
    assert crontab_weekdays("1") == "mon"  # APScheduler 3's own "1" would be Tuesday
    assert crontab_weekdays("0") == crontab_weekdays("7") == "sun"
    assert crontab_weekdays("1-5") == "mon,tue,wed,thu,fri"
    assert crontab_weekdays("5-7") == "fri,sat,sun"
    assert crontab_weekdays("*/2") == "tue,thu,sat,sun"  # 0, 2, 4, 6
    assert crontab_weekdays("0-6") == crontab_weekdays("*") == "*"
    assert crontab_weekdays("mon,fri") == "mon,fri"
    with pytest.raises(ValueError):
        crontab_weekdays("5-1")


def test_cron_triggers_fire_in_the_sources_time_zone() -> None:
    start = datetime(2026, 12, 4, 12, 0, tzinfo=SHANGHAI)  # a Friday
    weekly = _fires("0 9 * * 1", start, 2)  # mct_tourism, mohrss: Monday mornings
    assert [t.isoformat() for t in weekly] == [
        "2026-12-07T09:00:00+08:00",
        "2026-12-14T09:00:00+08:00",
    ]
    # 12:00 in Shanghai is 04:00 UTC: 10:00 has passed in Shanghai but not yet in UTC
    assert _fires("0 10 * * *", start, 1)[0].isoformat() == "2026-12-05T10:00:00+08:00"
    daily = _fires("0 10 * * *", start, 1, tz="UTC")
    assert daily[0].isoformat() == "2026-12-04T10:00:00+00:00"
    # day of month and day of week both restricted: either matches, as in cron
    either = _fires("0 9 1 * 1", datetime(2026, 12, 1, 10, 0, tzinfo=SHANGHAI), 3)
    assert [t.day for t in either] == [7, 14, 21]
    assert _fires("0 9 1 * 1", datetime(2026, 12, 22, tzinfo=SHANGHAI), 2)[1].day == 1  # Jan 1
    for bad in ("0 9 * *", "0 25 * * *", "0 9 * * 9"):
        with pytest.raises(DaemonError):
            crontab_trigger(bad, "Asia/Shanghai")
    with pytest.raises(DaemonError):
        crontab_trigger("0 9 * * *", "Mars/Olympus")


def test_jitter_and_options_reach_the_jobs(tmp_path: Path) -> None:
    (tmp_path / "alpha.yaml").write_text("interactions: []\n")
    sources = [
        FakeSource("alpha", jitter=600),
        FakeSource("beta", timezone="UTC", watchlist="db:"),
    ]
    jobs = {j.id: j for j in desired_jobs(sources, DaemonOptions(alerts_every=60))}
    assert set(jobs) == {"crawl:alpha", "crawl:beta", ALERTS_JOB}
    assert jobs["crawl:alpha"].trigger.jitter == 600
    assert jobs["crawl:alpha"].describe == "cron 0 10 * * * Asia/Shanghai jitter 600s"
    assert jobs["crawl:beta"].timezone == "UTC"
    assert jobs["crawl:alpha"].args == (
        "alpha",
        {"mode": "live", "cassette": None, "delist_after": None, "settings": {}, "watchlist": None},
    )
    assert jobs["crawl:beta"].args[1]["watchlist"] == "db:"
    replaying = desired_jobs(
        sources, DaemonOptions(replay_dir=tmp_path, interval=5, alerts_every=0)
    )
    assert [j.id for j in replaying] == ["crawl:alpha"]  # beta has no cassette; no alerts job
    assert replaying[0].args[1]["mode"] == "replay"
    assert replaying[0].describe == "every 5s"
    with pytest.raises(DaemonError, match="gamma"):
        desired_jobs(sources, DaemonOptions(sources=("gamma",)))


def test_registry_declares_each_sources_schedule() -> None:
    def source(schedule: dict[str, Any]) -> Any:
        return parse_source(
            {
                "id": "demo",
                "name_zh": "示例",
                "name_en": "Demo",
                "jurisdiction": {"name": "厦门市", "region_code": "350200"},
                "base_url": "http://example.test/",
                "schedule": schedule,
                "lists": [{"id": "a", "list_kind": "warning"}],
            }
        )

    declared = source({"cron": "15 2 * * 3", "timezone": "UTC", "jitter": 120, "watchlist": "db:"})
    assert (declared.cron, declared.timezone, declared.jitter) == ("15 2 * * 3", "UTC", 120)
    assert declared.watchlist == "db:" and source({}).watchlist is None
    assert source({}).jitter == 0 and source({}).timezone == "Asia/Shanghai"
    for bad in (-1, 1.5, "600"):
        with pytest.raises(RegistryError, match="jitter"):
            source({"jitter": bad})
    with pytest.raises(RegistryError, match="watchlist"):
        source({"watchlist": ""})
    # every shipped source's cron expression and time zone make a trigger
    assert {job.id for job in desired_jobs(load_registry().values(), DaemonOptions())} == {
        *(f"crawl:{sid}" for sid in load_registry()),
        ALERTS_JOB,
    }


# --- reconciling with the stored jobs -------------------------------------------------------


def _stored(url: str) -> dict[str, Any]:
    with paused_scheduler(url, DaemonOptions()) as scheduler:
        return {job.id: job for job in scheduler.get_jobs()}


def _reconciled(url: str, sources: list[FakeSource], options: DaemonOptions) -> dict[str, str]:
    with paused_scheduler(url, options) as scheduler:
        items = reconcile(scheduler, desired_jobs(sources, options))
    return {item.id: item.action for item in items}


def test_jobs_persist_and_reconcile_with_the_registry(db_url: str) -> None:
    upgrade(db_url)
    options = DaemonOptions(alerts_every=0)
    sources = [FakeSource("alpha"), FakeSource("beta", cron="0 4 * * 1"), FakeSource("gamma")]
    assert _reconciled(db_url, sources, options) == dict.fromkeys(
        ("crawl:alpha", "crawl:beta", "crawl:gamma"), "add"
    )
    first = _stored(db_url)
    assert first["crawl:beta"].next_run_time.weekday() == 0  # Monday
    assert all(job.coalesce and job.max_instances == 1 for job in first.values())
    assert first["crawl:alpha"].misfire_grace_time == 3600

    # a restart with the same registry keeps every job and its next run as stored
    assert set(_reconciled(db_url, sources, options).values()) == {"keep"}
    again = _stored(db_url)
    assert {k: j.next_run_time for k, j in again.items()} == {
        k: j.next_run_time for k, j in first.items()
    }
    with get_engine(db_url).connect() as conn:
        assert conn.execute(text(f"select count(*) from {JOBS_TABLE}")).scalar_one() == 3

    # beta's cron changes, gamma leaves the registry, delta joins, and every crawl's options
    # change (a Scrapy setting): alpha keeps its next run, beta gets a new one
    changed = [FakeSource("alpha"), FakeSource("beta", cron="30 4 * * 2"), FakeSource("delta")]
    new_options = DaemonOptions(alerts_every=120, settings={"DOWNLOAD_DELAY": "1"})
    assert _reconciled(db_url, changed, new_options) == {
        "crawl:alpha": "update",
        "crawl:beta": "replace",
        "crawl:delta": "add",
        "crawl:gamma": "remove",
        ALERTS_JOB: "add",
    }
    after = _stored(db_url)
    assert set(after) == {"crawl:alpha", "crawl:beta", "crawl:delta", ALERTS_JOB}
    assert after["crawl:alpha"].next_run_time == first["crawl:alpha"].next_run_time
    assert after["crawl:alpha"].args[1]["settings"] == {"DOWNLOAD_DELAY": "1"}
    beta_next = after["crawl:beta"].next_run_time.astimezone(SHANGHAI)
    assert (beta_next.weekday(), beta_next.hour, beta_next.minute) == (1, 4, 30)

    rows = {r["id"]: r for r in schedule_rows(new_options, url=db_url, sources=changed)}
    assert {r["status"] for r in rows.values()} == {"stored"}
    assert rows["crawl:beta"]["next_run"] == beta_next.isoformat(timespec="seconds")
    assert rows["crawl:beta"]["trigger"] == "cron 30 4 * * 2 Asia/Shanghai"
    preview = {r["id"]: r["status"] for r in schedule_rows(options, url=db_url, sources=sources)}
    assert preview == {
        "crawl:alpha": "stored, options change at start",
        "crawl:beta": "trigger changes at start",
        "crawl:gamma": "new at start",
        "crawl:delta": "removed at start",
        ALERTS_JOB: "removed at start",
    }


# --- runs whose process is gone, and the guard against overlapping runs ---------------------


@pytest.fixture
def sleepers() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Processes that stand in for crawl processes (their command line names a run)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *args])
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _new_run(url: str, source: str, pid: int) -> str:
    run_id = create_run(
        get_engine(url), get_source(source), mode="replay", cassette=None, delist_after=2
    )
    set_pid(get_engine(url), run_id, pid)
    return run_id


def _stage(url: str, run_id: str) -> None:
    row = {
        "run_id": run_id,
        "list": "xmtravel.warning",
        "record_key": "k1",
        "source": "xmtravel",
        "entity_id": "e1",
        "data": {"entity_name": "x"},
    }
    with get_engine(url).begin() as conn:
        conn.execute(RunRecord.__table__.insert().values(content_hash="h", **row))
        conn.execute(RunRemoval.__table__.insert().values(**row))


def _count(url: str, table: Any, *where: Any) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def test_runs_of_dead_processes_are_aborted_and_their_staging_dropped(
    db_url: str, sleepers: Callable[..., subprocess.Popen[bytes]]
) -> None:
    upgrade(db_url)
    dead = _new_run(db_url, "xmtravel", _dead_pid())
    _stage(db_url, dead)
    live = _new_run(db_url, "xmtravel", 0)
    set_pid(get_engine(db_url), live, sleepers("-s", f"CW_RUN_ID={live}").pid)
    # the pid now belongs to the crawl process of another run: the pid was reused
    reused = _new_run(db_url, "gsxt", sleepers("-s", "CW_RUN_ID=gsxt:99").pid)
    elsewhere = _new_run(db_url, "caac", _dead_pid())
    with get_engine(db_url).begin() as conn:
        conn.execute(update(RUNS).where(RUNS.c.run_id == elsewhere).values(host="other-host"))

    aborted = abort_dead_runs(get_engine(db_url), process_alive, why="test sweep")
    assert sorted(aborted) == sorted([dead, reused])
    with get_engine(db_url).connect() as conn:
        states = dict(conn.execute(select(RUNS.c.run_id, RUNS.c.state)).all())
        error = conn.execute(select(RUNS.c.error).where(RUNS.c.run_id == dead)).scalar_one()
        still = [r.run_id for r in running_runs(conn)]
    assert states[dead] == states[reused] == "aborted"
    assert "is gone; test sweep" in error
    assert sorted(still) == sorted([live, elsewhere])  # alive; another host's
    assert _count(db_url, RunRecord.__table__, RunRecord.__table__.c.run_id == dead) == 0
    assert _count(db_url, RunRemoval.__table__, RunRemoval.__table__.c.run_id == dead) == 0

    # the guard: a scheduled crawl of xmtravel while `live` runs is skipped, no run is made
    options = {"mode": "replay", "cassette": str(DAY1), "delist_after": None, "settings": {}}
    assert run_source(db_url, "xmtravel", options) is None
    assert _count(db_url, RUNS, RUNS.c.source == "xmtravel") == 2


# --- the daemon, as a process ---------------------------------------------------------------


def _env(url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": url}


def _daemon(
    url: str, log: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    upgrade(url)  # the daemon would; done first so the test can poll the runs table at once
    with log.open("ab") as stream:
        return subprocess.Popen(
            [*CLI, *args],
            env={**_env(url), **(env or {})},
            stdout=stream,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a service's cgroup
        )


def _runs(url: str) -> list[Any]:
    with get_engine(url).connect() as conn:
        return conn.execute(select(RUNS).order_by(RUNS.c.seq)).all()


def _crawling(url: str, daemon: subprocess.Popen[bytes]) -> Any:
    """The daemon's run in progress once its crawl process has started."""
    return next(
        (r for r in _runs(url) if r.state == "running" and r.pid and r.pid != daemon.pid), None
    )


def _stop(daemon: subprocess.Popen[bytes], timeout: float = 60) -> int:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
    try:
        return daemon.wait(timeout)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


@pytest.mark.replay
def test_restart_keeps_stored_jobs_and_list_shows_them(
    sqlite_url: str, replay_dir: Path, tmp_path: Path
) -> None:
    args = ["--replay-dir", str(replay_dir), "--interval", "3600", "--alerts-every", "600"]
    log = tmp_path / "daemon.log"
    for _ in range(2):
        assert _daemon(sqlite_url, log, *args, "--run-for", "0.2").wait(60) == 0
        with get_engine(sqlite_url).connect() as conn:
            stored = dict(conn.execute(text(f"select id, next_run_time from {JOBS_TABLE}")).all())
        if _ == 0:
            first = stored
    assert stored == first and set(stored) == {"crawl:xmtravel", ALERTS_JOB}
    assert "job crawl:xmtravel: keep" in log.read_text()

    listed = subprocess.run(
        [*CLI, "--list", "--json", *args], env=_env(sqlite_url), capture_output=True, check=True
    )
    rows = {r["id"]: r for r in map(json.loads, listed.stdout.decode().splitlines())}
    assert rows["crawl:xmtravel"]["status"] == "stored"
    assert rows["crawl:xmtravel"]["mode"] == "replay"
    assert rows["crawl:xmtravel"]["trigger"] == "every 3600s"
    when = datetime.fromisoformat(rows["crawl:xmtravel"]["next_run"])
    assert when.utcoffset().total_seconds() == 8 * 3600  # shown in Asia/Shanghai
    assert when.timestamp() == pytest.approx(first["crawl:xmtravel"], abs=1)
    assert not _runs(sqlite_url)  # nothing ran: the interval is an hour


@pytest.mark.replay
def test_overlapping_triggers_run_once_and_sigterm_waits_for_the_run(
    sqlite_url: str, replay_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    daemon = _daemon(
        sqlite_url,
        log,
        *("--replay-dir", str(replay_dir), "--interval", "1", "--alerts-every", "0"),
        *("--setting", "CW_PACE=0.1", "--setting", "CONCURRENT_REQUESTS_PER_DOMAIN=1"),
    )
    try:
        most = 0

        def second_run_started() -> bool:
            nonlocal most
            runs = _runs(sqlite_url)
            most = max(most, sum(r.state == "running" for r in runs))
            return len(runs) >= 2 and runs[1].pid not in (None, daemon.pid)

        until(second_run_started, 90, "a second run", every=0.05)
        first = _runs(sqlite_url)[0]
        assert first.state == "healthy"
        assert daemon.poll() is None
    finally:
        code = _stop(daemon)
    assert code == 0, log.read_text()
    runs = _runs(sqlite_url)
    assert most == 1  # one crawl at a time
    assert [r.state for r in runs] == ["healthy", "healthy"]  # SIGTERM let the second finish
    assert [r.events for r in runs] == [20, 0]
    output = log.read_text()
    assert "skipped: maximum number of running instances reached" in output
    assert "no new crawls; waiting" in output


@pytest.mark.replay
def test_sigkill_mid_run_leaves_an_aborted_run_and_nothing_visible(
    db_url: str, replay_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    common = ("--replay-dir", str(replay_dir), "--interval", "1", "--alerts-every", "0")
    slow = ("--setting", "CW_PACE=0.5", "--setting", "CONCURRENT_REQUESTS_PER_DOMAIN=1")
    daemon = _daemon(db_url, log, *common, *slow)
    try:
        killed = until(lambda: _crawling(db_url, daemon), 60, "the first crawl")
        time.sleep(1.5)  # mid-run: fetching
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)  # the daemon and its crawl, as a service kill
        daemon.wait()
    (left,) = _runs(db_url)
    assert left.run_id == killed.run_id and left.state == "running"
    assert _count(db_url, Record.__table__) == 0 and _count(db_url, Event.__table__) == 0

    restarted = _daemon(db_url, log, *common)
    try:
        until(lambda: any(r.state == "healthy" for r in _runs(db_url)), 60, "a run after restart")
    finally:
        assert _stop(restarted) == 0, log.read_text()
    runs = {r.run_id: r for r in _runs(db_url)}
    aborted = runs[killed.run_id]
    assert aborted.state == "aborted"
    assert "found running when the scheduler started" in aborted.error
    assert _count(db_url, Event.__table__, Event.__table__.c.run_id == killed.run_id) == 0
    records = Record.__table__
    assert _count(db_url, records, records.c.last_run_id == killed.run_id) == 0
    history = RecordHistory.__table__
    assert (
        _count(
            db_url, history, history.c.source == "xmtravel", history.c.first_run_seq == killed.seq
        )
        == 0
    )
    staged = RunRecord.__table__
    assert _count(db_url, staged, staged.c.run_id == killed.run_id) == 0
    assert _count(db_url, RunRemoval.__table__) == 0
    # the next run is the baseline, once: 20 listings, no duplicates
    after = [r for r in runs.values() if r.run_id != killed.run_id]
    assert [r.state for r in after] == ["healthy"] * len(after)
    assert after[0].events == 20 and sum(r.events for r in after) == 20
    with get_engine(db_url).connect() as conn:
        events = conn.execute(select(Event.__table__)).all()
    assert len(events) == 20
    assert len({(e.list, e.record_key, e.event) for e in events}) == 20
    assert _count(db_url, records) == 31


@pytest.mark.replay
def test_sigterm_stops_a_crawl_that_outlasts_the_stop_timeout(
    sqlite_url: str, replay_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "daemon.log"
    daemon = _daemon(
        sqlite_url,
        log,
        *("--replay-dir", str(replay_dir), "--interval", "1", "--alerts-every", "0"),
        *("--setting", "CW_PACE=0.5", "--setting", "CONCURRENT_REQUESTS_PER_DOMAIN=1"),
        *("--stop-timeout", "1"),
    )
    try:
        crawling = until(lambda: _crawling(sqlite_url, daemon), 60, "the first crawl")
        time.sleep(1.0)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
    finally:
        if daemon.poll() is None:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
    assert code == 0, log.read_text()
    (run,) = _runs(sqlite_url)
    assert run.run_id == crawling.run_id and run.state == "aborted", run.error
    assert _count(sqlite_url, Event.__table__) == 0 and _count(sqlite_url, Record.__table__) == 0
    assert _count(sqlite_url, RunRecord.__table__) == 0
    assert f"stopping run {run.run_id}" in log.read_text()


@pytest.mark.replay
def test_a_run_with_events_brings_the_alerts_job_forward(
    sqlite_url: str, replay_dir: Path, tmp_path: Path
) -> None:
    secret = "s3cret-for-tests"
    with webhook_receiver(secret) as (hook, hooked):
        upgrade(sqlite_url)
        with get_engine(sqlite_url).begin() as conn:
            subscription = {
                "id": "all-warnings",
                "lists": ["xmtravel.warning"],
                "include_baseline": True,
                "channels": [f"webhook:{hook}"],
            }
            save_subscription(conn, subscription, "test", datetime.now(UTC))
        log = tmp_path / "daemon.log"
        # the alerts job's own interval is an hour: only the run can bring it forward
        args = ("--replay-dir", str(replay_dir), "--interval", "1", "--alerts-every", "3600")
        daemon = _daemon(sqlite_url, log, *args, env={"CREDITWATCH_WEBHOOK_SECRET": secret})
        try:
            until(lambda: len(hooked.applied) > 0, 90, "alerts delivered")
            time.sleep(1)
        finally:
            assert _stop(daemon) == 0, log.read_text()
    with get_engine(sqlite_url).connect() as conn:
        alerts = conn.execute(select(Alert.__table__)).all()
        warning_events = conn.execute(
            select(Event.__table__.c.event_id).where(Event.__table__.c.list == "xmtravel.warning")
        ).all()
    assert warning_events and len(alerts) == len(warning_events)
    assert {a.status for a in alerts} == {"delivered"}
    assert set(hooked.applied) == {a.alert_key for a in alerts}
    assert all(n == 1 for n in hooked.received.values())
