"""Records and events in the schema's shape, written as JSON Lines, CSV or XLSX.

CSV is for spreadsheets, so no cell is a live formula: OWASP's CSV-injection rule (below,
``neutralise``) unless the caller asks for ``raw`` cells. XLSX types every text cell as text,
so none is a formula and the text stays as published. JSON Lines is always verbatim."""

from __future__ import annotations

import csv
import io
import json
import re
import zipfile
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

# Line and paragraph separators are legal raw in a JSON string, but line readers split on them
# (Python's str.splitlines, editors, older JavaScript): escaped, a record stays on one line.
_LINE_BREAKERS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029"})


def write_jsonl(rows: Iterable[dict[str, Any]], out: IO[str]) -> int:
    """One JSON object per line, text as published (U+2028/U+2029 written as escapes)."""
    count = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKERS) + "\n")
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


# XLSX keeps every text as a text cell (never a formula, whatever its first character: a
# spreadsheet shows it as typed, no ``'`` needed); XML 1.0 cannot hold most C0 controls, so
# they become U+FFFD; Excel refuses a cell longer than 32,767 characters, so longer text is
# cut there, saying how much was left out.
XLSX_MAX_CELL = 32_767
_XLSX_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SAVED_AT = re.compile(rb"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)")


def xlsx_text(text: str) -> str:
    """``text`` as an XLSX cell can hold it: forbidden characters as U+FFFD, cut to fit."""
    text = _XLSX_INVALID.sub("\ufffd", text)
    if len(text) <= XLSX_MAX_CELL:
        return text
    note = f"… (+{len(text)} characters in all)"
    return text[: XLSX_MAX_CELL - len(note)] + note


def xlsx_value(value: Any) -> str | int | float | None:
    """Numbers stay numbers; everything else is text as ``csv_cell`` writes it (raw)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if value is None:
        return None
    if not isinstance(value, str) and _PLAIN_NUMBER.fullmatch(str(value)):
        return float(value) if "." in str(value) or "e" in str(value).lower() else int(value)
    return xlsx_text(csv_cell(value, raw=True))


def write_xlsx(
    rows: Iterable[dict[str, Any]], path: Path, fields: tuple[str, ...], *, sheet: str
) -> int:
    """Rows to an .xlsx file with a header row, one sheet; the count of rows.

    Text cells are typed as strings, so no cell is ever a formula; the file's bytes depend
    on the rows only (fixed document times and zip member times), as snapshots require."""
    from openpyxl import Workbook  # loaded only when XLSX is asked for
    from openpyxl.cell import WriteOnlyCell

    book = Workbook(write_only=True)
    book.properties.created = datetime(2000, 1, 1)
    book.properties.creator = "creditwatch"
    table = book.create_sheet(title=sheet[:31])

    def cells(values: Iterable[Any]) -> list[Any]:
        out = []
        for value in values:
            cell = WriteOnlyCell(table, value=value)
            if isinstance(value, str):
                cell.data_type = "s"  # openpyxl takes a text starting with "=" for a formula
            out.append(cell)
        return out

    table.append(cells(fields))
    count = 0
    for row in rows:
        table.append(cells(xlsx_value(row.get(name)) for name in fields))
        count += 1
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as made, zipfile.ZipFile(path, "w") as out:
        for member in made.infolist():
            fixed = zipfile.ZipInfo(member.filename, date_time=_ZIP_EPOCH)
            fixed.compress_type = zipfile.ZIP_DEFLATED
            data = made.read(member)
            if member.filename == "docProps/core.xml":  # openpyxl stamps the time of saving
                data = _SAVED_AT.sub(rb"\g<1>2000-01-01T00:00:00Z\g<2>", data)
            out.writestr(fixed, data)
    return count
