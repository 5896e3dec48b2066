"""A list's declared assertions (the registry's ``checks:``): ``min_rows``, ``max_drop`` against
the list's last healthy run, and ``fill_rates`` of fields. A run that breaks one stores what it
saw but is not healthy for the list, so it delists nothing by absence.

Pure functions first, then the SQL that feeds them (SQLite and PostgreSQL), then each check
broken by a day-1 replay whose pages are all fine (every fetch ``ok``, pagers kept).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from core.health import FetchOutcome, PageSeen, assertion_findings, judge_list, judge_run
from core.normalise import content_hash
from core.registry import HealthChecks, get_source, load_registry, parse_source
from core.schema import RECORD_FIELDS
from storage.engine import get_engine, upgrade
from storage.models import Record, Run
from storage.runlog import RunWriter
from storage.runs import create_run, last_healthy_list_records, staged_fill_rates, store_health
from storage.source_state import source_state
from tests.helpers import (
    DAY1,
    events,
    interaction,
    list_health,
    load_cassette,
    replay,
    run_row,
    save_cassette,
)
from tests.replay_cache import Replay, Replayed

CHECKS = HealthChecks(
    min_rows=3, max_drop=50, fill_rates=(("entity_name", 1.0), ("authority", 0.8))
)


# --- pure functions -----------------------------------------------------------------------
def checks_of(findings: list[dict[str, Any]]) -> list[str]:
    return [f["check"] for f in findings]


def test_no_finding_when_every_assertion_holds() -> None:
    assert assertion_findings(CHECKS, 10, 10, {"entity_name": 1.0, "authority": 0.8}) == []
    assert assertion_findings(HealthChecks(), 0, 500, {}) == []  # nothing declared


def test_min_rows() -> None:
    (finding,) = assertion_findings(CHECKS, 2, None, {"entity_name": 1.0, "authority": 1.0})
    assert finding["check"] == "min_rows" and finding["value"] == 2 and finding["limit"] == 3
    assert "2 records" in finding["detail"] and "3" in finding["detail"]
    assert assertion_findings(CHECKS, 3, None, {"entity_name": 1.0, "authority": 1.0}) == []


def test_max_drop_compares_with_the_last_healthy_run() -> None:
    fill = {"entity_name": 1.0, "authority": 1.0}
    (finding,) = assertion_findings(CHECKS, 4, 10, fill, previous_run="xmtravel:7")
    assert finding["check"] == "max_drop" and finding["value"] == 60.0
    assert finding["previous"] == 10 and finding["previous_run"] == "xmtravel:7"
    assert "10 → 4" in finding["detail"] and "xmtravel:7" in finding["detail"]
    assert assertion_findings(CHECKS, 5, 10, fill) == []  # exactly the limit is allowed
    assert assertion_findings(CHECKS, 40, 10, fill) == []  # growth is never a drop
    assert assertion_findings(CHECKS, 4, None, fill) == []  # no healthy run to compare with
    assert assertion_findings(CHECKS, 4, 0, fill) == []


def test_fill_rates() -> None:
    findings = assertion_findings(CHECKS, 10, None, {"entity_name": 0.9, "authority": 0.8})
    assert checks_of(findings) == ["fill_rate"]
    assert findings[0]["field"] == "entity_name" and findings[0]["value"] == 0.9
    assert findings[0]["detail"] == "entity_name filled in 90% of 10 records, 100% declared"
    # A field nobody measured counts as empty: a wiring mistake is loud, not silent.
    assert checks_of(assertion_findings(CHECKS, 10, None, {"entity_name": 1.0})) == ["fill_rate"]
    # Floating point: 4 of 5 is 80%.
    assert assertion_findings(CHECKS, 5, None, {"entity_name": 1.0, "authority": 4 / 5}) == []
    # No records: nothing to measure (min_rows speaks for that).
    assert checks_of(assertion_findings(CHECKS, 0, None, {})) == ["min_rows"]


def test_every_broken_assertion_is_reported() -> None:
    findings = assertion_findings(CHECKS, 1, 10, {"entity_name": 0.0, "authority": 0.0})
    assert checks_of(findings) == ["min_rows", "max_drop", "fill_rate", "fill_rate"]


def test_a_broken_assertion_makes_the_list_degraded_or_failed() -> None:
    pages = [PageSeen("x.a", "http://x/1", 1, 2, 2, 1)]
    fetches = [FetchOutcome("http://x/1", "ok", "x.a")]
    assert judge_list("x.a", fetches, pages, 2).health == "healthy"
    broken = assertion_findings(CHECKS, 2, None, {"entity_name": 1.0, "authority": 1.0})
    judged = judge_list("x.a", fetches, pages, 2, broken)
    assert judged.health == "degraded" and judged.findings == broken
    empty = assertion_findings(CHECKS, 0, None, {})
    assert judge_list("x.a", fetches, pages, 0, empty).health == "failed"
    # judge_run hands each list its own assertions.
    run = judge_run(["x.a", "x.b"], fetches, pages, {"x.a": 2}, {"x.a": broken})
    assert [(lh.list, lh.health) for lh in run] == [("x.a", "degraded"), ("x.b", "failed")]
    assert run[1].findings == [{"check": "list_pages", "detail": "no list page was read"}]


# --- the shipped declarations -------------------------------------------------------------
def test_declared_checks_name_schema_fields_and_suit_their_lists() -> None:
    for source in load_registry().values():
        for lst in source.lists:
            for name, _share in lst.checks.fill_rates:
                assert name in RECORD_FIELDS, (lst.id, name)
            if not lst.diffs_absence:
                # A run of an announcement list reads only new announcements, often none.
                assert (lst.checks.min_rows, lst.checks.max_drop) == (0, None), lst.id
    # The delisting guard must stay testable with half a list vanishing in a healthy run.
    for lst in get_source("xmtravel").lists:
        assert lst.checks.max_drop is None or lst.checks.max_drop > 50, lst.id


def test_registry_parses_checks() -> None:
    data = {
        "id": "demo",
        "name_zh": "示例",
        "name_en": "Demo",
        "jurisdiction": {"name": "厦门市", "region_code": "350200"},
        "base_url": "http://example.test/",
        "lists": [
            {
                "id": "a",
                "list_kind": "warning",
                "checks": {"min_rows": 2, "max_drop": 60, "fill_rates": {"uscc": 0.5}},
            },
            {"id": "b", "list_kind": "warning"},
        ],
    }
    source = parse_source(data)
    assert source.list("a").checks == HealthChecks(2, 60.0, (("uscc", 0.5),))
    assert source.list("b").checks == HealthChecks()
    assert source.failing_after == 3


# --- the SQL that feeds them --------------------------------------------------------------
def staged(key: str, **fields: Any) -> dict[str, Any]:
    return {
        "source": "xmtravel",
        "list": "xmtravel.warning",
        "record_key": key,
        "entity_id": f"e-{key}",
        "entity_name": f"公司{key}",
        "source_url": f"http://example.test/{key}",
        "raw_sha256": "0" * 64,
        **fields,
    }


def test_staged_fill_rates(db_url: str) -> None:
    upgrade(db_url)
    engine = get_engine(db_url)
    run_id = create_run(
        engine, get_source("xmtravel"), mode="replay", cassette=None, delist_after=1
    )
    writer = RunWriter(engine, run_id, batch_size=2)  # counts added up over batches
    rows = [
        staged("1", authority="厦门市文化和旅游局", penalty_types=["fine"], fine_yuan=0),
        staged("2", authority="", penalty_types=[], uscc_valid=False),
        staged("3", authority=None, extra={}),
        staged("4", penalty_types=["warning"], fine_yuan=500, extra={"处罚主体": "局"}),
        {**staged("5", list="xmtravel.good"), "authority": "局"},
    ]
    for row in rows:
        writer.add_record(row, content_hash(row))
    writer.flush()
    fields = ["authority", "penalty_types", "fine_yuan", "uscc_valid", "extra", "title"]
    with engine.connect() as conn:
        rates = staged_fill_rates(conn, run_id, fields)
        assert staged_fill_rates(conn, run_id, []) == {}
        assert staged_fill_rates(conn, "xmtravel:99", fields) == {}
    assert rates["xmtravel.warning"] == {
        "authority": 0.25,  # null, "" and absent are not filled
        "penalty_types": 0.5,  # [] is not filled
        "fine_yuan": 0.5,  # 0 is a value
        "uscc_valid": 0.25,  # false is a value
        "extra": 0.25,  # {} is not filled
        "title": 0.0,
    }
    assert rates["xmtravel.good"]["authority"] == 1.0


def test_last_healthy_list_records(db_url: str) -> None:
    upgrade(db_url)
    engine = get_engine(db_url)
    source = get_source("xmtravel")
    ids = [
        create_run(engine, source, mode="replay", cassette=None, delist_after=1) for _ in range(3)
    ]
    health = [
        {"xmtravel.warning": ("healthy", 23), "xmtravel.good": ("healthy", 8)},
        {"xmtravel.warning": ("healthy", 20), "xmtravel.good": ("failed", 0)},
        {"xmtravel.warning": ("degraded", 4), "xmtravel.good": ("healthy", 7)},
    ]
    with engine.begin() as conn:
        for run_id, lists in zip(ids, health, strict=True):
            store_health(
                conn,
                run_id,
                [
                    {"list": k, "health": h, "records": n, "findings": []}
                    for k, (h, n) in lists.items()
                ],
            )
    with engine.connect() as conn:
        assert last_healthy_list_records(conn, "xmtravel") == {
            "xmtravel.warning": ("xmtravel:2", 20),
            "xmtravel.good": ("xmtravel:3", 7),
        }
        assert last_healthy_list_records(conn, "xmtravel", before_seq=3) == {
            "xmtravel.warning": ("xmtravel:2", 20),
            "xmtravel.good": ("xmtravel:1", 8),
        }
        assert last_healthy_list_records(conn, "xmtravel", before_seq=1) == {}
        assert last_healthy_list_records(conn, "ccgp") == {}


# --- source state (SCHEMA.md's K) ---------------------------------------------------------
def make_runs(url: str, source: str, states: list[str], shards: list[str] | None = None) -> None:
    """Runs of ``source`` in these states, oldest first, a day apart; ``shards`` gives each
    run's watchlist shard ``K/N`` ("" for a run of the whole source)."""
    upgrade(url)
    engine = get_engine(url)
    table = Run.__table__
    start = datetime(2025, 11, 21, 2, tzinfo=UTC)
    for state, shard in zip(states, shards or [""] * len(states), strict=True):
        index, _, count = shard.partition("/")
        place = {"shard": {"index": int(index), "count": int(count)}} if shard else None
        run_id = create_run(
            engine, get_source(source), mode="replay", cassette=None, delist_after=1,
            summary=place,
        )  # fmt: skip
        seq = int(run_id.rsplit(":", 1)[1])
        with engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.run_id == run_id)
                .values(state=state, started_at=start + timedelta(days=seq))
            )


def state_of(url: str, source: str = "ccgp", k: int = 3, **kw: Any) -> Any:
    with get_engine(url).connect() as conn:
        return source_state(conn, source, k, **kw)


def test_a_shard_failing_every_night_makes_its_source_failing(db_url: str) -> None:
    """Shard 1's healthy runs, interleaved with shard 2's failures, do not hide shard 2: each
    shard has its own streak, and a run of the whole source counts for both."""
    make_runs(db_url, "creditchina", ["healthy", "failed"] * 2, ["1/2", "2/2"] * 2)
    st = state_of(db_url, "creditchina")
    assert (st.state, st.shard, st.unhealthy_streak, st.newly_failing) == ("ok", "2/2", 2, False)
    make_runs(db_url, "creditchina", ["healthy", "failed"], ["1/2", "2/2"])
    st = state_of(db_url, "creditchina")
    assert (st.state, st.unhealthy_streak, st.newly_failing) == ("failing", 3, True)
    assert st.detail == "shard 2/2: 3 runs in a row unhealthy: failed, failed, failed"
    assert st.as_dict()["shard"] == "2/2"
    make_runs(db_url, "creditchina", ["healthy"], ["1/2"])  # still failing, not newly
    st = state_of(db_url, "creditchina")
    assert (st.state, st.unhealthy_streak, st.newly_failing) == ("failing", 3, False)
    make_runs(db_url, "creditchina", ["healthy"], ["2/2"])
    st = state_of(db_url, "creditchina")
    assert (st.state, st.shard, st.unhealthy_streak, st.detail) == (
        "ok",
        None,
        0,
        "healthy (creditchina:8)",
    )
    # A failed run of the whole source counts for both shards; the newest run names the
    # split, and its shard is shown on a tie.
    make_runs(db_url, "creditchina", ["failed", "failed", "degraded"], ["", "2/2", "1/2"])
    st = state_of(db_url, "creditchina")
    assert (st.state, st.shard, st.unhealthy_streak) == ("ok", "1/2", 2)
    make_runs(db_url, "creditchina", ["degraded"], ["1/2"])
    st = state_of(db_url, "creditchina")
    assert (st.state, st.shard, st.unhealthy_streak, st.newly_failing) == (
        "failing",
        "1/2",
        3,
        True,
    )


def test_source_state_from_runs(db_url: str) -> None:
    make_runs(db_url, "ccgp", [])
    never = state_of(db_url)
    assert (never.state, never.unhealthy_streak, never.last_runs) == ("never_run", 0, ())
    assert never.detail == "never run" and not never.newly_failing

    make_runs(db_url, "ccgp", ["healthy", "degraded", "running"])
    st = state_of(db_url)
    assert (st.state, st.unhealthy_streak, st.running) == ("ok", 1, ("ccgp:3",))
    assert st.last_healthy is not None and st.last_healthy.run_id == "ccgp:1"
    assert [r.run_id for r in st.last_runs] == ["ccgp:2", "ccgp:1"]  # running skipped

    make_runs(db_url, "ccgp", ["failed", "aborted"])  # aborted counts as unhealthy
    st = state_of(db_url)
    assert (st.state, st.unhealthy_streak) == ("failing", 3) and st.newly_failing
    # The same words the health alert has always used, newest first.
    assert st.detail == "3 runs in a row unhealthy: aborted, failed, degraded"
    assert state_of(db_url, k=4).state == "ok"

    make_runs(db_url, "ccgp", ["failed"])
    st = state_of(db_url, last=2)
    assert (st.state, st.unhealthy_streak, st.newly_failing) == ("failing", 4, False)
    assert st.detail == "4 runs in a row unhealthy: failed, aborted, …"
    assert st.as_dict()["last_healthy"]["run_id"] == "ccgp:1"

    make_runs(db_url, "ccgp", ["healthy"])
    st = state_of(db_url)
    assert (st.state, st.unhealthy_streak, st.detail) == ("ok", 0, "healthy (ccgp:7)")
    # Sources are apart, and a source with no healthy run counts every finished run.
    make_runs(db_url, "gsxt", ["degraded", "degraded", "failed"])
    assert (state_of(db_url, "gsxt").state, state_of(db_url, "gsxt").last_healthy) == (
        "failing",
        None,
    )
    with pytest.raises(ValueError):
        state_of(db_url, k=0)


# --- each check broken by a replay whose pages are all fine --------------------------------
ROW = re.compile(r"<tr><td>\d+</td>.*?</tr>\n?")
PROFILE_ENTRIES = re.compile(
    r'(<table class="list_table" id="(?:lhxx|jsxx)"[^>]*><tr><th>.*?</tr>).*?</table>'
)


def edit_html(response: dict[str, Any], change: Callable[[str], str]) -> None:
    body = response["body"]
    body["string"] = change(body["string"].decode("gbk")).encode("gbk")


def show_only(data: dict[str, Any], list_page: str, keep: int) -> None:
    """The list shows its first ``keep`` entries on one page and its pager agrees, and the
    subjects' profile pages link no entries (so only those ``keep`` are found)."""

    def shorten(html: str) -> str:
        for row in ROW.findall(html)[keep:]:
            html = html.replace(row, "")
        return re.sub(
            r"共 <b>\d+</b> 条记录 &nbsp; 第 1/\d+ 页",
            f"共 <b>{keep}</b> 条记录 &nbsp; 第 1/1 页",
            html,
        )

    edit_html(interaction(data, list_page)["response"], shorten)
    for item in data["interactions"]:
        if "/subject/info.html" in item["request"]["uri"]:
            edit_html(
                item["response"],
                lambda html: PROFILE_ENTRIES.sub(
                    r'\1<tr><td colspan="4">暂无记录</td></tr></table>', html
                ),
            )


def few_honours(data: dict[str, Any]) -> None:
    show_only(data, "lhxx-main.html", 2)  # 8 → 2, under min_rows 3


def few_warnings(data: dict[str, Any]) -> None:
    show_only(data, "xygs-main.html", 4)  # 23 → 4: 83% fewer, max_drop is 80


def authority_label_renamed(data: dict[str, Any]) -> None:
    """Every warning's detail page calls 处罚机关 something the label map does not know."""
    for item in data["interactions"]:
        if "/xygs-detail.html" in item["request"]["uri"]:
            edit_html(item["response"], lambda html: html.replace("处罚机关", "处罚主体"))


CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str, str, int]] = {
    # check → (edit of day 1, the list it breaks, the check, records the run staged)
    "min_rows": (few_honours, "xmtravel.good", "min_rows", 2),
    "max_drop": (few_warnings, "xmtravel.warning", "max_drop", 4),
    "fill_rates": (authority_label_renamed, "xmtravel.warning", "fill_rate", 23),
}


def records_state(url: str) -> dict[tuple[str, str], tuple[str, int]]:
    table = Record.__table__
    with get_engine(url).connect() as conn:
        return {
            (r.list, r.record_key): (r.status, r.absent_runs) for r in conn.execute(select(table))
        }


@pytest.mark.replay
@pytest.mark.parametrize("case", CASES)
def test_a_broken_check_makes_the_list_unhealthy_and_delists_nothing(
    case: str, db_url: str, tmp_path: Path, netguard: Path
) -> None:
    damage, broken, check, staged_records = CASES[case]
    data = load_cassette(DAY1)
    damage(data)
    cassette = save_cassette(data, tmp_path / f"day1-{case}.yaml")
    replay(db_url, DAY1, delist_after=1)
    before = records_state(db_url)

    run_id = replay(db_url, cassette, delist_after=1)

    health = list_health(db_url, run_id)
    assert health[broken].health == "degraded"
    assert health[broken].records == staged_records
    assert [f["check"] for f in health[broken].findings] == [check]  # every page was fine
    (other,) = set(health) - {broken}
    assert health[other].health == "healthy"
    assert run_row(db_url, run_id).state == "degraded"
    assert [e for e in events(db_url, run_id) if e["event"] == "delisted"] == []
    # Statuses and absence counters are as the healthy day 1 left them.
    assert records_state(db_url) == before
    assert netguard.read_text() == ""


@pytest.mark.replay
def test_half_a_list_vanishing_stays_healthy(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """The shipped max_drop leaves this case to the delisting guard."""
    data = load_cassette(DAY1)
    show_only(data, "xygs-main.html", 10)  # 23 → 10: 57% fewer
    cassette = save_cassette(data, tmp_path / "day1-half.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    run_id = replay(sqlite_url, cassette, delist_after=1)
    warning = list_health(sqlite_url, run_id)["xmtravel.warning"]
    assert (warning.health, warning.records, warning.findings) == ("healthy", 10, [])


@pytest.mark.replay
def test_max_drop_keeps_comparing_with_the_last_healthy_run(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """A degraded run is no new yardstick: the next short run still compares with day 1."""
    data = load_cassette(DAY1)
    few_warnings(data)
    cassette = save_cassette(data, tmp_path / "day1-few.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    replay(sqlite_url, cassette, delist_after=1)
    third = replay(sqlite_url, cassette, delist_after=1)
    (finding,) = list_health(sqlite_url, third)["xmtravel.warning"].findings
    assert (finding["previous_run"], finding["previous"]) == ("xmtravel:1", 23)
