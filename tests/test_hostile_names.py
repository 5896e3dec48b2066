"""A hostile entity name (HTML, markdown, SQL and CSV metacharacters) is data: it is stored
and exported verbatim as text, byte for byte, never stripped, escaped or interpreted."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import pytest
from sqlalchemy import text

from core.schema import RECORD_FIELDS
from export.formats import write_csv, write_jsonl
from storage.engine import get_engine
from tests.helpers import DAY1, exported, load_cassette, replay, save_cassette

pytestmark = pytest.mark.replay

ORIGINAL = "厦门嘉禾酒店有限公司"
CASE_NUMBER = "厦文旅执法罚字（2025）第65号"
# Every class of metacharacter a careless consumer could act on, GBK-encodable like the
# portal's pages: a script tag, markdown emphasis, link and table pipes, SQL quoting and a
# comment, a CSV formula prefix, quotes, a comma and a backslash.
HOSTILE = (
    "=HYPERLINK(\"http://x\")<script>alert('x')</script>**厦门**_嘉禾_[链接](javascript:alert(1))"
    " | 表 | ');DROP TABLE records;-- O'Brien, \"引号\" \\n酒店有限公司"
)


def hostile_cassette(tmp_path: Path) -> Path:
    """Day 1 with one company renamed on its list row, detail page and subject page, written
    the way a portal writes text into HTML (entities for <, >, &, quotes)."""
    data = load_cassette(DAY1)
    escaped = html.escape(HOSTILE, quote=True)
    touched = 0
    for interaction in data["interactions"]:
        body = interaction["response"]["body"]
        page = body["string"]
        if not isinstance(page, bytes):
            continue
        decoded = page.decode("gbk")
        if ORIGINAL in decoded:
            body["string"] = decoded.replace(ORIGINAL, escaped).encode("gbk")
            touched += 1
    assert touched >= 3, "list row, detail page and subject page all name the company"
    return save_cassette(data, tmp_path / "day1-hostile.yaml")


def test_hostile_name_is_stored_and_exported_verbatim(db_url: str, tmp_path: Path) -> None:
    replay(db_url, hostile_cassette(tmp_path), delist_after=1)

    with get_engine(db_url).connect() as conn:
        stored = [
            json.loads(row[0]) if isinstance(row[0], str) else row[0]
            for row in conn.execute(text("select data from record_history"))
        ]
    assert any(r.get("entity_name") == HOSTILE for r in stored)

    records = [r for r in exported(db_url) if r["case_number"] == CASE_NUMBER]
    assert len(records) == 1
    record = records[0]
    assert record["entity_name"] == HOSTILE
    assert ORIGINAL not in json.dumps(records, ensure_ascii=False)

    jsonl = io.StringIO()
    write_jsonl(records, jsonl)
    line = jsonl.getvalue().splitlines()[0]
    assert json.loads(line)["entity_name"].encode("utf-8") == HOSTILE.encode("utf-8")
    assert json.dumps(HOSTILE, ensure_ascii=False) in line  # JSON string escaping only

    out = io.StringIO()
    write_csv(records, out, RECORD_FIELDS, raw=True)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["entity_name"].encode("utf-8") == HOSTILE.encode("utf-8")
    assert rows[0]["entity_name"] == record["entity_name"]
    # For spreadsheets (the default), a cell that would run as a formula is neutralised.
    safe = io.StringIO()
    write_csv(records, safe, RECORD_FIELDS)
    cell = next(csv.DictReader(io.StringIO(safe.getvalue())))["entity_name"]
    assert cell == "'" + HOSTILE
