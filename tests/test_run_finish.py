"""The finish step runs outside the fetcher: the Scrapy child marks a run ``fetched`` and the
conductor (``pipeline/run.py``) judges it, detects changes and queues alerts after the child
has exited. A conductor killed between the two leaves the run ``fetched``; the next crawl of
its source, or the scheduler's start-up sweep, finishes it (not aborts it), once, however
many finishers try. Runs replay the xmtravel cassettes, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import pipeline.finalize as finalize
from core.registry import get_source
from core.summary import RunSummary
from pipeline.daemon import Daemon, DaemonOptions, sweep_left_runs
from pipeline.run import STOP_AFTER_FETCH
from storage.engine import get_engine, upgrade
from storage.models import Alert, Event, Record, Run, RunRecord, RunRemoval
from storage.outbox import save_subscription
from storage.runs import create_run, run_summary, set_pid
from tests.helpers import DAY1, DAY2, replay, run_row

ROOT = Path(__file__).resolve().parent.parent
RUN = Run.__table__
BASELINE_EVENTS = 20  # DAY1's listings, as every baseline run of it raises
SUBSCRIPTION = {
    "id": "all-warnings",
    "lists": ["xmtravel.warning"],
    "include_baseline": True,
    "channels": ["webhook:http://127.0.0.1:9/hook"],
}
CONDUCTOR = """
import sys
from pathlib import Path
from pipeline.run import CrawlSpec, crawl
crawl(CrawlSpec(source="xmtravel", mode="replay", cassette=Path(sys.argv[2])), url=sys.argv[1])
"""


def _count(url: str, table: Any, *where: Any) -> int:
    with get_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _subscribe(url: str) -> None:
    upgrade(url)
    with get_engine(url).begin() as conn:
        save_subscription(conn, SUBSCRIPTION, "test", datetime.now(UTC))


def _killed_after_fetching(url: str, cassette: Path = DAY1) -> str:
    """A crawl whose conductor is SIGKILLed right after its child marked the run ``fetched``:
    the conductor stops itself there (``STOP_AFTER_FETCH``); this waits for that stop."""
    _subscribe(url)
    conductor = subprocess.Popen(
        [sys.executable, "-c", CONDUCTOR, url, str(cassette)],
        cwd=ROOT,
        env={**os.environ, STOP_AFTER_FETCH: "1"},
    )
    status: list[int] = []
    waiter = threading.Thread(
        target=lambda: status.append(os.waitpid(conductor.pid, os.WUNTRACED)[1]), daemon=True
    )
    waiter.start()
    waiter.join(180)
    try:
        assert status, "the conductor neither stopped nor exited within 180 s"
        assert os.WIFSTOPPED(status[0]), f"the conductor ended instead of stopping: {status}"
    finally:
        conductor.kill()  # SIGKILL: also ends a stopped process
        conductor.wait()
    with get_engine(url).connect() as conn:
        (run_id,) = conn.execute(select(RUN.c.run_id).order_by(RUN.c.seq.desc()).limit(1)).one()
    left = run_row(url, run_id)
    assert left.state == "fetched", left.error
    assert left.pid == conductor.pid  # the conductor took the run from its child
    assert _count(url, Event.__table__) == 0 and _count(url, Record.__table__) == 0
    assert _count(url, RunRecord.__table__, RunRecord.__table__.c.run_id == run_id) > 0
    return run_id


def _assert_finished_once(url: str, run_id: str) -> None:
    """``run_id`` is finished as an uninterrupted run would be: healthy, its baseline events
    once each, its staging consumed, one alert per subscribed event."""
    run = run_row(url, run_id)
    assert run.state == "healthy", run.error
    assert run.error is None and run.ended_at is not None
    assert run.events == BASELINE_EVENTS
    with get_engine(url).connect() as conn:
        events = conn.execute(
            select(Event.__table__).where(Event.__table__.c.run_id == run_id)
        ).all()
        alerts = conn.execute(
            select(Alert.__table__).where(Alert.__table__.c.run_id == run_id)
        ).all()
    assert len(events) == BASELINE_EVENTS
    assert len({(e.list, e.record_key, e.event) for e in events}) == BASELINE_EVENTS
    assert set(run.summary) == {"lists", "outcomes", "events"}  # the shape runs always had
    summary = run_summary(run)
    assert summary.stored() == run.summary
    assert {k: n for k, n in summary.events.items() if n} == dict(Counter(e.event for e in events))
    assert set(summary.lists) == set(get_source("xmtravel").list_ids)
    assert summary.outcomes["ok"].count == run.pages
    warnings = {e.event_id for e in events if e.list == "xmtravel.warning"}
    assert warnings, "the subscription matches some of the run's events"
    assert sorted(a.event_ids[0] for a in alerts if a.kind == "event") == sorted(warnings)
    assert _count(url, RunRecord.__table__, RunRecord.__table__.c.run_id == run_id) == 0


@pytest.mark.replay
def test_a_conductor_killed_after_fetching_is_finished_by_the_next_crawl(
    db_url: str, netguard: Path
) -> None:
    fetched = _killed_after_fetching(db_url)

    after = replay(db_url, DAY2)

    _assert_finished_once(db_url, fetched)
    assert run_row(db_url, after).state == "healthy"
    # the next run came after the finished one: day 2 is compared with day 1, not a baseline
    assert run_row(db_url, after).events < BASELINE_EVENTS
    assert netguard.read_text() == ""


@pytest.mark.replay
def test_the_scheduler_sweep_finishes_fetched_runs_and_aborts_running_ones(
    db_url: str, netguard: Path
) -> None:
    fetched = _killed_after_fetching(db_url)
    engine = get_engine(db_url)
    orphan = create_run(
        engine, get_source("gsxt"), mode="replay", cassette=str(DAY1), delist_after=1
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    set_pid(engine, orphan, gone.pid)
    row = {
        "run_id": orphan,
        "list": "gsxt.abnormal",
        "record_key": "k1",
        "source": "gsxt",
        "entity_id": "e1",
        "data": {"entity_name": "x"},
    }
    with engine.begin() as conn:
        conn.execute(RunRecord.__table__.insert().values(content_hash="h", **row))
        conn.execute(RunRemoval.__table__.insert().values(**row))

    daemon = Daemon(DaemonOptions(alerts_every=0), url=db_url, sources=[])
    daemon.start()
    daemon.stop()

    _assert_finished_once(db_url, fetched)
    aborted = run_row(db_url, orphan)
    assert aborted.state == "aborted"
    assert "found running when the scheduler started" in aborted.error
    assert _count(db_url, RunRecord.__table__, RunRecord.__table__.c.run_id == orphan) == 0
    assert _count(db_url, RunRemoval.__table__, RunRemoval.__table__.c.run_id == orphan) == 0
    # a second sweep finds nothing left to close, and changes nothing
    assert sweep_left_runs(engine) == ([], [])
    _assert_finished_once(db_url, fetched)


def test_two_finishers_at_once_finish_the_run_once(
    db_url: str, netguard: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetched = _killed_after_fetching(db_url)
    engine = get_engine(db_url)
    claimed, second_started = threading.Event(), threading.Event()
    apply_run = finalize.apply_run

    def held_apply_run(conn: Any, detection: Any) -> Any:
        # The first finisher holds its claim until the second has started its own finish.
        if not claimed.is_set():
            claimed.set()
            assert second_started.wait(60)
        return apply_run(conn, detection)

    monkeypatch.setattr(finalize, "apply_run", held_apply_run)
    results: dict[str, str | None] = {}

    def finish(name: str) -> None:
        results[name] = finalize.finish_fetched(engine, fetched)

    first = threading.Thread(target=finish, args=("first",))
    first.start()
    assert claimed.wait(120), "the first finisher never claimed the run"
    second = threading.Thread(target=finish, args=("second",))
    second.start()
    second_started.set()
    first.join(120)
    second.join(120)

    assert results == {"first": "healthy", "second": None}
    _assert_finished_once(db_url, fetched)
    assert finalize.finish_fetched(engine, fetched) is None  # and a late one does nothing
    _assert_finished_once(db_url, fetched)


def test_a_summary_stored_before_the_model_loads_and_keeps_its_shape() -> None:
    old = {
        "lists": {"xmtravel.warning": {"list": "xmtravel.warning", "health": "healthy"}},
        "outcomes": {"ok": {"count": 3, "example_url": "https://example.org/1"}},
        "events": {"listed": 2},
        "announcements": {"read": 1, "needs_transcription": [], "failed": []},
        "held": {"xmtravel.warning": 12},
        "written_by_a_newer_version": True,
    }
    summary = RunSummary.load(old)
    assert summary.lists["xmtravel.warning"].records == 0  # a field it did not have
    assert summary.outcomes["ok"].count == 3 and summary.held == {"xmtravel.warning": 12}
    assert summary.announcements is not None and summary.announcements.unmatched_removals == []
    assert summary.stored()["written_by_a_newer_version"] is True
    assert RunSummary.load(None).stored() == {"lists": {}, "outcomes": {}, "events": {}}
