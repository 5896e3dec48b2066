"""Watchlist shards (issue 19, item 3): a Credit China watchlist split into N stable parts,
each crawled by a run of its own (a worker each, its own politeness budget), each run
vouching only for its own subjects' entries, and the queue deferring one job per shard."""

from __future__ import annotations

import itertools
import os
import random
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import select

from core.registry import RegistryError, get_source, parse_source
from crawlers.watchlist import Shard, WatchlistError, WatchSubject, shard_of, watch_lists
from pipeline.daemon import DaemonOptions, desired_jobs
from pipeline.queue import crawl_lock, shard_options
from pipeline.run import CrawlError, CrawlSpec, NothingToCrawl, crawl
from storage.engine import get_engine, upgrade
from storage.models import Event, Record
from tests.creditchina_support import CC, CC_DAY1, CC_DAY2, WATCHLIST, needs_chromium, replay_cc
from tests.helpers import DAY1, run_row, until
from tests.test_workers import (  # the PostgreSQL helpers of the worker tests
    FAST_HEARTBEAT,
    _fired,
    _job_spans,
    _jobs,
    _runs,
    _stop,
    pg_schema,  # noqa: F401  (a fixture)
    processes,  # noqa: F401  (a fixture)
)

FUJIAN = "福州闽江明远建材有限公司"  # watched by name: shard 1 of 2
XUZHOU = "91320303MA1XQ7R3BE"  # watched by USCC: shard 2 of 2

# --- assignment: stable, a partition ------------------------------------------------------------


def _subjects(count: int, seed: int = 7) -> list[WatchSubject]:
    rng = random.Random(seed)
    alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    subjects = []
    for n in range(count):
        if n % 3:
            code = "91" + "".join(rng.choice("0123456789") for _ in range(6))
            code += "".join(rng.choice(alphabet) for _ in range(10))
            subjects.append(WatchSubject(name=None, uscc=code))
        else:
            subjects.append(WatchSubject(name=f"测试建材有限公司{n}", uscc=None))
    return subjects


def test_shards_partition_the_watchlist_and_never_move_a_subject() -> None:
    subjects = _subjects(300)
    for count in range(1, 6):
        shards = [Shard(k, count).select(subjects) for k in range(1, count + 1)]
        # a partition: every subject in exactly one shard
        assert sorted(itertools.chain(*shards), key=subjects.index) == subjects
        assert sum(map(len, shards)) == len(subjects)
        if count > 1:  # and roughly even
            assert min(map(len, shards)) > len(subjects) / count / 2
        # stable: another order, or other subjects around it, never moves a subject
        shuffled = random.Random(count).sample(subjects, len(subjects))
        fewer = shuffled[: len(shuffled) // 3] + _subjects(50, seed=99)
        for subject in shuffled + fewer:
            assert Shard(shard_of(subject, count), count).holds(subject)
            assert shard_of(subject, count) == shard_of(subject, count)
        again = [Shard(k, count).select(shuffled) for k in range(1, count + 1)]
        assert [set(s) for s in again] == [set(s) for s in shards]


def test_a_subject_named_with_its_code_is_the_code_and_names_fold() -> None:
    code = WatchSubject(name=None, uscc=XUZHOU)
    both = WatchSubject(name="徐州云龙宏泰物流有限公司", uscc=XUZHOU)
    assert all(shard_of(code, n) == shard_of(both, n) for n in range(1, 9))
    # the shipped model's two subjects fall in different halves (the replay tests rely on it)
    assert shard_of(WatchSubject(name=FUJIAN, uscc=None), 2) == 1
    assert shard_of(code, 2) == 2


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", ""])
def test_a_shard_is_written_k_of_n(text: str) -> None:
    with pytest.raises(WatchlistError):
        Shard.parse(text)
    assert str(Shard.parse(" 2/3 ")) == "2/3"


def test_crawl_spec_checks_the_shard() -> None:
    with pytest.raises(CrawlError, match="K/N"):
        CrawlSpec(source="creditchina", shard="4/3", watchlist=str(WATCHLIST))
    with pytest.raises(CrawlError, match="--watchlist is needed"):
        CrawlSpec(source="creditchina", shard="1/2")


def test_a_source_without_watch_lists_or_above_its_cap_is_refused(sqlite_url: str) -> None:
    base = {"mode": "replay", "cassette": CC_DAY1, "watchlist": str(WATCHLIST)}
    with pytest.raises(CrawlError, match="at most 2 shards"):
        crawl(CrawlSpec(source="creditchina", shard="1/3", **base), url=sqlite_url)
    with pytest.raises(CrawlError, match="no watch list"):
        crawl(
            CrawlSpec(
                source="xmtravel",
                mode="replay",
                cassette=DAY1,
                watchlist=str(WATCHLIST),
                shard="1/2",
            ),
            url=sqlite_url,
        )


def test_an_empty_shard_makes_no_run(sqlite_url: str, tmp_path: Path) -> None:
    only = tmp_path / "one.txt"
    only.write_text(f"{FUJIAN}\n", encoding="utf-8")  # shard 1 of 2: shard 2 has nothing
    spec = CrawlSpec(
        source="creditchina", mode="replay", cassette=CC_DAY1, watchlist=str(only), shard="2/2"
    )
    with pytest.raises(NothingToCrawl, match="shard 2/2: none of the watchlist's 1 subject"):
        crawl(spec, url=sqlite_url)
    assert _runs(sqlite_url) == []


# --- the registry and the queue ------------------------------------------------------------------


def _declaration(**schedule: Any) -> dict[str, Any]:
    raw = yaml.safe_load((CC.parent.parent / "crawlers/sources/creditchina/source.yml").read_text())
    raw["schedule"].update(schedule)
    return raw


def test_registry_caps_shards_and_needs_a_watchlist() -> None:
    source = get_source("creditchina")
    assert (source.shards, source.max_shards) == (1, 2)
    assert watch_lists(source) == [
        "creditchina.watch_xzcf",
        "creditchina.watch_xzxk",
        "creditchina.watch_sxcj",
    ]
    assert parse_source(_declaration(shards=2)).shards == 2
    with pytest.raises(RegistryError, match=r"above watch\.max_shards 2"):
        parse_source(_declaration(shards=3))
    raised = _declaration(shards=3)
    raised["watch"]["max_shards"] = 3
    assert parse_source(raised).shards == 3
    unwatched = _declaration(shards=2)
    del unwatched["schedule"]["watchlist"]
    with pytest.raises(RegistryError, match=r"schedule\.watchlist is needed"):
        parse_source(unwatched)


def test_one_trigger_queues_one_job_per_shard_each_with_its_own_lock() -> None:
    source = parse_source(_declaration(shards=2))
    (job,) = [j for j in desired_jobs([source], DaemonOptions(alerts_every=0))]
    _, options = job.args
    assert options["shards"] == 2
    each = shard_options(options)
    assert [o["shard"] for o in each] == ["1/2", "2/2"]
    assert all("shards" not in o and o["watchlist"] == "db:" for o in each)
    assert [crawl_lock("creditchina", o) for o in each] == ["creditchina#1/2", "creditchina#2/2"]
    # a source of one shard keeps the job it had: one lock, the source's
    (plain,) = desired_jobs([get_source("creditchina")], DaemonOptions(alerts_every=0))
    assert "shards" not in plain.args[1] and shard_options(plain.args[1]) == [plain.args[1]]
    assert crawl_lock("creditchina", plain.args[1]) == "creditchina"


# --- replays: two shards store what one run stores, and keep to their own subjects -------------


def _stored(url: str) -> tuple[list[Any], list[Any]]:
    records, events = Record.__table__, Event.__table__
    with get_engine(url).connect() as conn:
        return (
            sorted(
                conn.execute(
                    select(records.c.list, records.c.record_key, records.c.entity_id).add_columns(
                        records.c.content_hash, records.c.status
                    )
                )
            ),
            sorted(
                conn.execute(
                    select(events.c.list, events.c.record_key, events.c.event, events.c.cause)
                )
            ),
        )


@needs_chromium
def test_two_shards_store_the_records_and_events_of_one_run(tmp_path: Path) -> None:
    whole = f"sqlite:///{tmp_path / 'whole.sqlite'}"
    split = f"sqlite:///{tmp_path / 'split.sqlite'}"
    for day in (CC_DAY1, CC_DAY2):
        replay_cc(whole, day)
        first = replay_cc(split, day, shard="1/2")
        second = replay_cc(split, day, shard="2/2")
    assert _stored(split) == _stored(whole)
    _, events = _stored(whole)
    assert ("creditchina.watch_xzcf", "delisted", "disappeared") in {
        (e.list, e.event, e.cause) for e in events
    }
    one, two = run_row(split, first), run_row(split, second)
    assert (one.summary["shard"]["index"], two.summary["shard"]["index"]) == (1, 2)
    assert one.summary["shard"]["subjects"] == two.summary["shard"]["subjects"] == 1
    assert "watched" not in one.summary["shard"]  # subjects are kept only until the finish
    # shard 1 reads list mode too; shard 2 only the watch lists
    assert set(two.summary["lists"]) == set(watch_lists(get_source("creditchina")))
    assert set(one.summary["lists"]) == set(get_source("creditchina").list_ids)
    assert (one.state, two.state) == ("healthy", "healthy")


@needs_chromium
def test_a_shard_run_never_delists_another_shards_subject(sqlite_url: str) -> None:
    replay_cc(sqlite_url, CC_DAY1)  # both subjects stored
    with get_engine(sqlite_url).connect() as conn:
        xuzhou = conn.execute(
            select(Record.__table__.c.record_key).where(
                Record.__table__.c.entity_id == f"uscc-{XUZHOU}",
                Record.__table__.c.list.like("creditchina.watch_%"),
            )
        ).all()
    assert xuzhou
    # shard 1 (the other subject) alone, healthy, delisting after one absence
    run_id = replay_cc(sqlite_url, CC_DAY2, delist_after=1, shard="1/2")
    assert run_row(sqlite_url, run_id).state == "healthy"
    records, events = Record.__table__, Event.__table__
    with get_engine(sqlite_url).connect() as conn:
        theirs = conn.execute(
            select(records.c.status, records.c.absent_runs).where(
                records.c.entity_id == f"uscc-{XUZHOU}", records.c.list.like("creditchina.watch_%")
            )
        ).all()
        delisted = conn.execute(
            select(events.c.entity_id, events.c.cause).where(
                events.c.run_id == run_id, events.c.event == "delisted"
            )
        ).all()
    assert {(r.status, r.absent_runs) for r in theirs} == {("active", 0)}
    # its own subject's gone entry is delisted as by one run of the whole watchlist
    assert [d.cause for d in delisted] == ["disappeared"]
    assert all(d.entity_id != f"uscc-{XUZHOU}" for d in delisted)


# --- PostgreSQL: two workers take the two shards of one trigger ------------------------------


@needs_chromium
@pytest.mark.postgres
def test_two_workers_take_two_shards_of_one_trigger(
    pg_schema: Callable[[], str],  # noqa: F811
    processes: Callable[..., subprocess.Popen[bytes]],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    room = tmp_path / "sources" / "creditchina"
    room.mkdir(parents=True)
    declaration = _declaration(shards=2, watchlist=str(WATCHLIST.resolve()))
    (room / "source.yml").write_text(yaml.safe_dump(declaration, allow_unicode=True), "utf-8")
    monkeypatch.setenv("CREDITWATCH_SOURCES_DIR", str(room.parent))
    cassettes = tmp_path / "cassettes"
    cassettes.mkdir()
    (cassettes / "creditchina.yaml").symlink_to(CC_DAY1.resolve())
    url = pg_schema()
    upgrade(url)
    logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
    workers = [processes(url, log, "worker", "--concurrency", "1", *FAST_HEARTBEAT) for log in logs]
    sched_log = tmp_path / "schedule.log"
    scheduler = processes(
        url, sched_log, "schedule", "--queue", "--replay-dir", str(cassettes),
        "--interval", "3", "--alerts-every", "0",
    )  # fmt: skip
    try:
        until(lambda: _fired(sched_log), 60, "one trigger", every=0.2)
        _stop(scheduler, sched_log)
        until(
            lambda: (
                len(_jobs(url)) >= 2 and all(j.status not in ("todo", "doing") for j in _jobs(url))
            ),
            120,
            "both shards crawled",
            every=0.3,
        )
    finally:
        for proc, log in zip(workers, logs, strict=True):
            _stop(proc, log)
    assert len(_fired(sched_log)) == 1, sched_log.read_text()
    text = sched_log.read_text()
    assert re.search(r"creditchina#1/2: crawl queued as job \d+", text)
    assert re.search(r"creditchina#2/2: crawl queued as job \d+", text)
    jobs, runs = _jobs(url), _runs(url)
    assert [j.status for j in jobs] == ["succeeded", "succeeded"]
    assert sorted(r.summary["shard"]["index"] for r in runs) == [1, 2]
    assert {r.state for r in runs} == {"healthy"}
    # side by side, one on each worker: their spans (database time) overlap
    (a,), (b,) = (_job_spans(url)[j.id] for j in jobs)
    assert a[0] < b[1] and b[0] < a[1], (a, b)
    for log in logs:
        assert re.search(r"job \d+: crawl of creditchina shard [12]/2", log.read_text())
    # what the two shards stored is what one run of the whole watchlist stores
    reference = f"sqlite:///{tmp_path / 'whole.sqlite'}"
    monkeypatch.delenv("CREDITWATCH_SOURCES_DIR")
    replay_cc(reference, CC_DAY1)
    assert _stored(url)[0] == _stored(reference)[0]
    assert os.environ.get("CREDITWATCH_SOURCES_DIR") is None
