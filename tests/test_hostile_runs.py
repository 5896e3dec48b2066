"""Issue 15: hostile pages and values that used to end in false events or a lost run.

Each test damages a shipped day-2 cassette the way a portal glitch or a hostile value would,
replays day 1 then the damaged day 2, and checks that the run says what went wrong and
raises no false ``delisted`` or ``modified``.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core.normalise import content_hash
from core.normalise.entity import record_key
from core.normalise.text import MAX_FIELD_CHARS
from core.registry import get_source
from core.schema import content_of
from pipeline.cli import app
from storage.engine import get_engine, upgrade
from storage.models import RawBody, RunRecord
from storage.runlog import staged_record
from storage.runs import changed_entries, create_run, restage, set_pid
from tests.helpers import (
    DAY1,
    DAY2,
    FIXTURES,
    events,
    exported,
    interaction,
    list_health,
    load_cassette,
    replay,
    run_row,
    save_cassette,
)
from tests.replay_cache import Replay, Replayed

ROOT = Path(__file__).resolve().parent.parent
WARNING = "xmtravel.warning"
PAGE2 = "xygs-main.html?pageNo=2"
XIE_DETAIL = "xygs-detail.html?id=c9766c22d1165d9e54c4e6733d93e0d7"  # 谢美玲, 厦文旅罚[2024]167号
LUJIANG_CASE = "厦文旅罚[2025]89号"  # 厦门鹭江度假酒店有限责任公司, row 11 of page 2


def gbk_body(data: dict[str, Any], suffix: str) -> str:
    return interaction(data, suffix)["response"]["body"]["string"].decode("gbk")


def set_gbk_body(data: dict[str, Any], suffix: str, html: str) -> None:
    interaction(data, suffix)["response"]["body"]["string"] = html.encode("gbk")


def warning_events(url: str, run_id: str) -> list[dict[str, Any]]:
    return [e for e in events(url, run_id) if e["list"] == WARNING]


@pytest.mark.replay
def test_a_row_repeated_in_place_of_another_degrades_the_list_and_delists_nothing(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Item 1: 23 rows promised, 23 rows shown, 22 distinct entries: not healthy."""
    data = load_cassette(DAY2)
    html = gbk_body(data, PAGE2)
    rows = re.findall(r"<tr><td>.*?</tr>", html)
    html = html.replace(rows[1], rows[0].replace("<td>11</td>", "<td>12</td>", 1))
    set_gbk_body(data, PAGE2, html)
    damaged = save_cassette(data, tmp_path / "day2-repeated-row.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    run_id = replay(db_url, damaged, delist_after=1)

    warning = list_health(db_url, run_id)[WARNING]
    assert warning.health == "degraded"
    assert warning.rows_seen == warning.rows_declared  # the pager's count alone looks fine
    (finding,) = [f for f in warning.findings if f.get("outcome") == "malformed"]
    assert "repeat" in finding["detail"]
    assert any(PAGE2 in url for url in finding["urls"])
    assert [e for e in warning_events(db_url, run_id) if e["event"] == "delisted"] == []
    assert run_row(db_url, run_id).state == "degraded"


@pytest.mark.replay
def test_two_entries_sharing_a_case_number_are_a_collision_not_a_correction(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Item 2: a second entity under one case number is named, not silently dropped, and
    neither entry turns into a false ``modified`` or ``delisted``."""
    data = load_cassette(DAY2)
    html = gbk_body(data, XIE_DETAIL)
    set_gbk_body(data, XIE_DETAIL, html.replace("厦文旅罚[2024]167号", LUJIANG_CASE))
    damaged = save_cassette(data, tmp_path / "day2-shared-case.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    run_id = replay(db_url, damaged, delist_after=1)

    warning = list_health(db_url, run_id)[WARNING]
    assert warning.health == "degraded"
    (collision,) = [f for f in warning.findings if f["check"] == "key_collision"]
    assert collision["keys"] == ["厦文旅罚(2025)89号"]
    got = warning_events(db_url, run_id)
    assert [e for e in got if e["event"] == "delisted"] == []
    assert [e for e in got if e["event"] == "modified" and e["case_number"] == LUJIANG_CASE] == []
    assert [e for e in got if e["entity_name"] == "谢美玲"] == []
    summary = json.dumps(run_row(db_url, run_id).summary, ensure_ascii=False)
    assert "two different entries" in summary and "厦文旅罚(2025)89号" in summary


@pytest.mark.replay
def test_an_entry_read_twice_is_a_repeated_row(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Item 1 where no row identity gives it away: the same entry reached twice (here its
    detail page served again under another address) counts a repeat, not a fine run."""
    data = load_cassette(DAY2)
    twin = interaction(data, XIE_DETAIL)
    other = interaction(data, "xygs-detail.html?id=05079e8617993aca8d10c83a1056e3c9")
    other["response"] = copy.deepcopy(twin["response"])
    damaged = save_cassette(data, tmp_path / "day2-entry-twice.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    run_id = replay(db_url, damaged, delist_after=1)

    warning = list_health(db_url, run_id)[WARNING]
    assert warning.health == "degraded"
    (repeat,) = [f for f in warning.findings if f["check"] == "repeated_rows"]
    assert repeat["keys"] == ["厦文旅罚(2024)167号"]
    assert [e for e in warning_events(db_url, run_id) if e["event"] == "delisted"] == []


@pytest.mark.replay
def test_a_repeated_decision_row_degrades_a_grouped_list(db_url: str, tmp_path: Path) -> None:
    """Item 1 for a list whose rows are grouped into entries (GSXT): a row repeated in
    place of another company's hides that company, so the list cannot prove its absence."""
    cassette = FIXTURES / "gsxt" / "gsxt-day2.yaml"
    data = load_cassette(cassette)
    page = interaction(data, "illInfo.html?start=5")["response"]["body"]
    body = json.loads(page["string"])
    body["data"][1] = body["data"][0]
    page["string"] = json.dumps(body, ensure_ascii=False)
    damaged = save_cassette(data, tmp_path / "gsxt-day2-repeated.yaml")

    replay(db_url, FIXTURES / "gsxt" / "gsxt-day1.yaml", delist_after=1, source="gsxt")
    run_id = replay(db_url, damaged, delist_after=1, source="gsxt")

    health = list_health(db_url, run_id)["gsxt.serious_illegal"]
    assert health.health == "degraded"
    assert any("repeat" in (f.get("detail") or "") for f in health.findings)
    got = events(db_url, run_id)
    assert [e for e in got if e["event"] == "delisted" and e["cause"] == "disappeared"] == []


RENAMES = {
    # label, its new name, the field it fills
    "declared field": ("处罚结果", "处理结果", "measure"),
    "undeclared field": ("处罚依据", "执法依据", "basis"),
}


def content(url: str) -> dict[str, dict[str, Any]]:
    """The warning list's stored entries by key, provenance left out."""
    return {r["record_key"]: content_of(r) for r in exported(url) if r["list"] == WARNING}


@pytest.mark.replay
@pytest.mark.parametrize("rename", RENAMES)
def test_a_renamed_label_is_drift_not_a_correction_of_every_entry(
    db_url: str, replayed: Replayed, tmp_path: Path, rename: str
) -> None:
    """Item 8: a label renamed on every detail page blanks its field on every entry. The
    list is degraded (the field's fill rate broke: by its declared check, or detected for a
    field no check names), and neither the rename nor the label's return raises
    ``modified``."""
    label, renamed_label, name = RENAMES[rename]
    data = load_cassette(DAY2)
    for item in data["interactions"]:
        if "xygs-detail.html" in item["request"]["uri"]:
            body = item["response"]["body"]
            html = body["string"].decode("gbk")
            body["string"] = html.replace(label, renamed_label).encode("gbk")
    renamed = save_cassette(data, tmp_path / "day2-renamed-label.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    clean_day2 = warning_events(db_url, replay(db_url, DAY2, delist_after=1))
    clean_records = content(db_url)
    drifted = replay(db_url, renamed, delist_after=1)
    assert content(db_url) == clean_records  # what the broken pages showed is not stored
    restored = replay(db_url, DAY2, delist_after=1)

    warning = list_health(db_url, drifted)[WARNING]
    assert warning.health == "degraded"
    assert name in {f["field"] for f in warning.findings if f["check"] == "fill_rate"}
    assert [e for e in warning_events(db_url, drifted) if e["event"] == "modified"] == []
    # The real news of day 2 was raised once, on the clean day 2 run, and not again.
    assert clean_day2
    assert warning_events(db_url, restored) == []
    assert content(db_url) == clean_records


@pytest.mark.replay
def test_invalid_gbk_bytes_make_the_page_malformed_not_a_correction(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Item 10: a detail page whose GBK name carries invalid bytes is archived and marked
    ``malformed``; the replacement characters never reach a record or a ``modified``."""
    data = load_cassette(DAY2)
    body = interaction(data, XIE_DETAIL)["response"]["body"]
    name = "谢美玲".encode("gbk")
    assert name in body["string"]
    body["string"] = body["string"].replace(name, name[:2] + b"\xff\x80" + name[2:])
    damaged = save_cassette(data, tmp_path / "day2-bad-gbk.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    run_id = replay(db_url, damaged, delist_after=1)

    warning = list_health(db_url, run_id)[WARNING]
    assert warning.health == "degraded"
    (finding,) = [f for f in warning.findings if f.get("outcome") == "malformed"]
    assert any(XIE_DETAIL in url for url in finding["urls"])
    assert "not valid" in finding["detail"]
    got = warning_events(db_url, run_id)
    assert [e for e in got if "\ufffd" in json.dumps(e, ensure_ascii=False)] == []
    assert [e for e in got if e["event"] == "delisted"] == []
    assert "\ufffd" not in json.dumps(exported(db_url), ensure_ascii=False)


@pytest.mark.replay
def test_a_nul_in_a_name_is_removed_and_noted_and_the_run_finishes(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Item 6: a NUL inside a published name used to fail the whole run on PostgreSQL (with
    nothing archived) and cut the name short in e-mail, webhooks and feeds on SQLite."""
    data = load_cassette(DAY2)
    body = interaction(data, XIE_DETAIL)["response"]["body"]
    name = "谢美玲".encode("gbk")
    body["string"] = body["string"].replace(name, name[:4] + b"\x00\x1b" + name[4:])
    damaged = save_cassette(data, tmp_path / "day2-nul.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    run_id = replay(db_url, damaged, delist_after=1)

    assert run_row(db_url, run_id).state == "healthy"
    (record,) = [r for r in exported(db_url) if r["case_number"] == "厦文旅罚[2024]167号"]
    assert record["entity_name"] == "谢美玲"
    assert record["extra"]["control_characters_removed"] == ["主体名称"]
    assert not [e for e in events(db_url, run_id) if "\x00" in (e["entity_name"] or "")]
    with get_engine(db_url).connect() as conn:
        bodies = [
            zlib.decompress(row.data, wbits=31)
            for row in conn.execute(select(RawBody.__table__.c.data))
        ]
    assert any(b"\x00\x1b" in raw for raw in bodies), "the page is archived as received"


@pytest.mark.replay
def test_a_run_that_cannot_be_finished_says_why(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Item 6: the child's own failure is reported, not "exited with status 0"."""
    replayed(db_url, Replay(DAY1, delist_after=1))
    engine = get_engine(db_url)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "create function refuse() returns trigger language plpgsql as "
                "$$ begin raise exception 'events are refused'; end $$"
            )
            conn.exec_driver_sql(
                "create trigger refuse before insert on events "
                "for each row execute function refuse()"
            )
        else:
            conn.exec_driver_sql(
                "create trigger refuse before insert on events "
                "begin select raise(abort, 'events are refused'); end"
            )
    run_id = replay(db_url, DAY2, delist_after=1)
    run = run_row(db_url, run_id)
    assert run.state == "failed"
    assert "events are refused" in run.error
    assert "status 0" not in run.error


@pytest.mark.replay
def test_a_killed_manual_run_is_aborted_at_the_next_start_of_its_source(db_url: str) -> None:
    """Risk: a manual crawl killed with its parent stays ``running`` for ever."""
    engine = get_engine(db_url)
    upgrade(db_url)
    orphan = create_run(
        engine, get_source("xmtravel"), mode="replay", cassette=str(DAY1), delist_after=1
    )
    gone = subprocess.Popen(["true"])
    gone.wait()
    set_pid(engine, orphan, gone.pid)

    replay(db_url, DAY1, delist_after=1)

    row = run_row(db_url, orphan)
    assert row.state == "aborted"
    assert "gone" in row.error


@pytest.mark.replay
def test_a_ten_megabyte_cell_is_cut_and_the_summary_stays_short(tmp_path: Path) -> None:
    """Risk: a 10 MB cell grew the database by 120 MB and printed a 15 MB summary."""
    data = load_cassette(DAY2)
    body = interaction(data, XIE_DETAIL)["response"]["body"]
    reason = "擅自变更旅游行程安排".encode("gbk")
    huge = "擅自变更行程" * 900_000  # 5.4 million characters, 10.8 MB in GBK
    assert reason in body["string"]
    body["string"] = body["string"].replace(reason, huge.encode("gbk"))
    damaged = save_cassette(data, tmp_path / "day2-huge-cell.yaml")
    data_dir = tmp_path / "data"
    env = {"CREDITWATCH_DATA_DIR": str(data_dir), "DATABASE_URL": ""}
    runner = CliRunner()
    first = runner.invoke(app, ["crawl", "xmtravel", "--replay", str(DAY1)], env=env)
    assert first.exit_code == 0, first.output

    def size() -> int:
        return sum(f.stat().st_size for f in data_dir.glob("creditwatch.sqlite*"))

    before = size()
    second = runner.invoke(app, ["crawl", "xmtravel", "--replay", str(damaged)], env=env)
    assert second.exit_code == 0, second.output
    assert len(second.output) < 20_000
    assert "擅自变更行程擅自变更行程" in second.output  # the change is shown, shortened
    assert size() - before < 5_000_000
    url = f"sqlite:///{data_dir / 'creditwatch.sqlite'}"
    (record,) = [r for r in exported(url) if r["case_number"] == "厦文旅罚[2024]167号"]
    assert len(record["reason"]) == MAX_FIELD_CHARS
    assert record["extra"]["truncated"] == {"违法事由": len(huge)}


@pytest.mark.replay
def test_a_source_that_reuses_case_numbers_keys_its_entries_by_case_and_subject(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 2: where one decision names several parties, ``record_key: case_subject`` keeps
    them apart: both are stored, and the list stays healthy."""
    sources = tmp_path / "sources"
    (sources / "xmtravel").mkdir(parents=True)  # a room with its declaration only: the
    # spider still comes from the shipped room (crawlers/sources/xmtravel/spider.py)
    declaration = (ROOT / "crawlers" / "sources" / "xmtravel" / "source.yml").read_text("utf-8")
    assert declaration.count("record_key: case\n") == 1
    declaration = declaration.replace("record_key: case\n", "record_key: case_subject\n")
    (sources / "xmtravel" / "source.yml").write_text(declaration, encoding="utf-8")
    monkeypatch.setenv("CREDITWATCH_SOURCES_DIR", str(sources))
    data = load_cassette(DAY2)
    html = gbk_body(data, XIE_DETAIL)
    set_gbk_body(data, XIE_DETAIL, html.replace("厦文旅罚[2024]167号", LUJIANG_CASE))
    shared = save_cassette(data, tmp_path / "day2-shared-case.yaml")

    run_id = replay(db_url, shared, delist_after=1)

    assert list_health(db_url, run_id)[WARNING].health == "healthy"
    parties = sorted(r["entity_name"] for r in exported(db_url) if r["case_number"] == LUJIANG_CASE)
    assert parties == ["厦门鹭江度假酒店有限责任公司", "谢美玲"]


def test_case_subject_keys() -> None:
    assert record_key("case_subject", case_number_key="厦文旅罚(2025)89号", name_key="谢美玲") == (
        "厦文旅罚(2025)89号|谢美玲"
    )
    assert record_key("case", case_number_key="厦文旅罚(2025)89号", name_key="谢美玲") == (
        "厦文旅罚(2025)89号"
    )
    # No case number: the same fallback as ``case``.
    assert record_key("case_subject", name_key="谢美玲", decided_on="2025-01-03") == (
        record_key("case", name_key="谢美玲", decided_on="2025-01-03")
    )


@pytest.mark.replay
def test_a_case_number_shown_in_traditional_script_is_the_same_entry(
    db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    """Risk: 廈文旅罰[2024]167號 used to be a new key: a false listing, then a delisting."""
    data = load_cassette(DAY2)
    for item in data["interactions"]:
        body = item["response"]["body"]
        if isinstance(body.get("string"), bytes) and "xygs" in item["request"]["uri"]:
            html = body["string"].decode("gbk")
            body["string"] = html.replace("厦文旅罚[2024]167号", "廈文旅罰[2024]167號").encode(
                "gbk"
            )
    traditional = save_cassette(data, tmp_path / "day2-traditional.yaml")

    replayed(db_url, Replay(DAY1, delist_after=1))
    run_id = replay(db_url, traditional, delist_after=1)

    about = [e for e in warning_events(db_url, run_id) if e["record_key"] == "厦文旅罚(2024)167号"]
    assert [e["event"] for e in about] in ([], ["modified"])
    assert not [e for e in warning_events(db_url, run_id) if "167號" in e["record_key"]]


@pytest.mark.replay
def test_changed_entries_are_read_by_pages_and_restaging_between_them_is_safe(
    db_url: str,
    replayed: Replayed,
) -> None:
    """The drift pass pages through changed entries by key, restaging as it goes."""
    replayed(db_url, Replay(DAY1, delist_after=1))
    engine = get_engine(db_url)
    stored = [r for r in exported(db_url) if r["list"] == WARNING][:5]
    with engine.begin() as conn:
        staged = [
            staged_record("probe", {**r, "reason": "改过"}, f"changed-{i}")
            for i, r in enumerate(stored)
        ]
        conn.execute(RunRecord.__table__.insert(), staged)
        seen = []
        for row in changed_entries(conn, "probe", page=2):
            seen.append(row.record_key)
            again = {"list": row.list, "record_key": row.record_key, "data": row.old}
            restage(conn, "probe", [{**again, "content_hash": content_hash(row.old)}])
        assert seen == sorted(r["record_key"] for r in stored)
        assert list(changed_entries(conn, "probe", page=2)) == []
        conn.execute(RunRecord.__table__.delete().where(RunRecord.__table__.c.run_id == "probe"))
