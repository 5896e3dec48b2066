"""The mass-delisting guard and `creditwatch pending`: half a list vanishing in one
healthy-looking run is held for a maintainer, who releases or discards it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from alerts.outbox import enqueue_health, enqueue_run
from alerts.sender import compose
from core.normalise import content_hash
from core.registry import get_source
from pipeline.cli import app
from pipeline.cli.pending import release_pending
from storage.engine import get_engine, upgrade
from storage.lifecycle import RunDetection, apply_run, event_id
from storage.models import Alert, Event, PendingDelisting, Record
from storage.outbox import save_subscription
from storage.pending import Selection, discard, held_summary, list_pending, release
from storage.runlog import RunWriter
from storage.runs import create_run, get_run
from tests.helpers import DAY1, events, load_cassette, replay, run_row, save_cassette
from tests.replay_cache import Replay, Replayed

WARNING = "xmtravel.warning"
ALERTS, EVENTS, RECORDS = Alert.__table__, Event.__table__, Record.__table__
PENDING = PendingDelisting.__table__
runner = CliRunner()

# Day 1 shows 23 warnings, 14 of them active. Half the list vanishes: the 10 active entries of
# the first page and 2 expired ones; 10 of 14 active is over the default guard (20%, 10).
HALF = (
    "厦文旅执法罚字（2025）第65号", "厦文旅执法罚字（2025）第194号", "厦文旅罚[2025]71号",
    "厦文旅罚〔2025〕150号", "厦文旅罚〔2025〕90号", "厦文旅罚[2025]3号",
    "厦文旅执法罚字（2025）第30号", "厦文旅罚[2025]23号", "厦文旅罚[2025]89号",
    "厦文旅罚[2024]167号", "厦文旅罚〔2024〕7号", "厦文旅罚[2024]20号",
)  # fmt: skip
HALF_EXPIRED = {"厦文旅罚〔2024〕7号", "厦文旅罚[2024]20号"}
FEW = ("厦文旅执法罚字（2025）第65号", "厦文旅罚[2025]71号", "厦文旅罚[2024]84号")
ROW = re.compile(r"<tr><td>\d+</td>.*?</tr>")
JSXX = re.compile(r'(<table class="list_table" id="jsxx"[^>]*><tr>.*?</tr>)(.*?)(</table>)')


def _detail_id(html: str) -> str:
    return re.search(r"detail\.html\?id=(\w+)", html).group(1)  # type: ignore[union-attr]


def portal_day(tmp_path: Path, name: str, day: int, drop: tuple[str, ...] = ()) -> Path:
    """Day 1 of the Xiamen cassette as served on ``day`` (its Date headers), with the warnings
    of case numbers ``drop`` gone from the list and from their subjects' profiles; the list
    is paged again (10 rows a page) and its pager states the new totals, so the run is
    healthy."""
    data = load_cassette(DAY1)
    date = format_datetime(datetime(2025, 11, 20 + day, 2, tzinfo=UTC), usegmt=True)
    pages = {}
    for item in data["interactions"]:
        item["response"]["headers"]["Date"] = [date]
        uri = item["request"]["uri"]
        if "xygs-main.html" in uri:
            number = int(uri.rsplit("pageNo=", 1)[1]) if "pageNo=" in uri else 1
            pages[number] = item
    gone = set()
    rows = []
    for number in sorted(pages):
        html = pages[number]["response"]["body"]["string"].decode("gbk")
        for row in ROW.findall(html):
            if re.findall(r"<td>([^<]*)</td>", row)[2] in drop:
                gone.add(_detail_id(row))
            else:
                rows.append(row)
    assert len(gone) == len(drop)
    count = (len(rows) + 9) // 10
    for number, item in pages.items():
        if number > count:
            continue
        html = item["response"]["body"]["string"].decode("gbk")
        mine = rows[(number - 1) * 10 : number * 10]
        html = re.sub(
            r"(<tr><th>.*?</tr>)\s*</table>",
            lambda m: m[1] + "\n" + "\n".join(mine) + "\n</table>",  # noqa: B023
            ROW.sub("", html),
            count=1,
            flags=re.S,
        )
        pager = (
            f'<div class="page">共 <b>{len(rows)}</b> 条记录 &nbsp; 第 {number}/{count} 页</div>'
        )
        html = re.sub(r'<div class="page">.*?</div>', pager, html)
        item["response"]["body"]["string"] = html.encode("gbk")
    for item in data["interactions"]:
        if "subject/info.html" not in item["request"]["uri"]:
            continue
        html = item["response"]["body"]["string"].decode("gbk")

        def keep(match: re.Match[str]) -> str:
            rows = [
                r
                for r in re.findall(r"<tr>.*?</tr>", match[2])
                if "detail.html?id=" not in r or _detail_id(r) not in gone
            ]
            body = "".join(rows) or '<tr><td colspan="4">暂无警示信息</td></tr>'
            return match[1] + body + match[3]

        item["response"]["body"]["string"] = JSXX.sub(keep, html).encode("gbk")
    return save_cassette(data, tmp_path / f"{name}.yaml")


def subscribe(url: str) -> None:
    upgrade(url)
    with get_engine(url).begin() as conn:
        for data in (
            {"id": "maintainers", "channels": ["feed:/dev/null"], "health": True,
             "sources": ["xmtravel"], "events": [], "language": "en"},
            {"id": "warnings", "channels": ["feed:/dev/null"], "lists": [WARNING]},
        ):  # fmt: skip
            save_subscription(conn, data, "test", datetime.now(UTC))


def rows(url: str, table: Any, *where: Any) -> list[Any]:
    with get_engine(url).connect() as conn:
        return conn.execute(select(table).where(*where).order_by(table.c.id)).all()


def statuses(url: str) -> dict[str, tuple[str, int]]:
    got = rows(url, RECORDS, RECORDS.c.list == WARNING)
    return {r.case_number: (r.status, r.absent_runs) for r in got}


def cli(url: str, *args: str) -> str:
    result = runner.invoke(app, list(args), env={"DATABASE_URL": url})
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.replay
def test_half_a_list_vanishing_is_held_then_released(db_url: str, tmp_path: Path) -> None:
    subscribe(db_url)
    replay(db_url, DAY1, delist_after=1)
    before = statuses(db_url)
    run = replay(db_url, portal_day(tmp_path, "half", 2, HALF), delist_after=1)
    assert run_row(db_url, run).state == "healthy"

    # Nothing delisted, nothing changed: the 12 vanished entries are held.
    assert [e for e in events(db_url, run) if e["event"] == "delisted"] == []
    assert statuses(db_url) == {
        case: (status, absent + (case in HALF)) for case, (status, absent) in before.items()
    }
    with get_engine(db_url).connect() as conn:
        held = list_pending(conn, source="xmtravel")
        summary = held_summary(conn, run)
    assert len(held) == 12 and {r.run_id for r in held} == {run}
    assert sum(r.status_before == "expired" for r in held) == len(HALF_EXPIRED)
    assert summary == [
        {"list": WARNING, "held": 10, "held_expired": 2, "active": 14, "would_delist": 10,
         "share": 0.2, "min_count": 10},
    ]  # fmt: skip

    # One maintainer alert for the run (finalize passes RunDetection.held; enqueueing it
    # again, as here, adds nothing), and no delisting alert for the watchdog.
    for _ in range(2):
        with get_engine(db_url).begin() as conn:
            enqueue_health(conn, run_id=run, source="xmtravel", layout_drift=[], held={WARNING: 10})
    health = rows(db_url, ALERTS, ALERTS.c.kind == "health")
    assert [(a.subscription, a.payload["problem"]) for a in health] == [
        ("maintainers", "mass_delisting_held")
    ]
    assert health[0].payload["findings"][0]["held"] == 10
    with get_engine(db_url).connect() as conn:
        message = compose(conn, health[0])
    assert "mass delisting held for review" in message.subject
    assert f"creditwatch pending release --run {run}" in message.text
    assert "10 entries would be delisted" in message.text
    assert not [a for a in rows(db_url, ALERTS) if a.subscription == "warnings" and a.run_id == run]

    # Release: the delistings the run would have raised, as that run, with its evidence.
    out = cli(db_url, "pending", "release", "--run", run, "--by", "tester")
    assert "released 12 held entries of xmtravel.warning" in out and "10 delisted" in out
    delisted = [e for e in events(db_url, run) if e["event"] == "delisted"]
    assert len(delisted) == 10
    clock = run_row(db_url, run).started_at.isoformat()
    for event in delisted:
        assert event["cause"] == "disappeared" and event["run_id"] == run and event["at"] == clock
        assert event["event_id"] == event_id(
            run, WARNING, event["record_key"], "delisted:disappeared"
        )
        assert event["evidence"]["list_pages"]
    assert {e["case_number"] for e in delisted} == set(HALF) - HALF_EXPIRED
    after = statuses(db_url)
    assert {case for case, (status, _) in after.items() if status == "removed"} == set(HALF)
    released = rows(db_url, PENDING)
    assert {(r.state, r.decided_by) for r in released} == {("released", "tester")}
    alerted = [a for a in rows(db_url, ALERTS) if a.subscription == "warnings" and a.run_id == run]
    assert len(alerted) == 10

    # Releasing again, or enqueueing the run again, does nothing more.
    with get_engine(db_url).begin() as conn:
        again = release_pending(conn, Selection(run_id=run))
        assert (again.total, again.event_count, again.alerts) == (0, 0, 0)
        assert enqueue_run(conn, run) == len(alerted)  # the same keys: skipped on insert
    assert "nothing done" in cli(db_url, "pending", "release", "--all")
    assert len(rows(db_url, EVENTS, EVENTS.c.event == "delisted")) == 10
    assert (
        len(rows(db_url, ALERTS, ALERTS.c.subscription == "warnings", ALERTS.c.run_id == run)) == 10
    )
    assert statuses(db_url) == after


@pytest.mark.replay
def test_held_entries_wait_are_discarded_and_return_by_themselves(
    sqlite_url: str, tmp_path: Path
) -> None:
    url = sqlite_url
    replay(url, DAY1, delist_after=1)
    first = replay(url, portal_day(tmp_path, "half2", 2, HALF), delist_after=1)
    # Still gone the next day: not delisted, not held again, not counted twice.
    second = replay(url, portal_day(tmp_path, "half3", 3, HALF), delist_after=1)
    assert run_row(url, second).state == "healthy"
    assert events(url, second) == []
    assert [(r.run_id, r.state) for r in rows(url, PENDING)] == [(first, "pending")] * 12
    assert {statuses(url)[case] for case in HALF} == {("active", 2)} | {("expired", 2)}

    listed = cli(url, "pending", "list", "--source", "xmtravel", "--entries")
    assert first in listed and "10 active" in listed and "2 expired" in listed
    out = cli(url, "pending", "discard", "--list", "warning", "--source", "xmtravel",
              "--note", "query broke")  # fmt: skip
    assert "discarded 12 held entries" in out
    assert {(r.state, r.note) for r in rows(url, PENDING)} == {("discarded", "query broke")}
    assert {statuses(url)[case][1] for case in HALF} == {0}
    assert rows(url, EVENTS, EVENTS.c.event == "delisted") == []
    assert "no pending held delistings" in cli(url, "pending", "list")

    # Absences count again from zero: the next healthy absence is held again.
    third = replay(url, portal_day(tmp_path, "half4", 4, HALF), delist_after=1)
    assert events(url, third) == []
    assert len(rows(url, PENDING, PENDING.c.run_id == third, PENDING.c.state == "pending")) == 12
    # The portal shows them again: the hold ends by itself, with nothing to report.
    back = replay(url, portal_day(tmp_path, "full5", 5), delist_after=1)
    assert events(url, back) == []
    returned = rows(url, PENDING, PENDING.c.run_id == third)
    assert {(r.state, r.decided_by) for r in returned} == {("returned", f"run:{back}")}
    assert {statuses(url)[case] for case in HALF} == {("active", 0), ("expired", 0)}
    assert "nothing done" in cli(url, "pending", "release", "--all", "--source", "xmtravel")


@pytest.mark.replay
def test_a_few_disappearances_pass_the_guard(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    run = replay(sqlite_url, portal_day(tmp_path, "few", 2, FEW), delist_after=1)
    delisted = [e for e in events(sqlite_url, run) if e["event"] == "delisted"]
    assert sorted(e["case_number"] for e in delisted) == sorted(FEW)
    assert {e["cause"] for e in delisted} == {"disappeared"}
    assert rows(sqlite_url, PENDING) == []


# --- the guard's rule, straight through change detection -------------------------------------

DAY = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)


def entry(key: str, valid_until: str | None = "2026-01-01") -> dict[str, Any]:
    return {
        "source": "xmtravel", "list": WARNING, "record_key": key, "entity_id": f"e-{key}",
        "entity_name": f"公司{key}", "case_number": f"罚[{key}]号", "title": None,
        "valid_until": valid_until, "source_url": f"http://example.test/{key}",
        "raw_sha256": "0" * 64, "extra": {},
    }  # fmt: skip


class Runs:
    def __init__(self, url: str, guard: tuple[float, int]) -> None:
        upgrade(url)
        self.engine, self.guard, self.day = get_engine(url), guard, 0

    def run(self, entries: list[dict[str, Any]], removals: tuple[dict[str, Any], ...] = ()):
        run_id = create_run(
            self.engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=1
        )
        writer = RunWriter(self.engine, run_id)
        for e in entries:
            writer.add_record(e, content_hash(e))
        for removal in removals:
            writer.add_removal(removal)
        writer.flush()
        at = DAY + timedelta(days=self.day)
        self.day += 1
        day = (at + timedelta(hours=8)).date()
        detection = RunDetection(
            run_id=run_id, source="xmtravel", seq=0, at=at, run_date=day,
            lists=[WARNING], healthy={WARNING}, delist_after=1, guards={WARNING: self.guard},
            absence_evidence={WARNING: {"list_pages": [{"url": "p1", "raw_sha256": "x"}]}},
        )  # fmt: skip
        with self.engine.begin() as conn:
            detection.seq = get_run(conn, run_id).seq
            counts = apply_run(conn, detection)
        return run_id, counts, detection.held

    def pending(self) -> list[tuple[str, str]]:
        with self.engine.connect() as conn:
            return [(r.record_key, r.state) for r in list_pending(conn, state=None)]


KEYS = [f"k{i:02d}" for i in range(10)]


@pytest.mark.parametrize(
    ("guard", "vanish", "held"),
    [
        ((0.2, 3), 3, True),  # 3 of 10: more than 20% and at least 3
        ((0.2, 3), 2, False),  # too few
        ((0.3, 3), 3, False),  # not more than 30%
        ((0.0, 0), 1, True),  # hold every disappearance
    ],
)
def test_the_guard_needs_both_share_and_count(
    sqlite_url: str, guard: tuple[float, int], vanish: int, held: bool
) -> None:
    runs = Runs(sqlite_url, guard)
    runs.run([entry(k) for k in KEYS] + [entry("old", "2025-01-01")])
    _, counts, got = runs.run([entry(k) for k in KEYS[vanish:]])
    assert (got, counts["delisted"]) == (({WARNING: vanish}, 0) if held else ({}, vanish))
    # The expired entry goes with them: held, or removed silently.
    assert ("old", "pending") in runs.pending() if held else runs.pending() == []


def test_release_and_discard_are_set_based_and_idempotent(db_url: str) -> None:
    runs = Runs(db_url, (0.2, 3))
    runs.run([entry(k) for k in KEYS] + [entry("old", "2025-01-01")])
    holder, _, held = runs.run([entry(k) for k in KEYS[4:]])
    assert held == {WARNING: 4}
    # A held entry removed by the portal's own announcement meanwhile: superseded.
    removal = {**entry("k00"), "case_number_key": "罚[k00]号", "extra": {"removal": {}}}
    _, counts, _ = runs.run([entry(k) for k in KEYS[4:]], removals=(removal,))
    assert counts["delisted"] == 1
    assert ("k00", "superseded") in runs.pending()
    with runs.engine.begin() as conn:
        partial = discard(conn, Selection(list_id=WARNING), by="a")  # k01..k03 and old
        assert partial.total == 4 and partial.event_count == 0
    with runs.engine.begin() as conn:
        assert release(conn, Selection(everything=True)).total == 0
    # Held again by the next run (absences restart), then released: events as that run.
    again, _, held = runs.run([entry(k) for k in KEYS[4:]])
    assert held == {WARNING: 3}
    with pytest.raises(ValueError):
        Selection()
    with runs.engine.begin() as conn:
        done = release(conn, Selection(run_id=again, source="xmtravel"), by="b")
    assert (done.total, done.event_count) == (4, 3)
    assert done.events == {
        again: [event_id(again, WARNING, k, "delisted:disappeared") for k in KEYS[1:4]]
    }
    with runs.engine.connect() as conn:
        raised = conn.execute(select(EVENTS).where(EVENTS.c.run_id == again)).all()
        status = dict(conn.execute(select(RECORDS.c.record_key, RECORDS.c.status)).all())
    assert [(e.record_key, e.cause, e.at) for e in raised] == [
        (k, "disappeared", DAY + timedelta(days=3)) for k in KEYS[1:4]
    ]
    assert {status[k] for k in ["old", *KEYS[:4]]} == {"removed"}
    assert holder != again
