"""CSV meant for spreadsheets carries no live formula: a cell starting with ``=``, ``+``, ``-``,
``@``, a tab, a carriage return or a line feed (or a full-width ``＝ ＋ － ＠``) gets a leading
``'`` (OWASP's CSV-injection rule), unless it is a plain number. ``--raw`` writes cells
verbatim; JSON Lines and Parquet always hold the published text unchanged.

The database is built the normal way: two published days with companies renamed to formula
payloads on every page that names them (both days alike, so the renames are no layout drift).
Text the pipeline cannot produce (it trims leading whitespace; money is never negative) is
then written into a stored record, so the writers are tested without the pipeline's hygiene."""

from __future__ import annotations

import csv
import html
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from export.formats import write_csv
from pipeline.cli import app
from storage.asof import run_date
from storage.engine import get_engine
from tests.helpers import DAY1, DAY2, load_cassette, run_row, save_cassette

pytestmark = pytest.mark.replay

runner = CliRunner()

# A carriage return mid-name (the portal writes &#13;): unquoted, it would end the row and
# start the next with a formula no rule saw.
CR_NAME = "厦门沙坡尾\r=1+1"
# Company → the hostile name it is renamed to; the diff shows the starred ones (listed, delisted or
# modified on day 2).
RENAMES = {
    "厦门嘉禾酒店有限公司": '=HYPERLINK("http://x","y")',  # *
    "厦门椰风观光旅游有限公司": "=cmd|' /C calc'!A0",
    "厦门翔鹭观光旅游有限公司": "+1+1",  # *
    "厦门凤凰木国际旅行社有限责任公司": "-2+3",
    "厦门杏林国际旅游有限公司": "-2+3",  # *
    "厦门五缘假日旅行社有限公司": "@SUM(A1)",  # *
    "厦门鹭江度假酒店有限责任公司": "＝1+1",  # full-width: some CJK spreadsheets take it too
    "厦门沙坡尾酒店有限公司": CR_NAME,
}
NUMBER_NAME = "-5"  # a name that is a plain number: a spreadsheet reads a number, no formula
NUMBER_NAMED = ("厦门翔鹭度假酒店有限责任公司", "黄志鹏")  # *: 黄志鹏
# Stored into one record (listed on day 2) after the crawl: field → value.
PLANTED_CASE = "厦文旅罚〔2025〕300号"
PLANTED = {"entity_name": "\t=1+1", "authority": "\r=1+1", "reason": "\n=1+1", "fine_yuan": -5}
FORMULAS = {*RENAMES.values(), *(v for v in PLANTED.values() if isinstance(v, str))}
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")


def _number(cell: str) -> bool:
    """A plain decimal number in ASCII (``-5``, ``+3.50``, ``-1e5``): what a spreadsheet reads
    as a number, never as a formula."""
    if not cell.isascii() or cell.strip() != cell or "_" in cell:
        return False
    try:
        return Decimal(cell).is_finite()
    except ArithmeticError:
        return False


def is_live(cell: str) -> bool:
    """What a spreadsheet may run: a cell starting with a trigger that is not a plain number."""
    return cell.startswith(TRIGGERS) and not _number(cell)


def renamed(cassettes: tuple[Path, ...], out: Path) -> list[Path]:
    """The cassettes with the companies renamed on their list rows, detail and subject pages,
    escaped as a portal writes text into HTML."""
    renames = {**RENAMES, **dict.fromkeys(NUMBER_NAMED, NUMBER_NAME)}
    touched = dict.fromkeys(renames, 0)
    paths = []
    for cassette in cassettes:
        data = load_cassette(cassette)
        for interaction in data["interactions"]:
            body = interaction["response"]["body"]
            if not isinstance(body["string"], bytes):
                continue
            page = body["string"].decode("gbk")
            for original, name in renames.items():
                touched[original] += page.count(original)
                escaped = html.escape(name, quote=True).replace("\r", "&#13;")
                page = page.replace(original, escaped)
            body["string"] = page.encode("gbk")
        paths.append(save_cassette(data, out / f"formulas-{cassette.name}"))
    assert all(touched.values()), touched
    return paths


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("csv-injection")
    env = {"CREDITWATCH_DATA_DIR": str(data_dir), "DATABASE_URL": ""}
    for cassette in renamed((DAY1, DAY2), data_dir):
        result = runner.invoke(
            app, ["crawl", "xmtravel", "--replay", str(cassette), "--delist-after", "1"], env=env
        )
        assert result.exit_code == 0, result.output
    url = f"sqlite:///{(data_dir / 'creditwatch.sqlite').resolve()}"
    with get_engine(url).begin() as conn:
        for name, value in PLANTED.items():
            changed = conn.execute(
                text(
                    "update record_history set data = json_set(data, :path, :value) "
                    "where json_extract(data, '$.case_number') = :case"
                ),
                {"path": f"$.{name}", "value": value, "case": PLANTED_CASE},
            ).rowcount
            assert changed == 1
    days = [run_date(run_row(url, f"xmtravel:{n}").started_at).isoformat() for n in (1, 2)]
    return {"env": env, "dir": data_dir, "from": days[0], "to": days[1]}


def cli(db: dict[str, Any], *args: str) -> str:
    result = runner.invoke(app, list(args), env=db["env"])
    assert result.exit_code == 0, result.output
    return result.stdout_bytes.decode("utf-8")  # .stdout folds CRLF: not what was written


def rows_of(csv_text: str) -> list[dict[str, str]]:
    """Rows as a spreadsheet splits them (a bare carriage return ends one), each exactly as
    wide as the header."""
    rows = list(csv.DictReader(io.StringIO(csv_text, newline="")))
    assert all(None not in row and None not in row.values() for row in rows)
    return rows


def jsonl(text_: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text_.splitlines() if line.startswith("{")]


def assert_none_live(rows: list[dict[str, str]]) -> None:
    live = [(name, cell) for row in rows for name, cell in row.items() if is_live(cell)]
    assert rows and live == []


def assert_neutralised(safe: list[dict[str, str]], raw: list[dict[str, str]]) -> None:
    """Each cell of ``safe`` is its ``raw`` cell, prefixed with ``'`` exactly when that one
    was live: nothing else about the data changes."""
    assert len(safe) == len(raw) and raw
    for safe_row, raw_row in zip(safe, raw, strict=True):
        assert safe_row.keys() == raw_row.keys()
        for name, cell in raw_row.items():
            assert safe_row[name] == ("'" + cell if is_live(cell) else cell), name


def test_export_csv_neutralises_formulas_and_raw_keeps_them(db: dict[str, Any]) -> None:
    safe = rows_of(cli(db, "export", "xmtravel", "--format", "csv"))
    records = jsonl(cli(db, "export", "xmtravel"))
    assert_none_live(safe)
    names = [r["entity_name"] for r in records]
    assert [r["entity_name"] for r in safe] == ["'" + n if is_live(n) else n for n in names]
    prefixed = {"'" + name for name in RENAMES.values() if name != CR_NAME}
    assert {r["entity_name"] for r in safe} >= {*prefixed, CR_NAME}
    assert NUMBER_NAME in {r["entity_name"] for r in safe}  # a plain number is data
    planted = next(r for r in safe if r["case_number"] == PLANTED_CASE)
    assert planted["fine_yuan"] == "-5"  # a negative amount stays a number
    assert [planted[n] for n in ("entity_name", "authority", "reason")] == [
        "'\t=1+1",
        "'\r=1+1",
        "'\n=1+1",
    ]

    raw = rows_of(cli(db, "export", "xmtravel", "--format", "csv", "--raw"))
    assert [r["entity_name"] for r in raw] == names
    assert {cell for row in raw for cell in row.values()} >= FORMULAS
    assert_neutralised(safe, raw)


def test_snapshot_csv_and_bom_neutralise_formulas_and_raw_keeps_them(
    db: dict[str, Any],
) -> None:
    out = db["dir"]
    variants = {"safe": [], "bom": ["--bom"], "raw": ["--raw"]}
    read: dict[str, list[dict[str, str]]] = {}
    for variant, options in variants.items():
        cli(db, "snapshot", "xmtravel", "--format", "csv", "--out", str(out / variant), *options)
        read[variant] = [
            row
            for name in ("xmtravel.good.csv", "xmtravel.warning.csv")
            for row in rows_of((out / variant / name).read_bytes().decode("utf-8-sig"))
        ]
        if variant != "raw":
            assert_none_live(read[variant])
    assert (out / "bom" / "xmtravel.warning.csv").read_bytes().startswith(b"\xef\xbb\xbfsource,")
    assert read["bom"] == read["safe"]
    assert {cell for row in read["raw"] for cell in row.values()} >= FORMULAS
    assert_neutralised(read["safe"], read["raw"])
    manifests = {
        variant: json.loads((out / variant / "manifest.json").read_text(encoding="utf-8"))
        for variant in ("safe", "raw")
    }
    assert manifests["safe"]["csv_formulas_neutralised"] is True
    assert manifests["raw"]["csv_formulas_neutralised"] is False


# The names in the diff: the starred renames and the planted record.
DIFFED_NAMES = {'=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", NUMBER_NAME, "\t=1+1"}


def test_diff_csv_neutralises_formulas_and_raw_keeps_them(db: dict[str, Any]) -> None:
    span = ("diff", "xmtravel", "--from", db["from"], "--to", db["to"])
    safe = rows_of(cli(db, *span, "--format", "csv"))
    changed = jsonl(cli(db, *span, "--format", "jsonl"))
    assert {r["entity_name"] for r in changed} >= DIFFED_NAMES
    assert_none_live(safe)
    assert "'@SUM(A1)" in {r["entity_name"] for r in safe}
    assert NUMBER_NAME in {r["entity_name"] for r in safe}

    raw = rows_of(cli(db, *span, "--format", "csv", "--raw"))
    assert [r["entity_name"] for r in raw] == [r["entity_name"] for r in changed]
    assert_neutralised(safe, raw)


def test_jsonl_and_parquet_keep_the_published_text(db: dict[str, Any]) -> None:
    """The rule is for spreadsheets only: the formats read by programs are never altered."""
    out = db["dir"]
    cli(db, "snapshot", "xmtravel", "--format", "jsonl", "--out", str(out / "jsonl"))
    cli(db, "snapshot", "xmtravel", "--format", "parquet", "--out", str(out / "parquet"))
    records = {
        "export": jsonl(cli(db, "export", "xmtravel")),
        "jsonl": jsonl((out / "jsonl" / "xmtravel.warning.jsonl").read_text(encoding="utf-8")),
        "parquet": pq.read_table(out / "parquet" / "xmtravel.warning.parquet").to_pylist(),
    }
    for rows in records.values():
        assert {v for row in rows for v in row.values() if isinstance(v, str)} >= FORMULAS
        assert not any(str(v).startswith("'") for row in rows for v in row.values())
        planted = next(r for r in rows if r["case_number"] == PLANTED_CASE)
        assert {name: planted[name] for name in PLANTED} == PLANTED
    span = ("diff", "xmtravel", "--from", db["from"], "--to", db["to"], "--format", "jsonl")
    assert {r["entity_name"] for r in jsonl(cli(db, *span))} >= DIFFED_NAMES


@pytest.mark.parametrize(
    ("value", "safe", "raw"),
    [
        ("=1+1", "'=1+1", "=1+1"),
        ("+1+1", "'+1+1", "+1+1"),
        ("-2+3", "'-2+3", "-2+3"),
        ("@SUM(A1)", "'@SUM(A1)", "@SUM(A1)"),
        ("\t=1", "'\t=1", "\t=1"),
        ("\r=1", "'\r=1", "\r=1"),
        ("\n=1", "'\n=1", "\n=1"),
        ("＝1+1", "'＝1+1", "＝1+1"),
        ("-", "'-", "-"),
        ("-inf", "'-inf", "-inf"),
        ("-５", "'-５", "-５"),  # a full-width digit: no plain number
        ("-5", "-5", "-5"),
        ("+3.50", "+3.50", "+3.50"),
        ("-1e5", "-1e5", "-1e5"),
        (-5, "-5", "-5"),
        (Decimal("-5.00"), "-5.00", "-5.00"),
        (-0.5, "-0.5", "-0.5"),
        (float("-inf"), "'-inf", "-inf"),
        ("厦门=1+1", "厦门=1+1", "厦门=1+1"),  # only the first character counts
        ("'=1", "'=1", "'=1"),
        (None, "", ""),
        (["-1+1"], '["-1+1"]', '["-1+1"]'),
        (True, "true", "true"),
    ],
)
def test_the_cell_rule(value: Any, safe: str, raw: str) -> None:
    """The rule on its own, through the writer every CSV output uses."""
    out, verbatim = io.StringIO(), io.StringIO()
    write_csv([{"v": value}], out, ("v",))
    assert rows_of(out.getvalue()) == [{"v": safe}]
    write_csv([{"v": value}], verbatim, ("v",), raw=True)
    assert rows_of(verbatim.getvalue()) == [{"v": raw}]
