"""Records and events in the schema's shape, written as JSON Lines or CSV.

CSV is for spreadsheets, so no cell is a live formula: OWASP's CSV-injection rule (below,
``neutralise``) unless the caller asks for ``raw`` cells. JSON Lines is always verbatim."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from typing import IO, Any


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
        count += 1
    return count


# What makes a spreadsheet read a cell as a formula (OWASP, "CSV Injection"), and the
# full-width forms, which some spreadsheets in CJK locales take as the same (OWASP's testing
# guide lists them; this data is Chinese).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "＝", "＋", "－", "＠")
# A plain decimal number ("-5", "+3.50", "-1e5"): read as a number, never as a formula.
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def neutralise(text: str) -> str:
    """``text`` with a leading ``'`` when a spreadsheet would run it as a formula, so it shows
    as text. A plain number (a fine of -5) cannot be a formula: it is data, left alone."""
    if text.startswith(FORMULA_TRIGGERS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_cell(value: Any, *, raw: bool = False) -> str:
    """SCHEMA.md: null is the empty cell; lists and objects are JSON in their cell. Every cell
    is text by then, so the formula rule sees exactly what a spreadsheet will (unless raw)."""
    if value is None:
        return ""
    if isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text if raw else neutralise(text)


def write_csv(
    rows: Iterable[dict[str, Any]], out: IO[str], fields: tuple[str, ...], *, raw: bool = False
) -> int:
    """Rows as CSV with a header, cells by ``csv_cell``; the count of rows.

    A row with a carriage return in a cell is quoted throughout: the csv module quotes only
    the line terminator's characters (a line feed here), and a bare carriage return ends the
    row in spreadsheets, starting a new cell (a formula, perhaps) that no rule saw."""
    plain = csv.writer(out, lineterminator="\n")
    quoted = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    plain.writerow(fields)
    count = 0
    for row in rows:
        cells = [csv_cell(row.get(name), raw=raw) for name in fields]
        (quoted if any("\r" in cell for cell in cells) else plain).writerow(cells)
        count += 1
    return count
