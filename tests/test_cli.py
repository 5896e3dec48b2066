"""The ``creditwatch`` commands, end to end on the two shipped days."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.schema import EVENT_FIELDS, RECORD_FIELDS
from pipeline.cli import app
from tests.helpers import DAY1, DAY2, truth

pytestmark = pytest.mark.replay

runner = CliRunner()


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    data_dir = tmp_path_factory.mktemp("cli")
    env = {"CREDITWATCH_DATA_DIR": str(data_dir), "DATABASE_URL": ""}
    outputs = {}
    for name, cassette in (("day1", DAY1), ("day2", DAY2)):
        result = runner.invoke(
            app, ["crawl", "xmtravel", "--replay", str(cassette), "--delist-after", "1"], env=env
        )
        assert result.exit_code == 0, result.output
        outputs[name] = result.output
    return {"env": env, **outputs}  # type: ignore[dict-item]


def invoke(two_days: dict, *args: str) -> str:
    result = runner.invoke(app, list(args), env=two_days["env"])
    assert result.exit_code == 0, result.output
    return result.output


def test_crawl_prints_a_summary_and_the_day_two_events(two_days: dict) -> None:
    assert "run xmtravel:1 (replay) healthy" in two_days["day1"]
    assert "20 baseline listings not shown" in two_days["day1"]
    day2 = two_days["day2"]
    assert "xmtravel.warning" in day2 and "rows 24/24" in day2
    for expected in truth("events-day2.json"):
        line = next(
            line
            for line in day2.splitlines()
            if expected["entity_name"] in line
            and (expected.get("case_number") or expected["title"]) in line
        )
        assert line.split()[0] == expected["event"]
        if expected.get("cause"):
            assert f"[{expected['cause']}:" in line


def test_changes_as_jsonl_with_since_and_run_filters(two_days: dict) -> None:
    every = [
        json.loads(line)
        for line in invoke(
            two_days, "changes", "--format", "jsonl", "--include-baseline"
        ).splitlines()
    ]
    assert len(every) == 28 and all(set(e) == set(EVENT_FIELDS) for e in every)
    news = runner.invoke(app, ["changes", "--format", "jsonl"], env=two_days["env"])
    assert "20 baseline listing(s) hidden" in news.stderr  # and not among the lines
    assert [json.loads(line)["baseline"] for line in news.stdout.splitlines()] == [False] * 8
    since = invoke(two_days, "changes", "--since", "2025-11-22", "--format", "jsonl").splitlines()
    assert len(since) == 8
    assert invoke(two_days, "changes", "--since", "2025-11-23", "--format", "jsonl") == ""
    by_run = invoke(
        two_days, "changes", "--run", "xmtravel:1", "--format", "jsonl", "--include-baseline"
    ).splitlines()
    assert len(by_run) == 20
    assert "厦门五缘假日旅行社有限公司" in invoke(two_days, "changes", "--source", "xmtravel")


def test_export_csv_and_removed_entries(two_days: dict, tmp_path: Path) -> None:
    text = invoke(two_days, "export", "xmtravel", "--list", "good", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0]) == RECORD_FIELDS
    assert len(rows) == 8 and {r["list"] for r in rows} == {"xmtravel.good"}
    assert all(r["published_on"] == "" for r in rows)  # null is the empty cell
    with_removed = invoke(
        two_days, "export", "xmtravel", "--list", "xmtravel.good", "--include-removed"
    )
    removed = [json.loads(line) for line in with_removed.splitlines() if '"removed"' in line]
    assert [r["entity_name"] for r in removed] == ["黄志鹏"]
    out = tmp_path / "all.jsonl"
    invoke(two_days, "export", "xmtravel", "--out", str(out))
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 32
    assert [(r["list"], r["record_key"]) for r in records] == sorted(
        (r["list"], r["record_key"]) for r in records
    )


def test_runs_and_sources(two_days: dict) -> None:
    runs = invoke(two_days, "runs")
    assert "xmtravel:1" in runs and "xmtravel:2" in runs and "healthy" in runs
    assert "xmtravel.warning" in invoke(two_days, "sources")


def test_raw_shows_an_archived_response_decoded(two_days: dict, tmp_path: Path) -> None:
    record = json.loads(invoke(two_days, "export", "xmtravel", "--list", "warning").splitlines()[0])
    shown = invoke(two_days, "raw", record["raw_sha256"][:12])
    assert shown.startswith(f"GET {record['source_url']}")
    assert "status 200" in shown and "Content-Type: text/html" in shown
    assert record["entity_name"] in shown  # decoded from GBK
    body = tmp_path / "body.html"
    invoke(two_days, "raw", record["raw_sha256"], "--out", str(body))
    assert hashlib.sha256(body.read_bytes()).hexdigest() == record["raw_sha256"]


def test_db_upgrade_reports_the_revision(two_days: dict) -> None:
    assert "at revision 0011" in invoke(two_days, "db", "upgrade")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["crawl", "nosuch", "--replay", str(DAY1)], "unknown source 'nosuch'"),
        (["crawl", "xmtravel", "--replay", "missing.yaml"], "does not exist"),
        (["crawl", "xmtravel", "--replay", str(DAY1), "--record", "x.yaml"], "exclude each other"),
        (["raw", "ffffffffff"], "no archived response"),
        (["export", "xmtravel", "--list", "nosuch"], "has no list 'nosuch'"),
        (["changes", "--since", "yesterday"], "--since wants a date"),
    ],
)
def test_bad_input_is_a_clear_error(two_days: dict, args: list[str], message: str) -> None:
    result = runner.invoke(app, args, env=two_days["env"])
    assert result.exit_code == 2
    assert message in result.output
