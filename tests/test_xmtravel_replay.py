"""Acceptance for the Xiamen portal: two replayed days against the model's truth files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers import (
    DAY1,
    DAY2,
    assert_matches_truth,
    events,
    exported,
    list_health,
    replay,
    run_row,
    truth,
)

pytestmark = pytest.mark.replay


def truth_key(entry: dict[str, Any]) -> tuple[str, str, str]:
    return (entry["list"], entry.get("case_number") or entry.get("title"), entry["entity_name"])


def event_matches(expected: dict[str, Any], event: dict[str, Any]) -> bool:
    fields = ("event", "list", "case_number", "title", "entity_name", "cause")
    if any(expected.get(f) != event.get(f) for f in fields if f in expected):
        return False
    if expected["event"] != "delisted" and event.get("cause") is not None:
        return False
    return set(expected.get("changes_include", ())) <= set(event.get("changes") or {})


def test_two_days_match_truth_and_expected_events(db_url: str, netguard: Path) -> None:
    day1 = replay(db_url, DAY1, delist_after=1)
    assert run_row(db_url, day1).state == "healthy"
    assert_matches_truth(exported(db_url), truth("truth-day1.json"), truth_key)
    first = events(db_url, day1)
    assert first and all(e["event"] == "listed" and e["baseline"] for e in first)

    day2 = replay(db_url, DAY2, delist_after=1)
    assert run_row(db_url, day2).state == "healthy"
    assert_matches_truth(exported(db_url), truth("truth-day2.json"), truth_key)

    expected = truth("events-day2.json")
    got = [e for e in events(db_url, day2) if not e["baseline"]]
    unmatched = [x for x in expected if not any(event_matches(x, e) for e in got)]
    unexpected = [e for e in got if not any(event_matches(x, e) for x in expected)]
    assert (unmatched, unexpected) == ([], [])
    assert len(got) == len(expected)
    assert netguard.read_text() == "", "a replayed run reached for the network"


def test_default_delist_after_two_raises_no_disappeared_on_day_two(sqlite_url: str) -> None:
    replay(sqlite_url, DAY1)
    day2 = replay(sqlite_url, DAY2)
    got = events(sqlite_url, day2)
    assert [e for e in got if e["cause"] == "disappeared"] == []
    assert {e["event"] for e in got} == {"listed", "modified"}


def test_replayed_run_takes_its_clock_from_the_first_date_header(sqlite_url: str) -> None:
    run = run_row(sqlite_url, replay(sqlite_url, DAY1))
    assert run.started_at.isoformat() == "2025-11-21T02:00:00+00:00"
    assert run.ended_at == run.started_at
    assert run.clock_origin == "date-header"
    for event in events(sqlite_url, run.run_id):
        assert event["at"] == "2025-11-21T02:00:00+00:00"
    for record in exported(sqlite_url):
        assert record["first_seen"] == record["last_seen"] == "2025-11-21T02:00:00+00:00"


def test_records_point_to_their_archived_detail_pages(sqlite_url: str) -> None:
    from storage.archive import get_response
    from storage.engine import get_engine

    replay(sqlite_url, DAY1)
    records = exported(sqlite_url)
    with get_engine(sqlite_url).connect() as conn:
        for record in records:
            archived = get_response(conn, record["raw_sha256"])
            assert archived.url == record["source_url"]
            assert "detail.html?id=" in archived.url
            assert record["entity_name"].encode("gbk") in archived.body


@pytest.mark.parametrize("status", ["expired", "active"])
def test_status_follows_the_run_date(sqlite_url: str, status: str) -> None:
    replay(sqlite_url, DAY1)
    records = exported(sqlite_url)
    for record in records:
        past = record["valid_until"] is not None and record["valid_until"] < "2025-11-21"
        if (record["status"] == "expired") == (status == "expired"):
            assert past == (status == "expired")
    assert list_health(sqlite_url, "xmtravel:1")["xmtravel.warning"].health == "healthy"
