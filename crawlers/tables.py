"""Tables out of announcement attachments (.xls, .xlsx, .docx, .pdf, HTML), found by header label.

Blacklists are published as attachments whose layout varies from file to file: a title row
above the header, a header over two rows, one entry spread over several rows with its key
cells merged vertically, footnotes below the data. Columns are therefore located by their
header label, never by position, and every format is reduced to one grid of cell texts (plus
the merged ranges where the format records them) so that the layout rules live in one place:
each format only has a small reader producing that grid.

Cell texts are kept as published: only surrounding whitespace is stripped, masked ID numbers
are never touched; spreadsheet numbers are written without a spurious ``.0`` and date cells
as ISO dates, because that is what the reader of the sheet saw. A file that cannot be parsed
raises ``TableError`` rather than yielding partial rows.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.normalise.labels import canonical_label, lookup

if TYPE_CHECKING:
    from docx.table import Table as DocxTable
    from docx.table import _Cell
    from lxml.html import HtmlElement
    from pdfplumber.page import Page

__all__ = ["Table", "TableError", "read_tables", "sniff_kind"]

Merge = tuple[int, int, int, int]  # (first_row, last_row_exclusive, first_col, last_col_excl.)

KINDS = ("xls", "xlsx", "docx", "pdf", "html")
JOINER = "、"
_FOOTNOTE_RE = re.compile(
    r"^(?:备\s*注|注\s*释|说\s*明|注)\s*(?:$|[：:0-9０-９一二三四五六七八九十、.．(（\s])"
)
_WS_RE = re.compile(r"\s+")
_PAGE_NUMBER_RE = re.compile(r"^[\s\-—–第页共/0-9]+$")
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


class TableError(ValueError):
    """An attachment that cannot be read as the expected table; the message says why."""


@dataclass(frozen=True)
class Table:
    """One table of an attachment: entries keyed by header label, as published."""

    header: tuple[str, ...]
    rows: tuple[dict[str, str], ...]
    title: str | None
    footnotes: tuple[str, ...]
    kind: str


@dataclass
class _Grid:
    """A rectangular grid of cell texts; covered cells of a merged range are ``""``.

    ``merges`` is None for formats that do not record merged ranges (PDF), where layout is
    inferred from empty cells instead. ``before``/``after`` are the lines of text printed
    just above and below the table outside it (docx paragraphs, PDF page text).
    """

    cells: list[list[str]]
    merges: list[Merge] | None
    name: str
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pad()

    def pad(self) -> None:
        """Make the grid rectangular (rows of some formats stop at their last cell)."""
        width = max((len(row) for row in self.cells), default=0)
        for row in self.cells:
            row.extend([""] * (width - len(row)))
        self.width = width


# --------------------------------------------------------------------------- sniffing


def sniff_kind(data: bytes, url: str = "", content_type: str = "") -> str | None:
    """``'xls' | 'xlsx' | 'docx' | 'pdf' | 'html' | 'image'`` or None.

    Magic bytes win over the URL and the content type because portals serve attachments
    as ``application/octet-stream`` and name HTML exports ``.xls``.
    """
    kind = _sniff_magic(data, url)
    if kind is not None:
        return kind if kind != "-" else None
    path = urlsplit(url).path.lower() if url else ""
    ext = path.rsplit(".", 1)[-1] if "." in path.rsplit("/", 1)[-1] else ""
    by_ext = {
        "xls": "xls", "et": "xls", "xlsx": "xlsx", "docx": "docx", "pdf": "pdf",
        "htm": "html", "html": "html", "shtml": "html", "png": "image", "jpg": "image",
        "jpeg": "image", "gif": "image", "bmp": "image", "tif": "image", "tiff": "image",
    }  # fmt: skip
    if ext in by_ext:
        return by_ext[ext]
    ctype = content_type.split(";", 1)[0].strip().lower()
    by_type = {
        "application/vnd.ms-excel": "xls",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "xlsx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
        "application/pdf": "pdf",
        "text/html": "html",
        "application/xhtml+xml": "html",
    }
    if ctype in by_type:
        return by_type[ctype]
    if ctype.startswith("image/"):
        return "image"
    return None


def _sniff_magic(data: bytes, url: str) -> str | None:
    """Kind from the leading bytes; ``"-"`` means recognised as something we cannot read."""
    if data.startswith(_OLE_MAGIC):
        if b"W\x00o\x00r\x00d\x00D\x00o\x00c\x00u\x00m\x00e\x00n\x00t" in data:
            return "-"  # a legacy Word .doc, not a workbook
        if b"E\x00n\x00c\x00r\x00y\x00p\x00t\x00e\x00d\x00P\x00a\x00c\x00k" in data:
            # a password-protected OOXML file is wrapped in OLE2; read_tables says so
            return "docx" if url.lower().split("?")[0].endswith(".docx") else "xlsx"
        return "xls"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return None
        if any(name.startswith("xl/") for name in names):
            return "xlsx"
        if any(name.startswith("word/") for name in names):
            return "docx"
        return "-"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")):
        return "image"
    if data.startswith((b"II*\x00", b"MM\x00*")) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        return "image"
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<"):
        if b"urn:schemas-microsoft-com:office:spreadsheet" in data[:4096]:
            return "-"  # Excel 2003 XML, not HTML
        return "html"
    return None


# --------------------------------------------------------------------------- entry point


def read_tables(
    data: bytes,
    kind: str,
    header_labels: Sequence[str],
    label_overrides: Mapping[str, str] | None = None,
) -> list[Table]:
    """Every table of the file whose header row holds all ``header_labels``.

    Labels are compared folded (``canonical_label``). Tables without such a header are
    skipped; ``TableError`` when the file cannot be parsed or no table matches.
    ``label_overrides`` (the source's ``labels:`` block) decide, as in normalisation, which
    column names the subject that rows merged over several lines are keyed by.
    """
    wanted = [canonical_label(label) for label in header_labels]
    if not wanted or not all(wanted):
        raise TableError(f"header_labels must name at least one label, got {header_labels!r}")
    if kind == "image":
        raise TableError("attachment is an image: its table can only be read by OCR")
    readers = {
        "xls": _xls_grids,
        "xlsx": _xlsx_grids,
        "docx": _docx_grids,
        "pdf": _pdf_grids,
        "html": _html_grids,
    }
    if kind not in readers:
        raise TableError(f"cannot read tables from attachment kind {kind!r} (known: {KINDS})")
    if not data.strip():
        raise TableError(f"empty .{kind} attachment ({len(data)} bytes)")
    if kind in ("xlsx", "docx") and data.startswith(_OLE_MAGIC):
        raise TableError(f"encrypted (password-protected) .{kind} attachment")
    actual = _sniff_magic(data, "")
    if actual in KINDS and actual != kind:
        raise TableError(f"attachment given as .{kind} is a .{actual} file by its content")
    grids = readers[kind](data)
    tables: list[Table] = []
    for grid in grids:
        tables.extend(_tables_in(grid, wanted, kind, label_overrides))
    if tables:
        return tables
    shown = [label.strip() for label in header_labels]
    if kind == "pdf" and not any(grid.cells for grid in grids):
        raise TableError(
            f"PDF has no table whose header holds {', '.join(shown)} ({_pdf_summary(data)})"
        )
    firsts = [" | ".join(text for text in _first_rows_text(grid) if text)[:120] for grid in grids]
    raise TableError(
        f"no table with header labels {shown} (tables seen: {len(grids)}; "
        f"their first rows: {firsts})"
    )


def _first_rows_text(grid: _Grid) -> Iterator[str]:
    for row in grid.cells[:3]:
        yield " ".join(_distinct(row))


# --------------------------------------------------------------------------- layout rules


def _distinct(cells: Sequence[str]) -> list[str]:
    """Non-empty cell texts of a row, each once (a spanning cell repeats in some formats)."""
    seen: list[str] = []
    for text in cells:
        if text and text not in seen:
            seen.append(text)
    return seen


def _h_span(grid: _Grid, r: int, c: int) -> Merge | None:
    """The merged range whose top-left cell is (r, c), if any."""
    for merge in grid.merges or ():
        if merge[0] == r and merge[2] == c:
            return merge
    return None


def _covering(grid: _Grid, r: int, c: int) -> Merge | None:
    """The merged range covering (r, c), if any."""
    for merge in grid.merges or ():
        if merge[0] <= r < merge[1] and merge[2] <= c < merge[3]:
            return merge
    return None


def _has_subheader(grid: _Grid, r: int) -> bool:
    """Whether row r+1 holds sub-labels under parent cells of row r spanning columns."""
    if r + 1 >= len(grid.cells):
        return False
    top, below = grid.cells[r], grid.cells[r + 1]
    if grid.merges:
        title_like = len(_distinct(top)) == 1  # one text across the width: a title row
        parents = [
            (clo, chi)
            for rlo, rhi, clo, chi in grid.merges
            if rlo == r and rhi == r + 1 and chi - clo >= 2
            and not (title_like and clo == 0 and chi >= grid.width)
        ]  # fmt: skip
        # sub-labels stand only under parents: text elsewhere makes row r+1 a data row
        return any(any(below[clo:chi]) for clo, chi in parents) and all(
            any(clo <= c < chi for clo, chi in parents) for c in range(grid.width) if below[c]
        )
    vertical = any(top[c] and not below[c] for c in range(grid.width))
    under_span = False
    for c in range(grid.width):
        if not below[c]:
            continue
        if not top[c]:
            if not any(top[:c]):
                return False
            under_span = True
        elif c + 1 < grid.width and not top[c + 1] and below[c + 1]:
            under_span = True
        else:
            return False
    return vertical and under_span


def _header_labels(grid: _Grid, r: int, two_rows: bool) -> list[str]:
    """Header label per column; a two-row header combines parent and child labels."""
    top = grid.cells[r]
    if not two_rows:
        return list(top)
    below = grid.cells[r + 1]
    labels: list[str] = []
    parent_run = ""
    for c in range(grid.width):
        if grid.merges:
            merge = _covering(grid, r, c)
            parent = grid.cells[merge[0]][merge[2]] if merge else top[c]
        else:
            if top[c]:
                parent_run = top[c]
            parent = top[c] or (parent_run if below[c] else "")
        child = below[c]
        if not child:
            labels.append(parent)
        elif not parent or canonical_label(child).startswith(canonical_label(parent)):
            labels.append(child)
        else:
            labels.append(parent + child)
    return labels


def _row_text(cells: Sequence[str]) -> str:
    return " ".join(_distinct(cells))


def _is_footnote(grid: _Grid, r: int, tail: bool) -> bool:
    """注/备注/说明/注释 rows, rows of one cell spanning columns and, below the last entry
    (``tail``), rows of one cell alone in column 0: in the middle of the data such a row is
    a sparse entry, not a note."""
    cells = grid.cells[r]
    filled = [c for c, text in enumerate(cells) if text]
    if not filled:
        return False
    if _FOOTNOTE_RE.match(cells[filled[0]]):
        return True
    if len(_distinct(cells)) != 1:
        return False
    span = _h_span(grid, r, filled[0])
    # a text repeated over several cells is a span in a format that copies it per cell
    spans = span is not None and span[3] - span[2] >= 2
    return spans or len(filled) > 1 or (tail and filled == [0])


def _tables_in(
    grid: _Grid, wanted: list[str], kind: str, overrides: Mapping[str, str] | None
) -> Iterator[Table]:
    """Tables in one grid: each header row holding all ``wanted`` labels starts one."""
    r = 0
    n = len(grid.cells)
    title_from = 0
    while r < n:
        two_rows = _has_subheader(grid, r)
        found = set(map(canonical_label, grid.cells[r]))
        if two_rows:
            found |= set(map(canonical_label, grid.cells[r + 1]))
            found |= set(map(canonical_label, _header_labels(grid, r, True)))
        if not all(label in found for label in wanted):
            r += 1
            continue
        table, r = _read_table(grid, title_from, r, two_rows, wanted, kind, overrides)
        title_from = r
        yield table


def _read_table(
    grid: _Grid,
    title_from: int,
    r: int,
    two_rows: bool,
    wanted: list[str],
    kind: str,
    overrides: Mapping[str, str] | None,
) -> tuple[Table, int]:
    """The table whose header starts at row r; returns it and the row where the next begins."""
    raw_labels = [label.strip() for label in _header_labels(grid, r, two_rows)]
    header_rows = [canonical_label(_row_text(grid.cells[r]))]
    if two_rows:
        header_rows.append(canonical_label(_row_text(grid.cells[r + 1])))
    start = r + (2 if two_rows else 1)
    title_lines = [_row_text(grid.cells[t]) for t in range(title_from, r)]
    title_lines = [line for line in title_lines if line]
    # rows a later page repeats above the data: the header and the title
    repeated = header_rows + [canonical_label(line) for line in title_lines]
    if not title_lines and title_from == 0 and grid.before:
        title_lines = grid.before[-1:]

    # Rows of this table end where another header holding the wanted labels differs.
    end = start
    while end < len(grid.cells):
        cells = grid.cells[end]
        found = {canonical_label(text) for text in cells}
        if (
            all(label in found for label in wanted)
            and canonical_label(_row_text(cells)) not in header_rows
        ):
            break
        end += 1

    data_rows = range(start, end)
    # A column without a header label is dropped only when it is empty throughout; one
    # holding data keeps it under a label naming its position, so no value is lost.
    columns: list[int] = []
    for c in range(grid.width):
        if not raw_labels[c] and any(grid.cells[row][c] for row in data_rows):
            raw_labels[c] = f"(第{c + 1}列)"
        if raw_labels[c]:
            columns.append(c)
    labels = _unique([raw_labels[c] for c in columns])
    key_cols = [columns[0]] if columns else []
    for c in columns:
        if lookup(raw_labels[c], overrides)[0] == "entity_name":
            if c not in key_cols:
                key_cols.append(c)
            break

    tail = end  # first row of the run of notes and empty rows closing the table
    while tail > start and (
        not any(grid.cells[tail - 1][c] for c in columns) or _is_footnote(grid, tail - 1, True)
    ):
        tail -= 1

    entries: list[list[list[str]]] = []  # entry → column → joined parts
    footnotes: list[str] = []
    for row in data_rows:
        cells = grid.cells[row]
        values = [cells[c] for c in columns]
        if not any(values):
            continue
        if canonical_label(_row_text(cells)) in repeated:
            continue  # a header (or title) repeated on a later page
        if _is_footnote(grid, row, row >= tail):
            footnotes.append(_row_text(cells))
            continue
        if entries and _continues(grid, row, key_cols, entries[-1], columns):
            for parts, value in zip(entries[-1], values, strict=True):
                if value and (not parts or parts[-1] != value):
                    parts.append(value)
            continue
        entries.append([[value] if value else [] for value in values])
    # Notes printed under the table (docx paragraphs, PDF text): from the first 注/备注/…
    # line on, leaving out page numbers.
    noting = False
    for line in grid.after if end == len(grid.cells) else ():
        noting = noting or bool(_FOOTNOTE_RE.match(line))
        if noting and not _PAGE_NUMBER_RE.match(line):
            footnotes.append(line)

    rows = tuple(
        {label: JOINER.join(parts) for label, parts in zip(labels, entry, strict=True)}
        for entry in entries
    )
    table = Table(
        header=tuple(labels),
        rows=rows,
        title="\n".join(title_lines) or None,
        footnotes=tuple(footnotes),
        kind=kind,
    )
    return table, end


def _continues(
    grid: _Grid, row: int, key_cols: list[int], entry: list[list[str]], columns: list[int]
) -> bool:
    """Whether ``row`` continues the entry above: its key cells are covered by a vertical
    merge, or they are empty while the entry has them (formats without merge info)."""
    if not key_cols:
        return False
    for c in key_cols:
        merge = _covering(grid, row, c)
        if merge is not None and merge[0] < row:
            return True
    cells = grid.cells[row]
    return all(not cells[c] and entry[columns.index(c)] for c in key_cols)


def _unique(labels: list[str]) -> list[str]:
    """Header labels, a repeated label numbered so that no column overwrites another."""
    out: list[str] = []
    for label in labels:
        candidate, n = label, 1
        while candidate in out:
            n += 1
            candidate = f"{label}({n})"
        out.append(candidate)
    return out


# --------------------------------------------------------------------------- cell values


def _number_text(value: float) -> str:
    """A spreadsheet number as the sheet shows it: 510240.0 → "510240", no exponent."""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if float(value).is_integer():
        return str(int(value))
    return format(Decimal(repr(float(value))), "f")


def _datetime_text(value: dt.datetime | dt.date | dt.time) -> str:
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value.isoformat(timespec="seconds")


def _value_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _number_text(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return _datetime_text(value)
    return str(value).strip()


# --------------------------------------------------------------------------- readers


def _xls_grids(data: bytes) -> list[_Grid]:
    """BIFF sheets via xlrd; merged ranges need ``formatting_info`` (BIFF8 only)."""
    import xlrd

    log = io.StringIO()  # xlrd prints its warnings; keep them for the error message
    try:
        try:
            book = xlrd.open_workbook(file_contents=data, formatting_info=True, logfile=log)
        except NotImplementedError:
            book = xlrd.open_workbook(file_contents=data, logfile=log)
    except Exception as exc:  # xlrd raises anything from struct.error to IndexError
        message = str(exc) or type(exc).__name__
        if "encrypt" in message.lower():
            raise TableError(f"encrypted (password-protected) .xls attachment: {message}") from exc
        warnings = " ".join(log.getvalue().split())[:200]
        detail = f"{message} ({warnings})" if warnings else message
        raise TableError(f"truncated or corrupt .xls attachment: {detail}") from exc
    grids = []
    for sheet in book.sheets():
        cells = []
        for r in range(sheet.nrows):
            row = []
            for c in range(sheet.ncols):
                cell = sheet.cell(r, c)
                row.append(_xls_cell_text(xlrd, cell, book.datemode))
            cells.append(row)
        merges: list[Merge] = [(m[0], m[1], m[2], m[3]) for m in sheet.merged_cells]
        grids.append(_Grid(cells, merges, sheet.name))
    return grids


def _xls_cell_text(xlrd: Any, cell: Any, datemode: int) -> str:
    """A BIFF cell as the sheet shows it (xlrd ships no type information)."""
    ctype, value = cell.ctype, cell.value
    if ctype == 3:  # XL_CELL_DATE
        try:
            return _datetime_text(xlrd.xldate_as_datetime(value, datemode))
        except (ValueError, OverflowError):
            return _number_text(value)
    if ctype == 2:  # XL_CELL_NUMBER
        return _number_text(value)
    if ctype == 4:  # XL_CELL_BOOLEAN
        return "TRUE" if value else "FALSE"
    if ctype == 5:  # XL_CELL_ERROR
        return str(xlrd.error_text_from_code.get(value, "#ERR"))
    return str(value).strip() if value is not None else ""


def _xlsx_grids(data: bytes) -> list[_Grid]:
    """Worksheets via openpyxl; not read-only, because only then are merged ranges known."""
    import openpyxl

    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=False, data_only=True)
    except Exception as exc:  # BadZipFile, KeyError, InvalidFileException, XML errors
        message = str(exc) or type(exc).__name__
        raise TableError(f"not a valid .xlsx attachment: {message}") from exc
    grids = []
    for sheet in book.worksheets:
        cells = [
            [_value_text(cell.value) for cell in row]
            for row in sheet.iter_rows(
                min_row=1, max_row=sheet.max_row, min_col=1, max_col=sheet.max_column
            )
        ]
        if cells == [[""]]:
            cells = []
        merges: list[Merge] = [
            (rng.min_row - 1, rng.max_row, rng.min_col - 1, rng.max_col)
            for rng in sheet.merged_cells.ranges
        ]
        grids.append(_Grid(cells, merges, sheet.title))
    return grids


def _docx_grids(data: bytes) -> list[_Grid]:
    """Tables of the document body via python-docx, with the paragraphs around each.

    python-docx hands out a merged cell once per grid position it covers; positions sharing
    one underlying ``<w:tc>`` element form a merged range.
    """
    import docx
    from docx.oxml.ns import qn
    from docx.table import Table as DocxTable
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(io.BytesIO(data))
        body = document.element.body
        blocks: list[str | DocxTable] = []
        for child in body.iterchildren():
            if child.tag == qn("w:p"):
                blocks.append(Paragraph(child, document).text.strip())
            elif child.tag == qn("w:tbl"):
                blocks.append(DocxTable(child, document))
        grids: list[_Grid] = []
        for index, block in enumerate(blocks):
            if isinstance(block, DocxTable):
                grids.append(_docx_grid(block, blocks, index, len(grids)))
    except TableError:
        raise
    except Exception as exc:  # BadZipFile, KeyError, PackageNotFoundError, XML errors
        message = str(exc) or type(exc).__name__
        raise TableError(f"not a valid .docx attachment: {message}") from exc
    return grids


def _docx_grid(table: DocxTable, blocks: list[str | DocxTable], index: int, number: int) -> _Grid:
    rows = table.rows
    width = len(table.columns)
    positions: list[list[_Cell | None]] = []
    for row in rows:
        line: list[_Cell | None] = [None] * row.grid_cols_before
        line.extend(row.cells)
        line.extend([None] * (width - len(line)))
        positions.append(line[:width] if len(line) > width else line)
    width = max((len(line) for line in positions), default=0)
    for line in positions:
        line.extend([None] * (width - len(line)))
    boxes: dict[Any, list[int]] = {}  # underlying <w:tc> element → its box
    for r, line in enumerate(positions):
        for c, cell in enumerate(line):
            if cell is None:
                continue
            tc = cell._tc
            box = boxes.setdefault(tc, [r, r + 1, c, c + 1])
            box[1], box[3] = max(box[1], r + 1), max(box[3], c + 1)
    cells = [[""] * width for _ in positions]
    merges: list[Merge] = []
    for r, line in enumerate(positions):
        for c, cell in enumerate(line):
            if cell is None:
                continue
            tc = cell._tc
            rlo, _, clo, _ = boxes[tc]
            if (r, c) == (rlo, clo):
                cells[r][c] = cell.text.strip()
    for box in boxes.values():
        if box[1] - box[0] > 1 or box[3] - box[2] > 1:
            merges.append((box[0], box[1], box[2], box[3]))
    before: list[str] = []
    for block in reversed(blocks[:index]):
        if not isinstance(block, str):
            break
        if block:
            before.insert(0, block)
    after: list[str] = []
    for block in blocks[index + 1 :]:
        if not isinstance(block, str):
            break
        if block:
            after.append(block)
    return _Grid(cells, merges, f"table {number + 1}", before, after)


def _pdf_grids(data: bytes) -> list[_Grid]:
    """Ruled tables via pdfplumber; a table continuing on the next page (same column count,
    last on one page and first on the next) is joined to it whether or not it repeats the
    header. PDF records no merged ranges: covered cells come back empty."""
    import pdfplumber

    if b"%%EOF" not in data[-2048:]:
        # pdfminer reads what it can of a cut file: it would give the first pages only
        raise TableError(
            f"truncated or corrupt PDF attachment: no %%EOF trailer ({len(data)} bytes)"
        )
    pieces: list[tuple[int, bool, bool, list[list[str]], list[str], list[str]]] = []
    try:
        with pdfplumber.open(io.BytesIO(data)) as pdf:
            for page_no, page in enumerate(pdf.pages):
                found = page.find_tables()
                found.sort(key=lambda table: (table.bbox[1], table.bbox[0]))
                for index, table in enumerate(found):
                    rows = [[_pdf_cell(text) for text in row] for row in table.extract()]
                    _, top, _, bottom = table.bbox
                    above_top = found[index - 1].bbox[3] if index else 0
                    below_end = found[index + 1].bbox[1] if index + 1 < len(found) else None
                    before = _pdf_lines(page, above_top, top)
                    after = _pdf_lines(page, bottom, below_end or page.height)
                    last = index + 1 == len(found)
                    pieces.append((page_no, index == 0, last, rows, before, after))
    except Exception as exc:  # PDFSyntaxError, PSEOF, password errors, ValueError …
        message = str(exc) or type(exc).__name__
        if "password" in type(exc).__name__.lower() or "encrypt" in message.lower():
            raise TableError(f"encrypted (password-protected) PDF attachment: {message}") from exc
        raise TableError(f"truncated or corrupt PDF attachment: {message}") from exc
    grids: list[_Grid] = []
    last_page = -1
    last_width = -1
    for page_no, first, last, rows, before, after in pieces:
        width = max((len(row) for row in rows), default=0)
        if grids and first and last_page == page_no - 1 and last_width == width:
            grids[-1].cells.extend(rows)
            grids[-1].after = after
        else:
            grids.append(_Grid(rows, None, f"page {page_no + 1} table", before, after))
        last_page, last_width = (page_no, width) if last else (-1, -1)
    for grid in grids:
        grid.pad()
    return grids


def _pdf_cell(text: str | None) -> str:
    """A PDF cell's text with the line breaks of its wrapping removed (kept as a space only
    between two Latin letters, where the wrap fell between words)."""
    if not text:
        return ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    out = lines[0] if lines else ""
    for line in lines[1:]:
        latin = out[-1:].isascii() and out[-1:].isalpha() and line[:1].isascii()
        out += (" " if latin and line[:1].isalpha() else "") + line
    return out


def _pdf_lines(page: Page, top: float, bottom: float) -> list[str]:
    if bottom - top < 1:
        return []
    region = page.crop((0, top, page.width, bottom))
    text = region.extract_text() or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def _pdf_summary(data: bytes) -> str:
    import pdfplumber

    with pdfplumber.open(io.BytesIO(data)) as pdf:
        pages = len(pdf.pages)
        has_text = any((page.extract_text() or "").strip() for page in pdf.pages)
    noun = "page" if pages == 1 else "pages"
    return f"{pages} {noun}, {'text only' if has_text else 'no text layer: a scan?'}"


def _html_grids(data: bytes) -> list[_Grid]:
    """``<table>`` elements via lxml, rowspan/colspan expanded into merged ranges."""
    import lxml.html
    from lxml import etree

    encoding = _html_encoding(data)
    try:
        parser = lxml.html.HTMLParser(encoding=encoding)
        root = lxml.html.document_fromstring(data, parser=parser)
    except (etree.ParserError, ValueError) as exc:
        raise TableError(f"unreadable HTML attachment: {exc}") from exc
    grids = []
    for number, table in enumerate(root.iter("table")):
        grid = _html_grid(table, number)
        if grid.cells:
            grids.append(grid)
    return grids


def _html_encoding(data: bytes) -> str:
    match = re.search(rb"""charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", data[:4096])
    if match:
        name = match.group(1).decode("ascii").lower()
        return "gb18030" if name in ("gb2312", "gbk", "gb18030") else name
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "gb18030"
    return "utf-8"


def _html_grid(table: HtmlElement, number: int) -> _Grid:
    rows = table.xpath("./tr|./thead/tr|./tbody/tr|./tfoot/tr")
    caption = table.xpath("./caption")
    cells: dict[tuple[int, int], str] = {}
    merges: list[Merge] = []
    for r, tr in enumerate(rows):
        c = 0
        for td in tr.xpath("./td|./th"):
            while (r, c) in cells:
                c += 1
            rowspan = max(1, min(_span(td.get("rowspan")), len(rows) - r))
            colspan = max(1, _span(td.get("colspan")))
            text = _WS_RE.sub(" ", td.text_content()).strip()
            for dr in range(rowspan):
                for dc in range(colspan):
                    cells[(r + dr, c + dc)] = ""
            cells[(r, c)] = text
            if rowspan > 1 or colspan > 1:
                merges.append((r, r + rowspan, c, c + colspan))
            c += colspan
    height = max((r for r, _ in cells), default=-1) + 1
    width = max((c for _, c in cells), default=-1) + 1
    grid_cells = [[cells.get((r, c), "") for c in range(width)] for r in range(height)]
    before = [_WS_RE.sub(" ", caption[0].text_content()).strip()] if caption else []
    return _Grid(grid_cells, merges, f"table {number + 1}", [b for b in before if b])


def _span(value: str | None) -> int:
    digits = re.match(r"\s*(\d+)", value or "")
    return min(int(digits.group(1)), 1000) if digits else 1
