"""A damaged day-2 replay must mark the list unhealthy, name the page, and delist nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    DAY1,
    DAY2,
    events,
    fetches,
    interaction,
    list_health,
    load_cassette,
    replay,
    run_row,
    save_cassette,
)
from tests.replay_cache import Replay, Replayed

pytestmark = pytest.mark.replay

BASE = "http://credit.xmtravel.gov.cn:10345/credit_tour/publicity/"
PAGE2 = "xygs-main.html?pageNo=2"
PAGE3 = "xygs-main.html?pageNo=3"


def drop_interaction(data: dict[str, Any]) -> str:
    data["interactions"].remove(interaction(data, PAGE2))
    return BASE + PAGE2


def answer_500(data: dict[str, Any]) -> str:
    response = interaction(data, PAGE2)["response"]
    response["status"] = {"code": 500, "message": "Internal Server Error"}
    response["body"] = {"string": "<html><body>500 Internal Server Error</body></html>"}
    return BASE + PAGE2


def strip_rows(data: dict[str, Any]) -> str:
    response = interaction(data, PAGE3)["response"]
    html = response["body"]["string"].decode("gbk")
    rows = re.findall(r"<tr><td>.*?</tr>\n?", html)
    assert rows, "the page had rows to strip"
    for row in rows:
        html = html.replace(row, "")
    response["body"]["string"] = html.encode("gbk")
    return BASE + PAGE3


def drift_layout(data: dict[str, Any]) -> str:
    response = interaction(data, "xygs-main.html")["response"]
    html = response["body"]["string"].decode("gbk")
    response["body"]["string"] = html.replace("list_table", "grid").encode("gbk")
    return BASE + "xygs-main.html"


FAULTS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "page missing from cassette": (drop_interaction, "http_error"),
    "list page answers 500": (answer_500, "http_error"),
    "list page parses to zero rows": (strip_rows, "empty"),
    "list table renamed": (drift_layout, "layout_drift"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_damaged_list_page_is_unhealthy_and_delists_nothing(
    fault: str, sqlite_url: str, tmp_path: Path, netguard: Path
) -> None:
    damage, outcome = FAULTS[fault]
    data = load_cassette(DAY2)
    page_url = damage(data)
    damaged = save_cassette(data, tmp_path / "day2-damaged.yaml")

    replay(sqlite_url, DAY1, delist_after=1)
    run_id = replay(sqlite_url, damaged, delist_after=1)

    warning = list_health(sqlite_url, run_id)["xmtravel.warning"]
    assert warning.health != "healthy"
    named = [f for f in warning.findings if page_url in (f.get("urls") or [])]
    assert named and named[0]["outcome"] == outcome
    got = events(sqlite_url, run_id)
    assert [e for e in got if e["list"] == "xmtravel.warning" and e["event"] == "delisted"] == []
    # The undamaged list still proves absence on its own.
    assert list_health(sqlite_url, run_id)["xmtravel.good"].health == "healthy"
    assert [e["entity_name"] for e in got if e["cause"] == "disappeared"] == ["黄志鹏"]
    run = run_row(sqlite_url, run_id)
    assert run.state in ("degraded", "failed")
    assert run.summary["outcomes"][outcome]["count"] >= 1
    assert netguard.read_text() == ""


def test_failed_detail_page_holds_back_delisting_of_its_list(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    data = load_cassette(DAY2)
    data["interactions"].remove(
        interaction(data, "xygs-detail.html?id=fb3b29f6730864d490ec1f53510e92d3")
    )
    damaged = save_cassette(data, tmp_path / "day2-no-detail.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    run_id = replay(sqlite_url, damaged, delist_after=1)
    assert list_health(sqlite_url, run_id)["xmtravel.warning"].health == "degraded"
    got = events(sqlite_url, run_id)
    assert not [e for e in got if e["list"] == "xmtravel.warning" and e["event"] == "delisted"]
    failed = [f for f in fetches(sqlite_url, run_id) if f.outcome != "ok"]
    assert [f.url for f in failed] == [
        BASE + "xygs-detail.html?id=fb3b29f6730864d490ec1f53510e92d3"
    ]


def test_failed_subject_page_holds_back_its_entries_instead_of_blanking_them(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    data = load_cassette(DAY2)
    response = interaction(data, "subject/info.html?id=S00016")["response"]
    response["status"] = {"code": 503, "message": "Service Unavailable"}
    damaged = save_cassette(data, tmp_path / "day2-subject-down.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    run_id = replay(sqlite_url, damaged, delist_after=1)
    health = list_health(sqlite_url, run_id)
    assert {h.health for h in health.values()} == {"degraded"}
    got = events(sqlite_url, run_id)
    assert [e for e in got if e["event"] == "delisted"] == []
    # S00016's entries are neither blanked into `modified` nor delisted.
    assert [
        e for e in got if e["event"] == "modified" and e["entity_name"] != "厦门嘉禾酒店有限公司"
    ] == []


def test_unhealthy_run_keeps_absence_counters(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Absence counts only in healthy runs: healthy, broken, healthy → delisted on the third."""
    data = load_cassette(DAY2)
    answer_500(data)
    broken = save_cassette(data, tmp_path / "day2-500.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=2))
    replay(sqlite_url, broken, delist_after=2)
    third = replay(sqlite_url, DAY2, delist_after=2)
    warning_delisted = [
        e for e in events(sqlite_url, third) if e["list"] == "xmtravel.warning" and e["cause"]
    ]
    assert warning_delisted == []  # one healthy absence so far, two are needed
    fourth = replay(sqlite_url, DAY2, delist_after=2)
    names = sorted(
        e["case_number"] for e in events(sqlite_url, fourth) if e["cause"] == "disappeared"
    )
    assert names == ["厦文旅罚[2023]125号", "厦文旅罚[2025]71号"]


def test_entry_without_its_case_number_is_held_back_not_relisted(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """An entry whose case number is on neither its detail page nor its list row must not
    surface under a fallback key (a phantom `listed`)."""
    data = load_cassette(DAY2)
    response = interaction(data, "xygs-detail.html?id=fb3b29f6730864d490ec1f53510e92d3")
    html = response["response"]["body"]["string"].decode("gbk")
    response["response"]["body"]["string"] = html.replace("案件编号", "编号").encode("gbk")
    listing = interaction(data, "xygs-main.html")["response"]["body"]
    listing["string"] = listing["string"].decode("gbk").replace("案件编号", "编号").encode("gbk")
    damaged = save_cassette(data, tmp_path / "day2-no-case-number.yaml")
    replayed(sqlite_url, Replay(DAY1, delist_after=1))
    run_id = replay(sqlite_url, damaged, delist_after=1)
    warning = list_health(sqlite_url, run_id)["xmtravel.warning"]
    assert warning.health == "degraded"
    assert [f["outcome"] for f in warning.findings] == ["layout_drift"]
    got = events(sqlite_url, run_id)
    assert not [e for e in got if e["entity_name"] == "厦门嘉禾酒店有限公司"]
    assert not [e for e in got if e["list"] == "xmtravel.warning" and e["event"] == "delisted"]
