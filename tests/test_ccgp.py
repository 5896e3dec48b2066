"""Acceptance for the CCGP model: two replayed days against ``fixtures/ccgp/expected.json``,
and damaged list pages that must leave the list unhealthy and delist nothing by absence."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crawlers.sources.ccgp.spider import form_body
from tests.helpers import (
    FIXTURES,
    assert_matches_truth,
    events,
    exported,
    list_health,
    load_cassette,
    replay,
    run_row,
    save_cassette,
)
from tests.replay_cache import Replay, Replayed

HERE = FIXTURES / "ccgp"
DAY1 = HERE / "ccgp-day1.yaml"
DAY2 = HERE / "ccgp-day2.yaml"
LIST = "ccgp.serious_violations"
LIST_URL = "http://www.ccgp.gov.cn/cr/list"
EXPECTED: dict[str, Any] = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))


def ccgp_replay(url: str, cassette: Path, delist_after: int = 2) -> str:
    return replay(url, cassette, delist_after=delist_after, source="ccgp")


def by_case(record: dict[str, Any]) -> tuple[str]:
    return (record["case_number"],)


def canonical(event: dict[str, Any]) -> str:
    return json.dumps(event, sort_keys=True, ensure_ascii=False)


def event_view(event: dict[str, Any]) -> dict[str, Any]:
    return {k: event.get(k) for k in ("event", "list", "case_number", "entity_name", "cause")}


def assert_events(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """Exactly the expected events (no more), with the named fields changed for ``modified``."""
    plain = [
        {**{"cause": None}, **{k: v for k, v in e.items() if k != "changes_include"}}
        for e in expected
    ]
    assert sorted(map(event_view, got), key=canonical) == sorted(plain, key=canonical)
    for want in expected:
        if "changes_include" in want:
            (match,) = [g for g in got if g["event"] == "modified"]
            assert set(want["changes_include"]) <= set(match["changes"])


def list_page(data: dict[str, Any], page: int) -> dict[str, Any]:
    """The POST of list page ``page``: one URL for all pages, the body tells them apart."""
    matches = [
        i
        for i in data["interactions"]
        if i["request"]["method"] == "POST" and i["request"]["body"] == form_body(page)
    ]
    assert len(matches) == 1, f"{len(matches)} interactions post page {page}"
    return matches[0]


@pytest.mark.replay
def test_two_days_match_expected_records_and_events(db_url: str, netguard: Path) -> None:
    day1 = ccgp_replay(db_url, DAY1, delist_after=1)
    assert run_row(db_url, day1).state == "healthy"
    health = list_health(db_url, day1)[LIST]
    assert (health.health, health.pages, health.rows_declared, health.rows_seen) == (
        "healthy",
        2,
        12,
        12,
    )
    assert_matches_truth(exported(db_url, "ccgp"), EXPECTED["records"]["1"], by_case)
    first = events(db_url, day1)
    assert all(e["event"] == "listed" and e["baseline"] for e in first)
    # No baseline listing for the entry already past its 处罚截止日期.
    assert sorted(e["case_number"] for e in first) == sorted(EXPECTED["baseline_listed_day1"])

    day2 = ccgp_replay(db_url, DAY2, delist_after=1)
    assert run_row(db_url, day2).state == "healthy"
    assert list_health(db_url, day2)[LIST].health == "healthy"
    assert_matches_truth(exported(db_url, "ccgp"), EXPECTED["records"]["2"], by_case)
    assert_events(events(db_url, day2), EXPECTED["events_day2"]["delist_after_1"])
    assert netguard.read_text() == "", "a replayed run reached for the network"


@pytest.mark.replay
def test_default_delist_after_two_raises_no_disappeared_on_day_two(
    sqlite_url: str, replayed: Replayed
) -> None:
    _, day2 = replayed(sqlite_url, Replay(DAY1, source="ccgp"), Replay(DAY2, source="ccgp"))
    assert_events(events(sqlite_url, day2), EXPECTED["events_day2"]["delist_after_2"])


@pytest.mark.replay
def test_records_point_to_their_detail_pages_and_keep_the_list_page(
    sqlite_url: str, replayed: Replayed
) -> None:
    from storage.archive import get_response
    from storage.engine import get_engine

    replayed(sqlite_url, Replay(DAY1, source="ccgp"))
    with get_engine(sqlite_url).connect() as conn:
        for record in exported(sqlite_url, "ccgp"):
            archived = get_response(conn, record["raw_sha256"])
            assert archived.url == record["source_url"]
            assert "/cr/list/detail?id=" in archived.url
            assert record["case_number"].encode("utf-8") in archived.body
            roles = [page["role"] for page in record["extra"]["pages"]]
            assert roles == ["list", "detail"]
            assert record["extra"]["pages"][0]["url"] == LIST_URL


@pytest.mark.replay
def test_ccgp_labels_fill_reason_and_authority(sqlite_url: str, replayed: Replayed) -> None:
    """严重违法失信行为的具体情形 is the reason and 执法单位 the authority: CCGP's own labels,
    mapped by the ``labels:`` block of crawlers/sources/ccgp/source.yml."""
    replayed(sqlite_url, Replay(DAY1, source="ccgp"))
    records = {r["case_number"]: r for r in exported(sqlite_url, "ccgp")}
    for want in EXPECTED["label_fields"]:
        got = records.get(want["case_number"])
        if got is not None:
            assert (got["reason"], got["authority"]) == (want["reason"], want["authority"])


def test_spider_posts_the_cassettes_form_bytes() -> None:
    """Cassettes (and the portal) tell list pages apart by their form body alone."""
    for cassette in (DAY1, DAY2):
        data = load_cassette(cassette)
        posts = [i["request"] for i in data["interactions"] if i["request"]["method"] == "POST"]
        assert {p["uri"] for p in posts} == {LIST_URL}
        assert [p["body"] for p in posts] == [form_body(n) for n in (1, 2)]
    assert form_body(2) == "orgName=&orgCode=&enforceUnit=&punishTime=&punishTimeMax=&gp=2"


# --- Faults: each damages day 2; day 1 is replayed intact first ---------------------------


def answer_500(data: dict[str, Any]) -> None:
    response = list_page(data, 2)["response"]
    response["status"] = {"code": 500, "message": "Internal Server Error"}
    response["body"] = {"string": "<html><body>500 Internal Server Error</body></html>"}


def rename_header(data: dict[str, Any]) -> None:
    response = list_page(data, 1)["response"]
    response["body"]["string"] = response["body"]["string"].replace(
        "<th>企业名称</th>", "<th>供应商名称</th>"
    )


def record_other_page(data: dict[str, Any]) -> None:
    """Page 2 recorded under another form body: the spider's POST finds no answer."""
    list_page(data, 2)["request"]["body"] = form_body(3)


def ignore_page_number(data: dict[str, Any]) -> None:
    """The portal answers page 2's POST with page 1 (as if it ignored ``gp``)."""
    list_page(data, 2)["response"] = json.loads(json.dumps(list_page(data, 1)["response"]))


FAULTS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "list page answers 500": (answer_500, "http_error"),
    "list header renamed": (rename_header, "layout_drift"),
    "page posted with another body": (record_other_page, "http_error"),
    "portal ignores the page number": (ignore_page_number, "malformed"),
}


@pytest.mark.replay
@pytest.mark.parametrize("fault", FAULTS)
def test_damaged_list_page_is_unhealthy_and_delists_nothing_by_absence(
    fault: str, sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    damage, outcome = FAULTS[fault]
    data = load_cassette(DAY2)
    damage(data)
    damaged = save_cassette(data, tmp_path / "ccgp-day2-damaged.yaml")

    replayed(sqlite_url, Replay(DAY1, source="ccgp", delist_after=1))
    run_id = ccgp_replay(sqlite_url, damaged, delist_after=1)

    health = list_health(sqlite_url, run_id)[LIST]
    assert health.health != "healthy"
    assert outcome in {f.get("outcome") for f in health.findings}
    got = events(sqlite_url, run_id)
    assert [e for e in got if e["cause"] == "disappeared"] == []
