"""Announcement lists (mct_tourism, caac, mohrss): two days replayed against expected values.

Each fixture folder's ``expected.json`` is written by its build script from the data it put
in the cassettes, independently of the normaliser. Faults are edits of those cassettes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.registry import get_source
from fixtures.attachments import write_pdf
from storage.asof import export_records
from storage.engine import get_engine
from storage.models import Announcement, Record
from tests.helpers import (
    FIXTURES,
    events,
    exported,
    fetches,
    list_health,
    load_cassette,
    replay,
    run_row,
    save_cassette,
)

pytestmark = pytest.mark.replay

SOURCES = ("mct_tourism", "caac", "mohrss")
PUBLISHERS = {"mct_tourism": "文化和旅游部"}  # the 来源 line of the model's articles
COMPARED = (
    "id_number_masked",
    "uscc",
    "uscc_raw",
    "legal_representative",
    "decided_on",
    "published_on",
    "valid_until",
    "reason",
    "basis",
    "status",
    "source_url",
)


def expected(source: str) -> dict[str, Any]:
    return json.loads((FIXTURES / source / "expected.json").read_text(encoding="utf-8"))


def day(source: str, number: int) -> Path:
    return FIXTURES / source / f"{source}-day{number}.yaml"


def announcements(url: str, run_id: str) -> list[Any]:
    table = Announcement.__table__
    with get_engine(url).connect() as conn:
        return conn.execute(
            select(table).where(table.c.run_id == run_id).order_by(table.c.id)
        ).all()


def stored(url: str, source: str) -> list[dict[str, Any]]:
    """Every entry of the source's list, removed ones included."""
    with get_engine(url).connect() as conn:
        return export_records(conn, source, get_source(source).list_ids, include_removed=True)[0]


def assert_records(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    by_subject = {(r["entity_name"], r["id_number_masked"] or r["uscc_raw"]): r for r in got}
    assert len(got) == len(want)
    for row in want:
        record = by_subject[(row["entity_name"], row.get("id_number_masked") or row["uscc_raw"])]
        for name in COMPARED:
            if name in row:
                assert record[name] == row[name], (row["entity_name"], name)
        # Where no column names one, the announcement's publisher (来源) listed the entry.
        assert record["authority"] == (row.get("authority") or PUBLISHERS[record["source"]])


@pytest.mark.parametrize("source", SOURCES)
def test_two_days_give_the_expected_records_and_events(
    source: str, db_url: str, netguard: Path
) -> None:
    want = expected(source)
    day1 = replay(db_url, day(source, 1), source=source)
    assert run_row(db_url, day1).state == "healthy"
    assert_records(stored(db_url, source), want["records"]["day1"])
    read = {a.url: a for a in announcements(db_url, day1)}
    for item in want["announcements"]["day1"]:
        assert read[item["url"]].state == item["state"]
        assert read[item["url"]].kind == item["kind"]
        assert read[item["url"]].rows == item["rows"]
    assert all(e["baseline"] and e["event"] == "listed" for e in events(db_url, day1))

    day2 = replay(db_url, day(source, 2), source=source)
    assert run_row(db_url, day2).state == "healthy"
    assert_records(stored(db_url, source), want["records"]["day2"])
    got = sorted(
        (e["event"], e["cause"], e["entity_name"], e["evidence"]["source_url"])
        for e in events(db_url, day2)
    )
    assert got == sorted(
        (e["event"], e["cause"], e["entity_name"], e["evidence_url"]) for e in want["events_day2"]
    )
    # Only the new announcements were read again; none of day 1's.
    assert {a.url for a in announcements(db_url, day2)} == {
        a["url"] for a in want["announcements"]["day2_new"]
    }
    assert netguard.read_text() == "", "a replayed run reached for the network"


def test_an_image_only_list_is_archived_for_transcription_and_yields_no_rows(
    sqlite_url: str,
) -> None:
    run_id = replay(sqlite_url, day("mct_tourism", 1), source="mct_tourism")
    summary = run_row(sqlite_url, run_id).summary["announcements"]
    [waiting] = summary["needs_transcription"]
    [item] = [a for a in announcements(sqlite_url, run_id) if a.url == waiting["url"]]
    assert item.rows == 0 and item.attachments[0]["kind"] == "image"
    assert item.attachments[0]["sha256"]  # the image is in the raw archive
    assert not [r for r in exported(sqlite_url, "mct_tourism") if r["source_url"] == item.url]


def test_an_index_that_drops_old_announcements_raises_nothing(sqlite_url: str) -> None:
    replay(sqlite_url, day("caac", 1), source="caac", delist_after=1)
    cassette = load_cassette(day("caac", 1))
    for interaction in cassette["interactions"]:
        if "/index" in interaction["request"]["uri"]:  # every index page loses its oldest
            body = interaction["response"]["body"]["string"]
            start = body.rindex("<li>")
            end = body.rindex("</li>") + len("</li>")
            interaction["response"]["body"]["string"] = body[:start] + body[end:]
    edited = save_cassette(cassette, Path(sqlite_url.removeprefix("sqlite:///") + ".yaml"))
    again = replay(sqlite_url, edited, source="caac", delist_after=1)
    assert run_row(sqlite_url, again).state == "healthy"
    assert events(sqlite_url, again) == []
    # Page 1 already holds announcements read before: the index is not paginated further.
    assert list_health(sqlite_url, again)["caac.no_fly"].pages == 1


def _edit_attachment(source: str, number: int, suffix: str, body: bytes, tmp: Path) -> Path:
    cassette = load_cassette(day(source, number))
    [hit] = [i for i in cassette["interactions"] if i["request"]["uri"].endswith(suffix)]
    hit["response"]["body"]["string"] = body
    hit["response"]["headers"]["Content-Length"] = [str(len(body))]
    return save_cassette(cassette, tmp / f"{source}-edited.yaml")


def _attachment(source: str, number: int, suffix: str) -> bytes:
    cassette = load_cassette(day(source, number))
    [hit] = [i for i in cassette["interactions"] if i["request"]["uri"].endswith(suffix)]
    return hit["response"]["body"]["string"]


@pytest.mark.parametrize(
    ("source", "suffix", "damage", "message"),
    [
        ("mohrss", ".xls", lambda data: data[: len(data) // 2], ".xls"),
        ("caac", ".pdf", lambda data: write_pdf(None, before=["附件：名单见下页"]), "PDF"),
        ("mct_tourism", ".xlsx", lambda data: b"PK\x03\x04 not really a zip", "xlsx"),
    ],
)
def test_a_corrupt_attachment_fails_its_announcement_and_the_run_goes_on(
    source: str, suffix: str, damage: Any, message: str, db_url: str, tmp_path: Path
) -> None:
    broken = _edit_attachment(source, 1, suffix, damage(_attachment(source, 1, suffix)), tmp_path)
    run_id = replay(db_url, broken, source=source, delist_after=1)
    summary = run_row(db_url, run_id).summary
    [failed] = summary["announcements"]["failed"]
    assert message in failed["error"] and suffix in failed["error"]
    list_id = next(iter(summary["lists"]))
    assert list_health(db_url, run_id)[list_id].health in ("degraded", "failed")
    assert any(f.outcome == "malformed" for f in fetches(db_url, run_id))
    # Nothing read from the broken file; every other announcement was read.
    broken_url = next(a.url for a in announcements(db_url, run_id) if a.state == "failed")
    # The rows read are stored; no export vouches for them until a healthy run.
    with get_engine(db_url).connect() as conn:
        table = Record.__table__
        records = [row.data for row in conn.execute(select(table.c.data))]
    assert exported(db_url, source) == []
    assert not [r for r in records if broken_url in {p["url"] for p in r["extra"]["pages"]}]
    others = [a for a in expected(source)["announcements"]["day1"] if a["url"] != broken_url]
    assert len(records) == sum(a["rows"] for a in others if a["kind"] == "listing")
    assert [e for e in events(db_url, run_id) if e["event"] != "listed"] == []

    # The next run reads the failed announcement again, from the good cassette.
    day2 = replay(db_url, day(source, 2), source=source, delist_after=1)
    retried = {a.url: a.state for a in announcements(db_url, day2)}
    assert retried[broken_url] == "read"
    assert len(stored(db_url, source)) == len(expected(source)["records"]["day2"])


def test_a_removal_naming_nobody_listed_is_reported_not_applied(
    sqlite_url: str, tmp_path: Path
) -> None:
    want = expected("mohrss")
    [notice] = [a for a in want["announcements"]["day2_new"] if a["kind"] == "removal"]
    first, second = [e for e in want["events_day2"] if e["cause"] == "published_removal"]
    cassette = load_cassette(day("mohrss", 2))
    [page] = [i for i in cassette["interactions"] if i["request"]["uri"] == notice["url"]]
    body = page["response"]["body"]["string"]
    assert first["entity_name"] in body and first["uscc"] in body
    body = body.replace(first["entity_name"], "某某从未列入有限公司")
    page["response"]["body"]["string"] = body.replace(first["uscc"], "911100000000000000")
    replay(sqlite_url, day("mohrss", 1), source="mohrss")
    run_id = replay(sqlite_url, save_cassette(cassette, tmp_path / "m.yaml"), source="mohrss")
    [unmatched] = run_row(sqlite_url, run_id).summary["announcements"]["unmatched_removals"]
    assert unmatched["entity_name"] == "某某从未列入有限公司"
    removed = [e for e in events(sqlite_url, run_id) if e["cause"] == "published_removal"]
    assert [e["entity_name"] for e in removed] == [second["entity_name"]]
