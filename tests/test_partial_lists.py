"""Lists read in part by design (the registry's ``coverage: partial``): Credit China's capped
lists come out ``healthy (partial)``, never turn the source ``failing``, never delist by
absence, and still degrade on a real fault.

The pure judgement is tested first; then replays of the Credit China model (its tax list
declares 57 entries and serves 50), through headless Chromium.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core import catalogue
from core.health import (
    FetchOutcome,
    PageSeen,
    faults,
    is_partial,
    judge_list,
    shown_health,
)
from core.registry import ReadLimit, get_source
from pipeline.cli import app
from pipeline.cli.console import health_label
from storage.engine import get_engine
from storage.models import Record, table_of
from storage.source_state import source_state
from tests.creditchina_support import (
    CC_DAY1,
    CC_DAY2,
    answer,
    api_interaction,
    needs_chromium,
    replay_cc,
)
from tests.helpers import events, list_health, load_cassette, run_row, save_cassette

LIMIT = ReadLimit(rows=50, pages=5)
TAX = "creditchina.zdsswf"
PARTIAL_LISTS = {"creditchina.sxbzxr", "creditchina.xzfj", "creditchina.xzhc", TAX}
runner = CliRunner()


def pages(*rows: int, total: int | None = 57, declared_pages: int | None = None) -> list[PageSeen]:
    return [
        PageSeen("l", f"https://x.test/?page={n}", n, count, total, declared_pages)
        for n, count in enumerate(rows, start=1)
    ]


# --- the judgement ----------------------------------------------------------------------------


def test_a_partial_list_read_up_to_its_limit_is_healthy_with_a_note() -> None:
    judged = judge_list("l", [], pages(10, 10, 10, 10, 10), 50, partial=LIMIT)
    assert judged.health == "healthy" and judged.partial
    (note,) = judged.findings
    assert note["check"] == "partial" and note["note"] is True
    assert (note["rows_seen"], note["rows_declared"], note["limit_rows"]) == (50, 57, 50)
    assert "read 50 of 57 entries" in note["detail"]
    assert faults(judged.findings) == []


def test_the_same_pages_of_a_complete_list_are_degraded() -> None:
    judged = judge_list("l", [], pages(10, 10, 10, 10, 10), 50)
    assert judged.health == "degraded" and not judged.partial
    assert [f["check"] for f in judged.findings] == ["rows"]


def test_a_partial_list_that_fits_under_its_limit_is_owed_every_entry() -> None:
    whole = judge_list("l", [], pages(10, 3, total=13), 13, partial=LIMIT)
    assert whole.health == "healthy" and whole.partial
    short = judge_list("l", [], pages(10, 2, total=13), 12, partial=LIMIT)
    assert short.health == "degraded" and not is_partial(short.findings)


@pytest.mark.parametrize(
    ("seen", "declared_pages", "check"),
    [
        ((10, 10, 7, 10, 10), None, "rows"),  # a page short of rows within the limit
        ((10, 10, 10, 10), None, "rows"),  # stopped before the limit
        ((10, 10, 10, 10), 6, "pages"),  # a page the pager promised within the limit
    ],
)
def test_a_truncated_read_of_a_partial_list_is_still_degraded(
    seen: tuple[int, ...], declared_pages: int | None, check: str
) -> None:
    judged = judge_list("l", [], pages(*seen, declared_pages=declared_pages), 40, partial=LIMIT)
    assert judged.health == "degraded" and not judged.partial
    assert check in {f["check"] for f in judged.findings}
    assert not is_partial(judged.findings)


def test_pages_past_the_limit_are_not_owed() -> None:
    judged = judge_list("l", [], pages(10, 10, 10, 10, 10, declared_pages=6), 50, partial=LIMIT)
    assert judged.health == "healthy"


@pytest.mark.parametrize(
    "outcome", ["waf_challenge", "session_rejected", "captcha_required", "layout_drift"]
)
def test_a_fetch_fault_on_a_partial_list_is_still_a_fault(outcome: str) -> None:
    fetches = [FetchOutcome("https://x.test/?page=3", outcome, None)]
    judged = judge_list("l", fetches, pages(10, 10, 10, 10, 10), 50, partial=LIMIT)
    assert judged.health == "degraded" and not judged.partial
    nothing = judge_list("l", fetches, pages(), 0, partial=LIMIT)
    assert nothing.health == "failed"


def test_healthy_partial_in_words() -> None:
    assert shown_health("healthy", True) == "healthy_partial"
    assert shown_health("degraded", True) == "degraded"
    assert shown_health("healthy", False) == "healthy"
    assert health_label("healthy", True) == "healthy (partial)"
    assert health_label("degraded", True) == "degraded"
    assert catalogue.word("health", "healthy_partial", "zh") == "健康（部分读取）"
    texts = catalogue.entries()
    assert texts["web.partial_note"]["en"].count("{limit}") == 1


# --- Credit China replays ---------------------------------------------------------------------


def records(url: str, list_id: str) -> dict[str, Any]:
    """The stored entries of a list, by entity name: (status, absent_runs)."""
    table = table_of(Record)
    with get_engine(url).connect() as conn:
        rows = conn.execute(select(table).where(table.c.list == list_id)).all()
    return {row.entity_name: (row.status, row.absent_runs) for row in rows}


@needs_chromium
def test_capped_lists_keep_the_source_ok_and_delist_nothing_by_absence(sqlite_url: str) -> None:
    """K runs of the model, each reading the tax list's 50 of 57 (58): healthy (partial)
    every time, so the source is ``ok``, not ``failing``; the entries the list-mode lists
    stop showing stay listed, their absence never counted."""
    failing_after = get_source("creditchina").failing_after
    runs = [replay_cc(sqlite_url, CC_DAY1)]
    before = {name: records(sqlite_url, name) for name in PARTIAL_LISTS}
    runs += [replay_cc(sqlite_url, CC_DAY2) for _ in range(max(failing_after - 1, 2))]
    for run_id in runs:
        run = run_row(sqlite_url, run_id)
        assert run.state == "healthy", run_id
        assert set(run.summary["partial"]) == PARTIAL_LISTS
        tax = list_health(sqlite_url, run_id)[TAX]
        assert tax.health == "healthy" and is_partial(tax.findings)
    with get_engine(sqlite_url).connect() as conn:
        state = source_state(conn, "creditchina", failing_after)
    assert (state.state, state.unhealthy_streak) == ("ok", 0)
    assert state.last_healthy is not None and state.last_healthy.run_id == runs[-1]
    # delist_after=1, and day 2 no longer shows a row of sxbzxr, of xzhc and of the tax list:
    # each stays stored, active, its absence never counted.
    for name in PARTIAL_LISTS:
        now = records(sqlite_url, name)
        assert set(before[name]) <= set(now), name
        assert {status for status, _ in now.values()} == {"active"}, name
        assert {absent for _, absent in now.values()} == {0}, name
    for run_id in runs[1:]:
        delisted = [e for e in events(sqlite_url, run_id) if e["event"] == "delisted"]
        assert not [e for e in delisted if e["list"] in PARTIAL_LISTS]
    # Watch mode is complete per subject: its absence still delists (day 2, once).
    assert [e["list"] for e in events(sqlite_url, runs[1]) if e["event"] == "delisted"] == [
        "creditchina.watch_xzcf"
    ]


@needs_chromium
def test_a_truncated_page_of_the_capped_list_still_degrades_it(
    sqlite_url: str, tmp_path: Path
) -> None:
    """Page 3 of the tax list comes back with 7 rows of 10: short within the read limit."""
    replay_cc(sqlite_url, CC_DAY1)
    data = load_cassette(CC_DAY2)
    target = api_interaction(data, "catalogSearch", "credit_swzj_fr_zdsswfajdsr", "page=3&")
    body = json.loads(target["response"]["body"]["string"])
    body["data"]["list"] = body["data"]["list"][:7]
    answer(target, 200, json.dumps(body, ensure_ascii=False), "application/json;charset=UTF-8")
    run_id = replay_cc(sqlite_url, save_cassette(data, tmp_path / "day2-truncated.yaml"))
    tax = list_health(sqlite_url, run_id)[TAX]
    assert (tax.health, tax.rows_seen) == ("degraded", 47)
    assert not is_partial(tax.findings)
    (rows,) = faults(tax.findings)
    assert rows["check"] == "rows" and "50 within the read limit" in rows["detail"]
    run = run_row(sqlite_url, run_id)
    assert run.state == "degraded"
    assert TAX not in (run.summary.get("partial") or [])
    assert not [
        e for e in events(sqlite_url, run_id) if e["event"] == "delisted" and e["list"] == TAX
    ]


@needs_chromium
def test_runs_and_health_show_healthy_partial(sqlite_url: str) -> None:
    run_id = replay_cc(sqlite_url, CC_DAY1)
    env = {"DATABASE_URL": sqlite_url}
    shown = runner.invoke(app, ["runs", "--source", "creditchina"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "healthy (partial)" in shown.output and "zdsswf:healthy (partial)" in shown.output
    report = runner.invoke(app, ["health", "creditchina"], env=env)
    assert report.exit_code == 0, report.output
    assert "creditchina  ok" in report.output
    assert f"{run_id}" in report.output and "healthy (partial)" in report.output
    assert "zdsswf healthy (partial) 50" in report.output
    assert "watch_xzcf healthy 3" in report.output
    as_json = runner.invoke(app, ["runs", "--source", "creditchina", "--json"], env=env)
    (line,) = as_json.output.splitlines()
    run = json.loads(line)
    assert (run["state"], run["partial"]) == ("healthy", True)
    lists = {lst["list"]: lst for lst in run["lists"]}
    assert lists[TAX]["partial"] and lists[TAX]["problems"] == []
    assert not lists["creditchina.watch_xzcf"]["partial"]


@needs_chromium
def test_the_web_app_shows_healthy_partial(sqlite_url: str) -> None:
    from fastapi.testclient import TestClient

    from web.app import create_app

    replay_cc(sqlite_url, CC_DAY1)
    client = TestClient(create_app(database_url=sqlite_url))
    index = client.get("/?lang=en")
    assert index.status_code == 200
    assert '<span class="health healthy partial">healthy (partial)</span>' in index.text
    page = client.get(f"/lists/{TAX}?lang=zh")
    assert page.status_code == 200
    assert "健康（部分读取）" in page.text and 'id="partial-note"' in page.text
    assert "最新的 50 条" in page.text
    watch = client.get("/lists/creditchina.watch_xzcf?lang=en")
    assert "healthy (partial)" not in watch.text and 'id="partial-note"' not in watch.text
