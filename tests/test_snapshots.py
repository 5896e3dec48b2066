"""Snapshots and diffs: lists as they stood on a date, rebuilt after later runs; files that are
the same bytes every time; manifests that verify; diffs that agree with the events."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from core.registry import get_source
from core.schema import RECORD_FIELDS
from export.dictionary import data_dictionary
from export.snapshots import DICTIONARY, MANIFEST, _json_table, _table, verify, write_snapshot
from pipeline.cli import app
from storage.asof import (
    JsonRow,
    diff,
    export_records,
    iter_json_rows,
    iter_rows,
    records_as_of,
    run_date,
    vouching_runs,
)
from storage.engine import get_engine
from tests.helpers import FIXTURES, events, replay, run_row
from tests.replay_cache import Replay, Replayed

DATA_FORMATS = ("parquet", "csv", "jsonl")


def cassette(source: str, day: int) -> Path:
    return FIXTURES / source / f"{source}-day{day}.yaml"


def snapshot(url: str, out: Path, source: str, **options: Any) -> dict[str, Any]:
    with get_engine(url).connect() as conn:
        return write_snapshot(conn, out, sources=[source], **options)


def files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def day_of(url: str, run_id: str) -> date:
    return run_date(run_row(url, run_id).started_at)


@pytest.mark.replay
@pytest.mark.parametrize("source", ["xmtravel", "mct_tourism", "gsxt"])
def test_day_one_rebuilt_after_day_two_is_the_day_one_export(
    source: str, db_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    (first,) = replayed(db_url, Replay(cassette(source, 1), source=source, delist_after=1))
    lists = get_source(source).list_ids
    with get_engine(db_url).connect() as conn:
        then, _ = export_records(conn, source, lists)
    for fmt in DATA_FORMATS:
        snapshot(db_url, tmp_path / f"then-{fmt}", source, fmt=fmt)
    replay(db_url, cassette(source, 2), source=source, delist_after=1)
    day1 = day_of(db_url, first)

    with get_engine(db_url).connect() as conn:
        rebuilt, vouches, unvouched = records_as_of(conn, source, lists, day1)
        now, _ = export_records(conn, source, lists)
    assert rebuilt == then and not unvouched
    assert {v.run_id for v in vouches.values()} == {first}
    assert now != then  # day 2 changed something, so the comparison means something
    for fmt in DATA_FORMATS:
        manifest = snapshot(db_url, tmp_path / f"asof-{fmt}", source, fmt=fmt, as_of=day1)
        assert files(tmp_path / f"asof-{fmt}").keys() == files(tmp_path / f"then-{fmt}").keys()
        for name, data in files(tmp_path / f"asof-{fmt}").items():
            if name != MANIFEST:
                assert data == (tmp_path / f"then-{fmt}" / name).read_bytes(), (fmt, name)
        assert manifest["as_of"] == day1.isoformat()
        runs = {lst["run"]["run_id"] for src in manifest["sources"] for lst in src["lists"]}
        assert runs == {first}


@pytest.mark.replay
def test_a_snapshot_made_twice_is_byte_identical_and_verifies(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    replayed(
        sqlite_url,
        Replay(cassette("xmtravel", 1), delist_after=1),
        Replay(cassette("xmtravel", 2), delist_after=1),
    )
    for fmt in (*DATA_FORMATS, "ftm"):
        for options in ({}, {"redact": True}, {"bom": True}):
            first = snapshot(sqlite_url, tmp_path / "a", "xmtravel", fmt=fmt, **options)
            second = snapshot(sqlite_url, tmp_path / "b", "xmtravel", fmt=fmt, **options)
            assert first == second
            assert files(tmp_path / "a") == files(tmp_path / "b"), (fmt, options)
            assert verify(tmp_path / "a") == []
            listed = {item["path"] for item in first["files"]}
            assert listed | {MANIFEST} == set(files(tmp_path / "a")), "exactly its own files"
    # A changed byte is caught.
    victim = tmp_path / "a" / DICTIONARY
    victim.write_bytes(victim.read_bytes() + b" ")
    assert verify(tmp_path / "a") == [f"{DICTIONARY}: sha256 differs from the manifest"]


@pytest.mark.replay
def test_rewriting_a_directory_leaves_no_stale_files(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    replayed(sqlite_url, Replay(cassette("xmtravel", 1)))
    snapshot(sqlite_url, tmp_path / "s", "xmtravel", fmt="csv")
    snapshot(sqlite_url, tmp_path / "s", "xmtravel", fmt="jsonl", lists=["xmtravel.good"])
    assert set(files(tmp_path / "s")) == {"xmtravel.good.jsonl", DICTIONARY, MANIFEST}


@pytest.mark.replay
def test_parquet_types_and_values(sqlite_url: str, replayed: Replayed, tmp_path: Path) -> None:
    replayed(sqlite_url, Replay(cassette("xmtravel", 1)))
    snapshot(sqlite_url, tmp_path / "p", "xmtravel", fmt="parquet")
    snapshot(sqlite_url, tmp_path / "j", "xmtravel", fmt="jsonl")
    table = pq.read_table(tmp_path / "p" / "xmtravel.warning.parquet")
    types = {f.name: str(f.type) for f in table.schema}
    assert table.schema.names == list(RECORD_FIELDS)
    assert types["decided_on"] == "date32[day]" and types["valid_until"] == "date32[day]"
    assert types["first_seen"] == "timestamp[us, tz=UTC]"
    assert types["fine_yuan"] == "decimal128(18, 2)" and types["uscc_valid"] == "bool"
    assert types["penalty_types"].startswith("list<") and "string" in types["penalty_types"]
    lines = (tmp_path / "j" / "xmtravel.warning.jsonl").read_text(encoding="utf-8").splitlines()
    expected = [json.loads(line) for line in lines]
    rows = table.to_pylist()
    assert len(rows) == len(expected) > 0
    for row, want in zip(rows, expected, strict=True):
        assert row["record_key"] == want["record_key"]
        assert (row["decided_on"].isoformat() if row["decided_on"] else None) == want["decided_on"]
        assert row["first_seen"].isoformat() == want["first_seen"]
        fine = want["fine_yuan"]
        assert row["fine_yuan"] == (Decimal(str(fine)).quantize(Decimal("0.01")) if fine else fine)
        assert json.loads(row["extra"]) == want["extra"]
        assert row["penalty_types"] == want["penalty_types"]
    assert any(row["fine_yuan"] for row in rows)


@pytest.mark.replay
@pytest.mark.parametrize("source", ["xmtravel", "mct_tourism"])
def test_the_json_reader_builds_the_table_the_python_path_builds(
    source: str, db_url: str, replayed: Replayed
) -> None:
    """Parquet batches come from Arrow's JSON reader over the stored text (fast), redacted
    ones from decoded records (Python): both must give the same table, on both databases."""
    replayed(
        db_url,
        Replay(cassette(source, 1), source=source, delist_after=1),
        Replay(cassette(source, 2), source=source, delist_after=1),
    )
    lists = [lst for lst in get_source(source).lists]
    with get_engine(db_url).connect() as conn:
        vouches = vouching_runs(conn, source, [lst.id for lst in lists], None)
        compared = 0
        for lst in lists:
            announced = not lst.diffs_absence
            rows = list(iter_rows(conn, lst.id, vouches[lst.id], announced=announced))
            json_rows = list(iter_json_rows(conn, lst.id, vouches[lst.id], announced=announced))
            assert _json_table(json_rows).equals(_table(rows)), lst.id
            compared += len(rows)
    assert compared > 0


def _json_row(data: dict[str, Any], *, spaced: bool = False) -> JsonRow:
    """A row as a database hands it over: SQLite keeps our text, PostgreSQL's jsonb prints
    its own (spaces after separators, its own key order)."""
    text = json.dumps(data, ensure_ascii=False, separators=(", ", ": ") if spaced else (",", ":"))
    text = text.encode()
    extra = "null" if "extra" not in data and spaced else None
    if "extra" in data:
        extra = json.dumps(data["extra"], ensure_ascii=False)
    at = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)
    return JsonRow(text, extra, "active", at, at)


EDGE_RECORDS = [
    {"record_key": "a", "fine_yuan": 1000, "confiscated_yuan": 1000.5, "penalty_types": []},
    {"record_key": "b", "fine_yuan": None, "decided_on": "2024-02-29", "uscc_valid": False},
    {"record_key": "c", "extra": {"序号": "3", "a": [1, {"z": None, "b": "\u0000"}]}},
    {"record_key": "d", "extra": {}, "entity_name": '引号"与\n换行 😀', "penalty_types": None},
    {"record_key": "e", "extra": None, "valid_until": None, "unknown_field": {"x": 1}},
]


@pytest.mark.parametrize("spaced", [False, True])
def test_the_json_reader_agrees_on_edge_values(spaced: bool) -> None:
    rows = [_json_row(r, spaced=spaced) for r in EDGE_RECORDS]
    table = _json_table(rows)
    assert table.equals(_table([row.decoded() for row in rows]))
    assert table.column("extra").to_pylist()[2:] == [
        '{"a":[1,{"b":"\\u0000","z":null}],"序号":"3"}',
        "{}",
        None,
    ]
    # money the reader cannot take exactly (3 decimals) goes the Python way: rounded to fen
    odd = [*rows, _json_row({"record_key": "f", "fine_yuan": 0.125}, spaced=spaced)]
    table = _json_table(odd)
    assert table.equals(_table([row.decoded() for row in odd]))
    assert table.column("fine_yuan").to_pylist()[-1] == Decimal("0.12")
    # a value of the wrong type fails as loudly as it does on the Python path
    with pytest.raises(pa.ArrowException):
        _json_table([_json_row({"record_key": 7})])


@pytest.mark.replay
def test_csv_for_excel_carries_a_bom(sqlite_url: str, replayed: Replayed, tmp_path: Path) -> None:
    replayed(sqlite_url, Replay(cassette("xmtravel", 1)))
    snapshot(sqlite_url, tmp_path / "plain", "xmtravel", fmt="csv")
    snapshot(sqlite_url, tmp_path / "excel", "xmtravel", fmt="csv", bom=True)
    plain = (tmp_path / "plain" / "xmtravel.good.csv").read_bytes()
    excel = (tmp_path / "excel" / "xmtravel.good.csv").read_bytes()
    assert excel == b"\xef\xbb\xbf" + plain and plain.startswith(b"source,list,")


@pytest.mark.replay
def test_redacted_snapshot_names_no_person(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    replayed(sqlite_url, Replay(cassette("mct_tourism", 1), source="mct_tourism"))
    manifest = snapshot(sqlite_url, tmp_path / "r", "mct_tourism", fmt="jsonl", redact=True)
    assert manifest["redacted"] is True
    with get_engine(sqlite_url).connect() as conn:
        people, _ = export_records(conn, "mct_tourism", ["mct_tourism.blacklist"])
    assert people and all(p["entity_type"] == "person" for p in people)
    text = (tmp_path / "r" / "mct_tourism.blacklist.jsonl").read_text(encoding="utf-8")
    for person in people:
        assert person["entity_name"] not in text and person["id_number_masked"] not in text
        assert person["entity_name"][0] + "*" * (len(person["entity_name"]) - 1) in text
    for fmt in ("parquet", "ftm"):
        snapshot(sqlite_url, tmp_path / fmt, "mct_tourism", fmt=fmt, redact=True)
        blob = b"".join(files(tmp_path / fmt).values())
        for person in people:
            assert person["entity_name"].encode() not in blob
            assert person["id_number_masked"].encode() not in blob


@pytest.mark.replay
def test_a_date_before_the_first_run_vouches_for_nothing(
    sqlite_url: str, replayed: Replayed, tmp_path: Path
) -> None:
    (first,) = replayed(sqlite_url, Replay(cassette("xmtravel", 1)))
    before = day_of(sqlite_url, first) - timedelta(days=1)
    manifest = snapshot(sqlite_url, tmp_path / "s", "xmtravel", fmt="jsonl", as_of=before)
    lists = manifest["sources"][0]["lists"]
    assert [lst["run"] for lst in lists] == [None, None]
    assert all("no healthy run" in lst["note"] for lst in lists)
    assert set(files(tmp_path / "s")) == {DICTIONARY, MANIFEST}


def diff_between(url: str, source: str, first: str, second: str) -> list[dict[str, Any]]:
    with get_engine(url).connect() as conn:
        rows, _ = diff(
            conn, source, get_source(source).list_ids, day_of(url, first), day_of(url, second)
        )
    return rows


@pytest.mark.replay
@pytest.mark.parametrize("source", ["xmtravel", "mct_tourism", "gsxt"])
def test_diff_between_the_days_agrees_with_the_events(
    source: str, db_url: str, replayed: Replayed
) -> None:
    first, second = replayed(
        db_url,
        Replay(cassette(source, 1), source=source, delist_after=1),
        Replay(cassette(source, 2), source=source, delist_after=1),
    )
    rows = diff_between(db_url, source, first, second)
    raised = events(db_url, second)
    by_key = {(r["list"], r["record_key"]): r for r in rows}
    assert len(by_key) == len(rows)
    for event in raised:
        row = by_key.get((event["list"], event["record_key"]))
        assert row is not None, event
        if event["event"] == "listed":
            assert row["change"] == "added"
        elif event["event"] == "modified" and row["change"] == "added":
            # relisted in the same run: not shown on day 1, so added, with today's values
            assert (event["list"], event["record_key"], "relisted") in {
                (e["list"], e["record_key"], e["event"]) for e in raised
            }
        elif event["event"] == "modified":
            assert row["change"] == "changed"
            for name, pair in event["changes"].items():
                assert row["changes"][name] == pair
        elif event["event"] == "relisted":
            assert row["change"] in ("added", "changed") and row["status_to"] == "active"
        elif event["cause"] == "expired" and source != "xmtravel":
            assert (row["change"], row["status_to"], row["cause"]) in (
                ("changed", "expired", "expired"),
                ("removed", None, "expired"),
            )
        else:
            assert (row["change"], row["cause"]) == ("removed", event["cause"])
    # Nothing in the diff that no event explains.
    explained = {(e["list"], e["record_key"]) for e in raised}
    assert set(by_key) <= explained


@pytest.mark.replay
def test_an_absence_not_yet_delisted_shows_as_absent(sqlite_url: str, replayed: Replayed) -> None:
    first, second = replayed(
        sqlite_url, Replay(cassette("xmtravel", 1)), Replay(cassette("xmtravel", 2))
    )
    removed = [r for r in diff_between(sqlite_url, "xmtravel", first, second)]
    gone = [r for r in removed if r["change"] == "removed"]
    assert gone and {r["cause"] for r in gone} == {"absent"}
    assert not [e for e in events(sqlite_url, second) if e["event"] == "delisted"]


def test_the_dictionary_describes_every_field() -> None:
    for fmt in ("parquet", "csv", "jsonl", "ftm"):
        text = data_dictionary(fmt)
        for name in RECORD_FIELDS:
            assert f"| `{name}` |" in text, (fmt, name)
    assert "date32" in data_dictionary("parquet") and "JSON text" in data_dictionary("csv")


runner = CliRunner()


@pytest.mark.replay
def test_snapshot_and_diff_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDITWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "")
    url = f"sqlite:///{tmp_path / 'creditwatch.sqlite'}"
    first = replay(url, cassette("xmtravel", 1), delist_after=1)
    second = replay(url, cassette("xmtravel", 2), delist_after=1)
    day1, day2 = day_of(url, first).isoformat(), day_of(url, second).isoformat()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    said = cli(
        "snapshot", "xmtravel", "--as-of", day1, "--format", "csv", "--out", str(tmp_path / "s")
    )
    assert "xmtravel.warning" in said and "xmtravel:1" in said
    manifest = json.loads((tmp_path / "s" / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["as_of"] == day1 and verify(tmp_path / "s") == []
    cli("snapshot", "all", "--list", "good", "--out", str(tmp_path / "g"))
    assert (tmp_path / "g" / "xmtravel.good.parquet").exists()
    cli("snapshot", "xmtravel", "--format", "xml", "--out", str(tmp_path / "x"), code=2)
    cli("snapshot", "xmtravel", "--as-of", "yesterday", code=2)

    table = cli("diff", "xmtravel", "--from", day1, "--to", day2)
    assert "added" in table and "removed" in table and "disappeared" in table
    lines = cli("diff", "xmtravel", "--from", day1, "--to", day2, "--format", "jsonl")
    rows = [json.loads(line) for line in lines.splitlines() if line.startswith("{")]
    assert {r["change"] for r in rows} == {"added", "removed", "changed"}
    csv_text = cli("diff", "xmtravel", "--from", day1, "--to", day2, "--format", "csv")
    header = next(line for line in csv_text.splitlines() if line.startswith("change,"))
    assert header.startswith("change,list,record_key")
    cli("diff", "xmtravel", "--from", day2, "--to", day1, code=2)
