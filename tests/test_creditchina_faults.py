"""Every Credit China defence, replayed on day 2: an unhealthy run, the outcome named, no delisting.

Each fault is an edit of the day-2 cassette, replayed after a clean day 1 (whose database is
made once and copied). Session-level refusals (412 challenge, 40001, an unsolved captcha,
403/429) bear on every list and stop the run's calls; page-level problems (empty, malformed,
a failed fetch) bear on their own list, and the other lists still prove absence.
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.creditchina_support import (
    API,
    CC,
    CC_DAY1,
    CC_DAY2,
    LISTS,
    PORTAL,
    answer,
    api_interaction,
    needs_chromium,
    portal_interaction,
    replay_cc,
)
from tests.helpers import (
    events,
    fetches,
    interaction,
    list_health,
    load_cassette,
    run_row,
    save_cassette,
)

pytestmark = needs_chromium

SX = ("credit_zgf_zrr_sxbzxr_jb",)
JSON = "application/json;charset=UTF-8"
CHALLENGE = (CC / "challenge-412.html").read_text(encoding="utf-8")
REJECTED = (CC / "samples" / "challenge_40001_http500_response.json").read_text(encoding="utf-8")
CAPTCHA = '{"status":400,"message":"验证码错误或已失效，请重新验证","data":null}'


def sx_page(data: dict[str, Any], number: int) -> dict[str, Any]:
    return api_interaction(data, "catalogSearchPerson", *SX, f"page={number}&")


def portal_challenge(data: dict[str, Any]) -> str:
    answer(portal_interaction(data), 412, CHALLENGE, "text/html; charset=utf-8")
    return PORTAL


def api_challenge(data: dict[str, Any]) -> str:
    target = sx_page(data, 2)
    answer(target, 412, CHALLENGE, "text/html; charset=utf-8")
    return target["request"]["uri"]


def session_rejected(data: dict[str, Any]) -> str:
    target = sx_page(data, 1)
    answer(target, 500, REJECTED, JSON)
    return target["request"]["uri"]


def captcha_page(data: dict[str, Any]) -> str:
    target = sx_page(data, 1)
    answer(target, 400, CAPTCHA, JSON)
    return target["request"]["uri"]


def forbidden(data: dict[str, Any]) -> str:
    target = api_interaction(data, "catalogSearchPerson", "credit_hmd_zrr_xzhc_jb")
    answer(target, 403, "<html><body>403 Forbidden</body></html>", "text/html")
    return target["request"]["uri"]


def too_many(data: dict[str, Any]) -> str:
    target = api_interaction(
        data, "typeSourceSearch", "91320303MA1XQ7R3BE", "%E8%A1%8C%E6%94%BF%E5%A4%84%E7%BD%9A"
    )
    answer(target, 429, "Too Many Requests", "text/plain")
    return target["request"]["uri"]


def empty_list(data: dict[str, Any]) -> str:
    target = api_interaction(data, "catalogSearchPerson", "credit_hmd_zrr_xzhc_jb")
    body = {
        "status": 1,
        "message": "成功",
        "data": {"page": 1, "total": 0, "totalSize": 0, "list": []},
    }
    answer(target, 200, json.dumps(body, ensure_ascii=False), JSON)
    return target["request"]["uri"]


def malformed_json(data: dict[str, Any]) -> str:
    target = sx_page(data, 2)
    answer(
        target, 200, '{"status": 1, "message": "成功", "data": {"page": 2, "list": [{"xm": ', JSON
    )
    return target["request"]["uri"]


def no_total(data: dict[str, Any]) -> str:
    target = api_interaction(data, "catalogSearchPerson", "credit_hmd_zrr_xzfj_jb")
    body = json.loads(target["response"]["body"]["string"])
    del body["data"]["total"]
    answer(target, 200, json.dumps(body, ensure_ascii=False), JSON)
    return target["request"]["uri"]


def missing_page(data: dict[str, Any]) -> str:
    target = sx_page(data, 2)
    data["interactions"].remove(target)
    return target["request"]["uri"]


Fault = Callable[[dict[str, Any]], str]
# fault → (edit, outcome, the list it bears on; None = every list)
FAULTS: dict[str, tuple[Fault, str, str | None]] = {
    "portal page is a 412 challenge that never clears": (portal_challenge, "waf_challenge", None),
    "API answers a 412 challenge": (api_challenge, "waf_challenge", None),
    "API answers 500 status 40001": (session_rejected, "session_rejected", None),
    "API asks for a captcha, no solver": (captcha_page, "captcha_required", None),
    "API answers 403": (forbidden, "rate_limited", None),
    "API answers 429": (too_many, "rate_limited", None),
    "list comes back empty": (empty_list, "empty", "creditchina.xzhc"),
    "list page is malformed JSON": (malformed_json, "malformed", "creditchina.sxbzxr"),
    "list page missing from cassette": (missing_page, "http_error", "creditchina.sxbzxr"),
    "list envelope without its total": (no_total, "layout_drift", "creditchina.xzfj"),
}


def day1_copy(template: Path, tmp_path: Path) -> str:
    """A copy of the day-1 database (through SQLite's backup API: it is in WAL mode)."""
    target = tmp_path / "creditwatch.sqlite"
    with closing(sqlite3.connect(template)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    return f"sqlite:///{target}"


@pytest.fixture(scope="module")
def day1_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cc-day1") / "creditwatch.sqlite"
    replay_cc(f"sqlite:///{path}", CC_DAY1)
    return path


@pytest.mark.parametrize("fault", FAULTS)
def test_defence_makes_the_run_unhealthy_and_delists_nothing(
    fault: str, day1_database: Path, tmp_path: Path, netguard: Path
) -> None:
    damage, outcome, bears_on = FAULTS[fault]
    data = load_cassette(CC_DAY2)
    url = damage(data)
    cassette = save_cassette(data, tmp_path / "day2-damaged.yaml")
    db_url = day1_copy(day1_database, tmp_path)

    run_id = replay_cc(db_url, cassette)

    health = list_health(db_url, run_id)
    hit = LISTS if bears_on is None else (bears_on,)
    for list_id in hit:
        assert health[list_id].health != "healthy", list_id
        named = [f for f in health[list_id].findings if f.get("outcome") == outcome]
        assert named and url in named[0]["urls"], health[list_id].findings
    got = events(db_url, run_id)
    delisted = [e for e in got if e["event"] == "delisted"]
    assert not [e for e in delisted if e["list"] in hit]
    if bears_on is not None:
        # The other lists still vouch for themselves; of them only watch mode delists what it
        # no longer shows (the list-mode lists are read in part: `coverage: partial`).
        assert {e["list"] for e in delisted} == {"creditchina.watch_xzcf"} - {bears_on}
    run = run_row(db_url, run_id)
    assert run.state in ("degraded", "failed")
    assert run.summary["outcomes"][outcome]["count"] >= 1
    assert netguard.read_text() == ""


def test_session_refusal_stops_asking(day1_database: Path, tmp_path: Path) -> None:
    """After a 40001 no further API call is made: the portal is not hammered."""
    data = load_cassette(CC_DAY2)
    session_rejected(data)
    cassette = save_cassette(data, tmp_path / "day2-40001.yaml")
    db_url = day1_copy(day1_database, tmp_path)
    run_id = replay_cc(db_url, cassette)
    api_calls = [f for f in fetches(db_url, run_id) if f.url.startswith(API)]
    assert [f.outcome for f in api_calls] == ["session_rejected"]


def test_challenge_the_sites_script_clears_keeps_the_run_healthy(
    day1_database: Path, tmp_path: Path
) -> None:
    """The portal page first answers 412; its script sets a cookie and reloads; then 200."""
    data = load_cassette(CC_DAY2)
    portal = portal_interaction(data)
    challenge = copy.deepcopy(portal)
    clears = (CC / "challenge-412-clears.html").read_text(encoding="utf-8")
    answer(challenge, 412, clears, "text/html; charset=utf-8")
    data["interactions"].insert(data["interactions"].index(portal), challenge)
    cassette = save_cassette(data, tmp_path / "day2-challenge-clears.yaml")
    db_url = day1_copy(day1_database, tmp_path)
    run_id = replay_cc(db_url, cassette)
    health = list_health(db_url, run_id)
    # Every list, the capped tax list too (read in part by design: healthy (partial)).
    assert {h.health for h in health.values()} == {"healthy"}
    delisted = {e["list"] for e in events(db_url, run_id) if e["event"] == "delisted"}
    assert delisted == {"creditchina.watch_xzcf"}
    # The 412 is on record, filed under the session (it bears on no list).
    logged = [(f.outcome, f.list) for f in fetches(db_url, run_id) if f.url == PORTAL]
    assert ("waf_challenge", "creditchina.session") in logged and ("ok", None) not in logged


def test_robots_txt_forbidding_the_api_stops_the_run_before_any_call(
    day1_database: Path, tmp_path: Path
) -> None:
    data = load_cassette(CC_DAY2)
    robots = interaction(data, "public.creditchina.gov.cn/robots.txt")
    answer(robots, 200, "User-agent: *\nDisallow: /private-api/\n", "text/plain")
    cassette = save_cassette(data, tmp_path / "day2-robots.yaml")
    db_url = day1_copy(day1_database, tmp_path)
    run_id = replay_cc(db_url, cassette)
    logged = fetches(db_url, run_id)
    assert not [f for f in logged if "/private-api/" in f.url and f.outcome == "ok"]
    refusal = [f for f in logged if f.list is None]
    assert len(refusal) == 1 and "forbidden by" in refusal[0].detail
    assert {h.health for h in list_health(db_url, run_id).values()} == {"failed"}
    assert [e for e in events(db_url, run_id) if e["event"] == "delisted"] == []
