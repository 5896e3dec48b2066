"""Tables out of announcement attachments: round trips through the fixture writers.

The layouts are the ones portals publish (title row merged across the columns, a header over
two rows, entries spread over rows with merged key cells, footnotes), written in every format
and read back by header label.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from crawlers.tables import Table, TableError, read_tables, sniff_kind
from fixtures.attachments import Merge, write_docx, write_pdf, write_xls, write_xlsx

SAMPLE_CSV = (
    Path(__file__).resolve().parent.parent
    / "fixtures/samples/announcement_xls/mohrss_2019_batch1_wage_arrears_blacklist.csv"
)
# xlrd's merged_cells of the published file: the title, and entries 24 and 25 spread over
# three and two rows with their key cells merged (法定代表人 columns 4 and 5 differ per row).
REAL_MERGES: list[Merge] = [(0, 1, 0, 9)] + [
    (lo, hi, c, c + 1) for lo, hi in ((25, 28), (28, 30)) for c in (0, 1, 2, 3, 6, 7, 8)
]

TITLE = "附件：2020年第一批失信主体名单"
LAYOUT: list[list[object]] = [
    [TITLE, "", "", "", "", ""],
    ["序号", "名称", "法定代表人", "", "列入日期", "涉及金额（元）"],
    ["", "", "姓名", "法定代表人身份证件号码", "", ""],
    [1, "甲建筑劳务有限公司", "张三", "410522********8191", dt.date(2019, 3, 5), 510240.0],
    [2, "乙商贸有限公司", "李四", "320521********001X", dt.date(2019, 12, 31), 1386231.71],
    ["", "", "王五", "320521********0022", "", ""],
    ["", "", "赵六", "530111********2319", "", ""],
    [3, "丙服饰有限公司", "孙七", "650104********3314", dt.date(2020, 1, 2), 73785],
    ["注：涉及金额以认定部门的决定为准。", "", "", "", "", ""],
]
LAYOUT_MERGES: list[Merge] = [
    (0, 1, 0, 6),  # title across the width
    (1, 3, 0, 1),  # 序号, 名称, 列入日期, 金额 span both header rows
    (1, 3, 1, 2),
    (1, 2, 2, 4),  # 法定代表人 above 姓名 and 身份证件号码
    (1, 3, 4, 5),
    (1, 3, 5, 6),
    *((4, 7, c, c + 1) for c in (0, 1, 4, 5)),  # entry 2 over three rows
    (8, 9, 0, 6),  # footnote across the width
]
HEADER = ("序号", "名称", "法定代表人姓名", "法定代表人身份证件号码", "列入日期", "涉及金额（元）")
EXPECTED = [
    {
        "序号": "1",
        "名称": "甲建筑劳务有限公司",
        "法定代表人姓名": "张三",
        "法定代表人身份证件号码": "410522********8191",
        "列入日期": "2019-03-05",
        "涉及金额（元）": "510240",
    },
    {
        "序号": "2",
        "名称": "乙商贸有限公司",
        "法定代表人姓名": "李四、王五、赵六",
        "法定代表人身份证件号码": "320521********001X、320521********0022、530111********2319",
        "列入日期": "2019-12-31",
        "涉及金额（元）": "1386231.71",
    },
    {
        "序号": "3",
        "名称": "丙服饰有限公司",
        "法定代表人姓名": "孙七",
        "法定代表人身份证件号码": "650104********3314",
        "列入日期": "2020-01-02",
        "涉及金额（元）": "73785",
    },
]
FOOTNOTE = "注：涉及金额以认定部门的决定为准。"
LABELS = ("名称", "法定代表人姓名")


def _as_text(rows: Sequence[Sequence[object]]) -> list[list[str]]:
    """The layout as a PDF prints it: text only (a PDF keeps no number or date types)."""

    def text(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.2f}".rstrip("0").rstrip(".")
        return "" if value is None else str(value)

    return [[text(value) for value in row] for row in rows]


WRITERS: dict[str, Callable[[], bytes]] = {
    "xls": lambda: write_xls(LAYOUT, LAYOUT_MERGES),
    "xlsx": lambda: write_xlsx(LAYOUT, LAYOUT_MERGES),
    "docx": lambda: write_docx(LAYOUT, LAYOUT_MERGES),
    "pdf": lambda: write_pdf(_as_text(LAYOUT), merges=LAYOUT_MERGES),
}


@pytest.fixture(scope="module")
def written() -> dict[str, bytes]:
    return {kind: write() for kind, write in WRITERS.items()}


def _only(tables: list[Table]) -> Table:
    assert len(tables) == 1, tables
    return tables[0]


@pytest.mark.parametrize("kind", list(WRITERS))
def test_round_trip_layout(written: dict[str, bytes], kind: str) -> None:
    table = _only(read_tables(written[kind], kind, LABELS))
    assert table.kind == kind
    assert table.header == HEADER
    assert table.title == TITLE
    assert table.footnotes == (FOOTNOTE,)
    assert list(table.rows) == EXPECTED


@pytest.mark.parametrize("kind", list(WRITERS))
def test_sniff_kind_of_written_files(written: dict[str, bytes], kind: str) -> None:
    assert sniff_kind(written[kind]) == kind
    # magic bytes win over a misleading name and content type
    assert sniff_kind(written[kind], "https://x.gov.cn/a.html", "text/html") == kind


def test_writers_are_deterministic(written: dict[str, bytes]) -> None:
    time.sleep(1.1)  # past the next second: a timestamp left in the output would show
    assert {kind: write() for kind, write in WRITERS.items()} == written


@pytest.mark.parametrize("kind", ["xlsx", "docx"])
def test_zip_entries_have_fixed_dates(written: dict[str, bytes], kind: str) -> None:
    with zipfile.ZipFile(io.BytesIO(written[kind])) as archive:
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        core = archive.read("docProps/core.xml").decode()
    assert "2020-01-01T00:00:00" in core


def test_pdf_extracts_chinese_text() -> None:
    import pdfplumber

    data = write_pdf(None, before=["附件：拖欠农民工工资“黑名单”", "410522********8191"])
    with pdfplumber.open(io.BytesIO(data)) as pdf:
        text = pdf.pages[0].extract_text()
    assert "附件：拖欠农民工工资“黑名单”" in text
    assert "410522********8191" in text


@pytest.mark.parametrize("kind", ["xls", "xlsx", "docx", "pdf"])
def test_header_found_by_label_whatever_the_column_order(kind: str) -> None:
    header = ["涉及金额（元）", "身份证件号码", "企业名称", "序号", "法定代表人"]
    first = [73785, "650104********3314", "丙服饰有限公司", 1, "孙七"]
    rows: list[list[object]] = [
        ["失信名单", "", "", "", ""],
        header,
        first,
        ["", "", "", "", "周八"],
    ]
    merges: list[Merge] = [(0, 1, 0, 5), *((2, 4, c, c + 1) for c in (0, 1, 2, 3))]
    data = {
        "xls": lambda: write_xls(rows, merges),
        "xlsx": lambda: write_xlsx(rows, merges),
        "docx": lambda: write_docx(rows, merges),
        "pdf": lambda: write_pdf(_as_text(rows), merges=merges),
    }[kind]()
    table = _only(read_tables(data, kind, ["企业名称 ", "身份证件号码："]))
    assert table.header == tuple(header)
    assert table.rows == (
        {
            "涉及金额（元）": "73785",
            "身份证件号码": "650104********3314",
            "企业名称": "丙服饰有限公司",
            "序号": "1",
            "法定代表人": "孙七、周八",
        },
    )


def test_real_layout_of_the_mohrss_2019_list() -> None:
    with SAMPLE_CSV.open(encoding="utf-8", newline="") as handle:
        rows: list[list[object]] = [list(row) for row in csv.reader(handle)]
    for row in rows[2:]:  # the published sheet holds 序号 and amounts as numbers
        for c in (0, 7):
            if row[c]:
                row[c] = float(str(row[c]))
    for lo, hi, clo, _ in REAL_MERGES:  # covered cells are empty in a merged range
        for r in range(lo, hi):
            if (r, clo) != (lo, clo):
                rows[r][clo] = ""
    data = write_xls(rows, REAL_MERGES)
    table = _only(read_tables(data, "xls", ["序号", "名称", "统一社会信用代码或证件号码"]))
    assert table.title is not None and table.title.startswith("附件：")
    assert len(table.rows) == 30
    assert [row["序号"] for row in table.rows] == [str(n) for n in range(1, 31)]
    entry = table.rows[23]
    assert entry["名称"] == "云南双柏大地商贸有限公司"
    assert entry["法定代表人姓名"] == "冯晓燕、于海龙、董丽娜"
    assert entry["法定代表人身份证件号码"] == (
        "532322********0514、530111********2319、530111********6401"
    )
    assert entry["涉及金额（元）"] == "160259"
    assert table.rows[24]["法定代表人姓名"] == "萧国华、程志明"
    assert table.rows[7]["涉及金额（元）"] == "1386231.71"
    assert table.rows[0]["法定代表人身份证件号码"] == "410522********8191"


def test_continuation_rows_without_merges_are_folded() -> None:
    """Sheets that leave the key cells of continuation rows empty instead of merging them."""
    rows: list[list[object]] = [
        ["序号", "名称", "法定代表人姓名"],
        [1, "甲公司", "张三"],
        ["", "", "李四"],
        [2, "乙公司", "王五"],
    ]
    table = _only(read_tables(write_xlsx(rows), "xlsx", ["名称"]))
    assert [row["法定代表人姓名"] for row in table.rows] == ["张三、李四", "王五"]
    assert table.title is None and table.footnotes == ()


def test_docx_paragraphs_give_title_and_footnotes() -> None:
    rows = [["序号", "姓名", "证件号码"], ["1", "张三", "410522********8191"]]
    data = write_docx(
        rows, before=["附件1", "严重失信主体名单"], after=["", "备注：名单有效期三年。", "- 2 -"]
    )
    table = _only(read_tables(data, "docx", ["姓名", "证件号码"]))
    assert table.title == "严重失信主体名单"
    assert table.footnotes == ("备注：名单有效期三年。",)
    assert table.rows == ({"序号": "1", "姓名": "张三", "证件号码": "410522********8191"},)


def test_pdf_table_continuing_over_pages() -> None:
    header = ["序号", "姓名", "证件号码", "列入事由"]
    body = [[str(n), f"姓名{n}", f"410522********{n:04d}", "拖欠劳动者工资"] for n in range(1, 81)]
    for repeat in (1, 0):
        data = write_pdf([header, *body], before=["失信名单"], after=["说明：共80人。"],
                         repeat_rows=repeat)  # fmt: skip
        table = _only(read_tables(data, "pdf", ["姓名", "证件号码"]))
        assert [row["序号"] for row in table.rows] == [str(n) for n in range(1, 81)]
        assert table.rows[79]["证件号码"] == "410522********0080"
        assert table.title == "失信名单"
        assert table.footnotes == ("说明：共80人。",)


HTML = """<html><head><meta charset="gbk"><title>公告</title></head><body>
<p>关于公布失信名单的公告</p>
<table><tr><td>发布日期</td><td>2020-01-02</td></tr></table>
<table border="1">
  <caption>失信被执行人名单</caption>
  <tr><th rowspan="2">序号</th><th rowspan="2">名称</th><th colspan="2">法定代表人</th></tr>
  <tr><th>姓名</th><th>身份证号码</th></tr>
  <tr><td rowspan="2">1</td><td rowspan="2"> 甲公司 </td><td>张三</td>
      <td>410522********8191</td></tr>
  <tr><td>李四</td><td>320521********001X</td></tr>
  <tr><td>2</td><td>乙公司</td><td>王五</td><td>650104********3314</td></tr>
  <tr><td colspan="4">注：以上信息来源于法院。</td></tr>
</table></body></html>"""


def test_html_rowspan_colspan_and_two_tables() -> None:
    data = HTML.encode("gbk")
    assert sniff_kind(data, "https://x.gov.cn/list.xls", "application/vnd.ms-excel") == "html"
    table = _only(read_tables(data, "html", ["名称", "法定代表人姓名"]))
    assert table.header == ("序号", "名称", "法定代表人姓名", "法定代表人身份证号码")
    assert table.title == "失信被执行人名单"
    assert table.footnotes == ("注：以上信息来源于法院。",)
    assert table.rows == (
        {
            "序号": "1",
            "名称": "甲公司",
            "法定代表人姓名": "张三、李四",
            "法定代表人身份证号码": "410522********8191、320521********001X",
        },
        {
            "序号": "2",
            "名称": "乙公司",
            "法定代表人姓名": "王五",
            "法定代表人身份证号码": "650104********3314",
        },
    )


def test_html_without_rowspan_uses_empty_key_cells() -> None:
    html = (
        "<table><tr><td>序号</td><td>当事人名称</td><td>法定代表人</td></tr>"
        "<tr><td>1</td><td>甲公司</td><td>张三</td></tr>"
        "<tr><td></td><td></td><td>李四</td></tr></table>"
    ).encode()
    table = _only(read_tables(html, "html", ["当事人名称"]))
    assert table.rows == ({"序号": "1", "当事人名称": "甲公司", "法定代表人": "张三、李四"},)


# ----------------------------------------------------------------------------- errors


def test_truncated_xls_is_an_error(written: dict[str, bytes]) -> None:
    data = written["xls"]
    with pytest.raises(TableError, match=r"truncated or corrupt \.xls"):
        read_tables(data[: len(data) // 2], "xls", LABELS)


@pytest.mark.parametrize("kind", ["xlsx", "docx"])
def test_garbage_zip_is_an_error(kind: str) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "not an office document")
    assert sniff_kind(out.getvalue()) is None
    with pytest.raises(TableError, match=rf"not a valid \.{kind}"):
        read_tables(out.getvalue(), kind, LABELS)
    with pytest.raises(TableError, match=rf"not a valid \.{kind}"):
        read_tables(b"PK\x03\x04" + b"\x00" * 40, kind, LABELS)


def test_text_only_pdf_is_an_error() -> None:
    data = write_pdf(None, before=["关于公布失信名单的公告", "名单见附件。"])
    with pytest.raises(TableError, match=r"PDF has no table whose header holds 姓名, 证件号码"):
        read_tables(data, "pdf", ["姓名", "证件号码"])


def test_truncated_pdf_is_an_error(written: dict[str, bytes]) -> None:
    data = written["pdf"]
    for cut in (300, len(data) * 3 // 4):  # pdfminer alone would read what is left
        with pytest.raises(TableError, match=r"truncated or corrupt PDF attachment"):
            read_tables(data[:cut], "pdf", LABELS)


@pytest.mark.parametrize("kind", ["xls", "xlsx", "docx", "pdf", "html"])
def test_empty_file_is_an_error(kind: str) -> None:
    with pytest.raises(TableError, match=rf"empty \.{kind} attachment"):
        read_tables(b"", kind, LABELS)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_no_matching_header_is_an_error(written: dict[str, bytes], kind: str) -> None:
    with pytest.raises(TableError, match=r"no table with header labels \['处罚决定书文号'\]"):
        read_tables(written[kind], kind, ["处罚决定书文号"])


def test_unreadable_kinds_are_errors() -> None:
    with pytest.raises(TableError, match="image"):
        read_tables(b"\x89PNG\r\n\x1a\n", "image", LABELS)
    with pytest.raises(TableError, match="kind 'doc'"):
        read_tables(b"data", "doc", LABELS)
    with pytest.raises(TableError, match="at least one label"):
        read_tables(b"data", "html", [])


# ----------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("data", "url", "content_type", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n0000", "", "", "image"),
        (b"\xff\xd8\xff\xe0JFIF", "https://x.gov.cn/a.pdf", "", "image"),
        (b"GIF89a....", "", "", "image"),
        (b"\xef\xbb\xbf  <!DOCTYPE html><html>", "", "", "html"),
        (b"%PDF-1.4\n", "", "application/octet-stream", "pdf"),
        (b"", "https://x.gov.cn/files/2019.XLS?id=3", "application/octet-stream", "xls"),
        (b"", "https://x.gov.cn/download.do?id=3", "application/pdf; charset=binary", "pdf"),
        (
            b"",
            "",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
        ),
        (b"", "https://x.gov.cn/a.docx", "", "docx"),
        (b"", "", "image/png", "image"),
        (b"\x00\x01garbage", "https://x.gov.cn/download", "application/octet-stream", None),
    ],
)
def test_sniff_kind(data: bytes, url: str, content_type: str, kind: str | None) -> None:
    assert sniff_kind(data, url, content_type) == kind


def test_label_spanning_two_columns_over_data_is_not_a_two_row_header() -> None:
    rows: list[list[object]] = [
        ["序号", "名称", "住所", ""],
        [1, "甲公司", "北京市", "丰台区"],
        [2, "乙公司", "上海市", "浦东新区"],
    ]
    table = _only(read_tables(write_xls(rows, [(0, 1, 2, 4)]), "xls", ["名称"]))
    assert table.header == ("序号", "名称", "住所", "(第4列)")
    assert [row["住所"] + row["(第4列)"] for row in table.rows] == [
        "北京市丰台区",
        "上海市浦东新区",
    ]


def test_one_cell_row_is_an_entry_in_the_data_and_a_note_below_it() -> None:
    rows: list[list[object]] = [
        ["名称", "事由"],
        ["甲公司", ""],
        ["乙公司", "拖欠工资"],
        ["数据截至2019年12月31日", ""],
    ]
    table = _only(read_tables(write_xlsx(rows), "xlsx", ["名称"]))
    assert [row["名称"] for row in table.rows] == ["甲公司", "乙公司"]
    assert table.footnotes == ("数据截至2019年12月31日",)


def test_spreadsheet_values_as_shown() -> None:
    rows: list[list[object]] = [
        ["名称", "决定日期", "金额", "代码"],
        ["甲公司", dt.datetime(2019, 5, 6, 14, 30), 0.1, 9.1e15],
        ["乙公司", dt.datetime(2019, 5, 7), -12.0, "007"],
    ]
    for kind, write in (("xls", write_xls), ("xlsx", write_xlsx)):
        table = _only(read_tables(write(rows), kind, ["名称"]))
        assert [tuple(row.values())[1:] for row in table.rows] == [
            ("2019-05-06 14:30:00", "0.1", "9100000000000000"),
            ("2019-05-07", "-12", "007"),
        ], kind


def test_pdf_wrapped_cell_text_is_joined() -> None:
    """Long texts wrap inside their cells; the line breaks are the PDF's, not the text's."""
    header = ["序号", "名称", "事由", "认定部门", "统一社会信用代码", "法定代表人身份证件号码"]
    entry = [
        "1",
        "新疆克拉玛依独山子区万家福商贸有限公司第一分公司某某项目部",
        "拖欠11名劳动者工资12.9万元，引发群体性上访事件",
        "新疆维吾尔自治区克拉玛依市独山子区人力资源和社会保障局",
        "91650202MA77C67F57",
        "650104********3314",
    ]
    table = _only(read_tables(write_pdf([header, entry]), "pdf", ["名称"]))
    assert table.rows == (dict(zip(header, entry, strict=True)),)


def test_kind_contradicted_by_content_is_an_error(written: dict[str, bytes]) -> None:
    with pytest.raises(TableError, match=r"given as \.xls is a \.xlsx file"):
        read_tables(written["xlsx"], "xls", LABELS)
