"""Acceptance for the GSXT model: two replayed days against ``fixtures/gsxt/expected.json``
(in-row removals, a company listed again), and damaged pages that must leave the list
unhealthy and delist nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.items import PageRef
from crawlers.sources.gsxt.spider import GsxtSpider, _Row
from storage.asof import export_records
from storage.engine import get_engine
from storage.models import Record
from tests.helpers import (
    FIXTURES,
    events,
    interaction,
    list_health,
    load_cassette,
    replay,
    run_row,
    save_cassette,
)
from tests.replay_cache import Replay, Replayed

HERE = FIXTURES / "gsxt"
DAY1 = HERE / "gsxt-day1.yaml"
DAY2 = HERE / "gsxt-day2.yaml"
LIST = "gsxt.serious_illegal"
EXPECTED: dict[str, Any] = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
FIELDS = ("entity_name", "entity_type", "uscc", "reason", "decided_on", "authority")
FIELDS += ("valid_until", "status", "source_url")
VIEW = ("event", "list", "record_key", "entity_name", "cause")


def gsxt_replay(url: str, cassette: Path, delist_after: int = 2) -> str:
    return replay(url, cassette, delist_after=delist_after, source="gsxt")


def all_records(url: str) -> dict[str, dict[str, Any]]:
    """Every stored entry by record_key with its status, removed ones included."""
    table = Record.__table__
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(table.c.data, table.c.status).where(table.c.list == LIST))
        records = [{**row.data, "status": row.status} for row in rows]
    by_key = {r["record_key"]: r for r in records}
    assert len(by_key) == len(records), "one company, one entry"
    return by_key


def assert_records(url: str, expected: list[dict[str, Any]]) -> None:
    got = all_records(url)
    assert sorted(got) == sorted(e["record_key"] for e in expected)
    for want in expected:
        record = got[want["record_key"]]
        assert {f: record[f] for f in FIELDS} == {f: want[f] for f in FIELDS}
        assert record["extra"].get("removal") == want["removal"]


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, ensure_ascii=False)


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {k: event.get(k) for k in VIEW}


def page_sha(cassette: Path, url: str) -> str:
    body = next(
        i["response"]["body"]["string"]
        for i in load_cassette(cassette)["interactions"]
        if i["request"]["uri"] == url
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


@pytest.mark.replay
def test_two_days_match_expected_records_and_events(db_url: str, netguard: Path) -> None:
    day1 = gsxt_replay(db_url, DAY1, delist_after=1)
    assert run_row(db_url, day1).state == "healthy"
    health = list_health(db_url, day1)[LIST]
    assert (health.health, health.pages, health.rows_declared, health.rows_seen) == (
        "healthy",
        3,
        11,
        11,
    )
    assert_records(db_url, EXPECTED["records"]["1"])
    first = events(db_url, day1)
    assert all(e["event"] == "listed" and e["baseline"] for e in first)
    # The company whose row already carries its removal is stored removed, not listed.
    assert sorted(e["record_key"] for e in first) == sorted(EXPECTED["baseline_listed_day1"])

    day2 = gsxt_replay(db_url, DAY2, delist_after=1)
    assert run_row(db_url, day2).state == "healthy"
    assert list_health(db_url, day2)[LIST].health == "healthy"
    assert_records(db_url, EXPECTED["records"]["2"])

    got = events(db_url, day2)
    plain = [{"cause": None} | {k: e[k] for k in VIEW if k in e} for e in EXPECTED["events_day2"]]
    assert sorted(map(event_view, got), key=canonical) == sorted(plain, key=canonical)
    for want in EXPECTED["events_day2"]:
        (match,) = [g for g in got if g["event"] == want["event"]]
        if "evidence_url" in want:
            assert match["evidence"] == {
                "source_url": want["evidence_url"],
                "raw_sha256": page_sha(DAY2, want["evidence_url"]),
            }
        if "changes_include" in want:
            assert set(want["changes_include"]) <= set(match["changes"])
    assert netguard.read_text() == "", "a replayed run reached for the network"


@pytest.mark.replay
def test_removed_row_keeps_its_published_labels(sqlite_url: str, replayed: Replayed) -> None:
    replayed(sqlite_url, Replay(DAY1, source="gsxt"))
    removed = [r for r in all_records(sqlite_url).values() if r["status"] == "removed"]
    assert len(removed) == 1
    extra = removed[0]["extra"]
    assert extra["remExcpRes_CN"] == extra["removal"]["reason"]
    assert {"remDate", "reDecOrg_CN"} <= set(extra)


@pytest.mark.replay
def test_export_leaves_out_rows_shown_with_their_removal_unless_asked(
    sqlite_url: str, replayed: Replayed
) -> None:
    replayed(sqlite_url, Replay(DAY1, source="gsxt"))
    with get_engine(sqlite_url).connect() as conn:
        listed, _ = export_records(conn, "gsxt", [LIST])
        everything, _ = export_records(conn, "gsxt", [LIST], include_removed=True)
    assert {r["status"] for r in listed} <= {"active", "expired"}
    keys = [r["record_key"] for r in everything]
    assert len(keys) == len(set(keys)) == len(listed) + 1


def test_one_entry_per_company_whatever_order_pages_arrive_in() -> None:
    """A company's current row wins: its latest listing in force, else its latest listing."""
    spider = GsxtSpider()
    page1 = PageRef("https://x/?start=0", "a" * 64, "list")
    page2 = PageRef("https://x/?start=5", "b" * 64, "list")
    old = {"entName": "甲公司", "uniscId": "U1", "abntime": "1600000000000", "remDate": "1"}
    new = {"entName": "甲公司", "uniscId": "U1", "abntime": "1700000000000"}
    other = {"entName": "乙公司", "uniscId": "U2", "abntime": "1650000000000", "remDate": "2"}
    rows = [_Row(new, page1, (1, 0)), _Row(other, page1, (1, 1)), _Row(old, page2, (2, 0))]
    for ordered in (rows, rows[::-1]):
        entries = list(spider.entries(LIST, ordered))
        assert [e.fields for e in entries] == [new, other]
        assert entries[0].pages == [page1, page2]


def test_a_missing_page_holds_back_the_companies_it_could_supersede() -> None:
    """Page 2 fails: a company seen only by an old removed row (its relisting may be on page
    2) and one whose row is on page 3 (a newer row may be on page 2) are held back, not read
    as removed or as an older decision; a company on page 1 is read."""
    pages = [PageRef(f"https://x/?start={5 * n}", str(n) * 64, "list") for n in range(3)]
    removed = {"entName": "甲公司", "uniscId": "U1", "abntime": "1600000000000", "remDate": "1"}
    first = {"entName": "乙公司", "uniscId": "U2", "abntime": "1700000000000"}
    third = {"entName": "丙公司", "uniscId": "U3", "abntime": "1500000000000"}
    rows = [_Row(first, pages[0], (1, 0)), _Row(third, pages[2], (3, 0))]
    rows.append(_Row(removed, pages[2], (3, 1)))

    def read(failed_page: int | None) -> list[dict[str, str]]:
        spider = GsxtSpider()
        spider.expected_pages, spider.rows = {1, 2, 3}, list(rows)
        got = []
        for page_no in (1, 3, 2):
            got += spider.page_answered(LIST, page_no, failed=page_no == failed_page)
        return [e.fields for e in got]

    assert read(failed_page=None) == [first, third, removed]
    assert read(failed_page=2) == [first]


# --- Faults: each damages day 2; day 1 is replayed intact first ---------------------------

PAGE2 = "affiche-query-info-illInfo.html?start=5"


def answer_500(data: dict[str, Any]) -> None:
    response = interaction(data, PAGE2)["response"]
    response["status"] = {"code": 500, "message": "Internal Server Error"}
    response["body"] = {"string": "<html><body>500 Internal Server Error</body></html>"}


def truncate_json(data: dict[str, Any]) -> None:
    body = interaction(data, PAGE2)["response"]["body"]
    body["string"] = body["string"][: len(body["string"]) // 2]


def rename_key(data: dict[str, Any]) -> None:
    body = interaction(data, PAGE2)["response"]["body"]
    body["string"] = body["string"].replace('"entName"', '"entNameCN"')


def empty_rows(data: dict[str, Any]) -> None:
    body = interaction(data, PAGE2)["response"]["body"]
    page = json.loads(body["string"])
    body["string"] = json.dumps({**page, "data": []}, ensure_ascii=False)


def redirect_to_itself(data: dict[str, Any]) -> None:
    found = interaction(data, PAGE2)
    found["response"]["status"] = {"code": 302, "message": "Found"}
    found["response"]["headers"]["Location"] = [found["request"]["uri"]]
    found["response"]["body"] = {"string": ""}


FAULTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "list page answers 500": (answer_500, "http_error"),
    "list page JSON truncated": (truncate_json, "malformed"),
    "row key renamed": (rename_key, "layout_drift"),
    "list page has no rows": (empty_rows, "empty"),
    # Scrapy drops the redirect as a page already requested: no callback, no errback.
    "list page redirects to itself": (redirect_to_itself, "http_error"),
}


@pytest.mark.replay
@pytest.mark.parametrize("fault", FAULTS)
def test_damaged_list_page_is_unhealthy_and_delists_nothing(
    fault: str, sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    damage, outcome = FAULTS[fault]
    data = load_cassette(DAY2)
    damage(data)
    damaged = save_cassette(data, tmp_path / "gsxt-day2-damaged.yaml")

    replayed(sqlite_url, Replay(DAY1, source="gsxt", delist_after=1))
    run_id = gsxt_replay(sqlite_url, damaged, delist_after=1)

    health = list_health(sqlite_url, run_id)[LIST]
    assert health.health != "healthy"
    named = [f for f in health.findings if f.get("outcome") == outcome]
    assert named and any(PAGE2 in url for url in named[0]["urls"])
    got = events(sqlite_url, run_id)
    # The damaged page held the row that gained its removal: nothing is delisted at all.
    assert [e for e in got if e["event"] == "delisted"] == []
    # The pages that did answer still list and relist.
    assert {e["event"] for e in got} <= {"listed", "relisted", "modified"}
    assert {e["entity_name"] for e in got if e["event"] == "listed"} == {
        e["entity_name"] for e in EXPECTED["events_day2"] if e["event"] == "listed"
    }
