"""The data dictionary shipped in every snapshot, generated from docs/SCHEMA.md.

The schema document is the contract; the dictionary is its record table plus how each field
is typed in the snapshot's format, so it cannot drift from either.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from core.schema import RECORD_FIELDS, SCHEMA_VERSION

SCHEMA_DOC = Path(__file__).resolve().parent.parent / "docs" / "SCHEMA.md"
_ROW = re.compile(r"^\|\s*(?P<names>`[^|]+`)\s*\|\s*(?P<type>[^|]+?)\s*\|\s*(?P<meaning>.+?)\s*\|$")


@cache
def record_fields() -> dict[str, tuple[str, str]]:
    """Field → (schema type, meaning), from the record table of SCHEMA.md."""
    try:
        text = SCHEMA_DOC.read_text(encoding="utf-8")
    except OSError as exc:
        raise RuntimeError(f"the schema document {SCHEMA_DOC} cannot be read: {exc}") from None
    section = text.split("## Record", 1)[1].split("\n## ", 1)[0]
    fields: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line.strip())
        if not match:
            continue
        for name in re.findall(r"`([a-z_0-9]+)`", match["names"]):
            fields[name] = (match["type"], match["meaning"])
    missing = [name for name in RECORD_FIELDS if name not in fields]
    if missing:
        raise RuntimeError(f"{SCHEMA_DOC} does not describe {', '.join(missing)}")
    return fields


def format_type(name: str, schema_type: str, fmt: str) -> str:
    """How a field is typed in one snapshot format."""
    if fmt == "parquet":
        from export.parquet import parquet_type  # pyarrow only when asked

        return str(parquet_type(name))
    if fmt == "xlsx" and schema_type.startswith("number"):
        return "number (empty = null)"
    if fmt in ("csv", "xlsx"):
        if name == "extra" or schema_type.startswith("list"):
            return "JSON text"
        return "text (empty = null)"
    return schema_type


NOTES = {
    "parquet": (
        "Dates are `date32`, times UTC `timestamp[us]`, money `decimal128(18, 2)` (yuan, to "
        "the fen; a published value with more decimals is rounded half-even), "
        "`penalty_types` a list of strings, and `extra` the JSON text of its object."
    ),
    "csv": (
        "UTF-8 (with a byte-order mark when written with `--bom`, for Excel). Null is the "
        "empty cell; lists and objects are JSON in their cell; booleans are `true`/`false`. "
        "A cell a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, a tab "
        "or a line break, plain numbers excepted) starts with a `'` unless the snapshot was "
        "written with `--raw` (the manifest's `csv_formulas_neutralised` says which)."
    ),
    "xlsx": (
        "One sheet, a header row and one row per entry. Money is a number cell; every other "
        "value is a text cell (never a formula, so nothing is prefixed: the text is as "
        "published). Null is the empty cell; lists and objects are JSON in their cell. "
        "Characters XML cannot hold (NUL and most other C0 controls) are U+FFFD, and a "
        "value longer than 32,767 characters (Excel's limit) is cut, saying how long it was."
    ),
    "jsonl": "One JSON object per line, the schema's fields in this order; null is `null`.",
    "ftm": (
        "FollowTheMoney entities, one JSON object per line: a `Company`, `Person` or "
        "`Organization` per subject (merged across lists) and a `Sanction` per list entry, "
        "carrying the record fields below."
    ),
}


def data_dictionary(fmt: str) -> str:
    """The dictionary as Markdown, for a snapshot in ``fmt``."""
    described = record_fields()
    lines = [
        "# creditwatch snapshot: data dictionary",
        "",
        f"Schema version {SCHEMA_VERSION} (docs/SCHEMA.md). Format: {fmt}. {NOTES[fmt]}",
        "",
        "Each list is as its last healthy run on or before the as-of date showed it "
        "(`manifest.json` names the run). Dates are Asia/Shanghai calendar dates; times are "
        "UTC. In a redacted snapshot a natural person's name is shortened (王**), the masked "
        "ID number is dropped and `record_key` / `entity_id` are pseudonyms.",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
    ]
    for name in RECORD_FIELDS:
        schema_type, meaning = described[name]
        lines.append(f"| `{name}` | {format_type(name, schema_type, fmt)} | {meaning} |")
    return "\n".join(lines) + "\n"
