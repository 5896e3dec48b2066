"""normalise_entry and content_hash on hand-built entries mirroring the Xiamen pages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from core.items import PageRef, RawEntry
from core.normalise import NormaliseError, content_hash, normalise_entry

BASE = "http://credit.xmtravel.gov.cn:10345/credit_tour/"
TRUTH_DAY1 = Path(__file__).resolve().parents[1] / "fixtures" / "xmtravel" / "truth-day1.json"

SCHEMA_RECORD_FIELDS = {
    "source", "list", "list_kind", "record_key", "entity_id", "entity_name", "entity_name_key",
    "entity_type", "uscc", "uscc_raw", "uscc_valid", "id_number_masked", "legal_representative",
    "registration_no", "region_code", "case_number", "case_number_key", "title", "reason",
    "reason_category", "basis", "measure", "penalty_types", "fine_yuan", "confiscated_yuan",
    "authority", "decided_on", "published_on", "valid_until", "source_url", "raw_sha256",
    "extra",
}  # fmt: skip

# Subject pages (subject/info.html) as the portal shows them.
SUBJECT_JIAHE = {
    "名称": "厦门嘉禾酒店有限公司",
    "主体类型": "星级饭店",
    "统一社会信用代码": "91350213MA028DE74Q",
    "许可证编号": "—",
    "法定代表人": "林晓岚",
    "联系电话": "0592-3478523",
    "地址": "厦门市翔安区嘉禾路145号",
}
SUBJECT_XU = {
    "姓名": "许家豪",
    "主体类型": "导游",
    "证件号码": "350212********0728",
    "导游证号": "D-3502-943924",
    "所属单位": "—",
}
SUBJECT_YEFENG = {
    "名称": "厦门椰风观光旅游有限公司",
    "主体类型": "旅行社",
    "统一社会信用代码": "91350212MA7L9F0M90",
    "许可证编号": "L-FJ-CJ53318",
    "法定代表人": "黄文斌",
    "联系电话": "0592-7492874",
    "地址": "厦门市同安区椰风路143号",
}
SUBJECT_YE = {
    "姓名": "叶志鹏",
    "主体类型": "导游",
    "证件号码": "350203********6834",
    "导游证号": "D-3502-990107",
    "所属单位": "—",
}
SUBJECT_XIANGLU = {
    "名称": "厦门翔鹭观光旅游有限公司",
    "主体类型": "旅行社",
    "统一社会信用代码": "91350205MA7N301E8A",
    "许可证编号": "L-FJ-CJ24693",
    "法定代表人": "叶丽娟",
    "联系电话": "0592-7721680",
    "地址": "厦门市海沧区翔鹭路287号",
}


def _entry(
    list_id: str,
    detail_id: str,
    subject_id: str,
    fields: dict[str, str],
    subject: dict[str, str],
    row: dict[str, str],
) -> RawEntry:
    page = "xygs" if list_id == "xmtravel.warning" else "lhxx"
    detail_url = f"{BASE}publicity/{page}-detail.html?id={detail_id}"
    return RawEntry(
        source="xmtravel",
        list=list_id,
        source_url=detail_url,
        raw_sha256="d" * 64,
        fields=fields,
        subject=subject,
        row=row,
        pages=[
            PageRef(f"{BASE}publicity/{page}-main.html", "a" * 64, "list"),
            PageRef(detail_url, "d" * 64, "detail"),
            PageRef(f"{BASE}subject/info.html?id={subject_id}", "b" * 64, "subject"),
        ],
    )


COMPANY_WARNING = _entry(
    "xmtravel.warning",
    "fb3b29f6730864d490ec1f53510e92d3",
    "S00016",
    {
        "主体名称": "厦门嘉禾酒店有限公司",
        "主体类型": "星级饭店",
        "统一社会信用代码": "91350213MA028DE74Q",
        "法定代表人": "林晓岚",
        "案件编号": "厦文旅执法罚字（2025）第65号",
        "违法事由": "指定具体购物场所，安排另行付费旅游项目",
        "处罚依据": "《中华人民共和国旅游法》第九十八条",
        "处罚结果": "警告，并处罚款人民币1万元",
        "处罚日期": "2025年7月4日",
        "处罚机关": "厦门市文化和旅游局",
        "公示截止日期": "2026-07-03",
    },
    SUBJECT_JIAHE,
    {
        "序号": "1",
        "主体名称": "厦门嘉禾酒店有限公司",
        "主体类型": "星级饭店",
        "案件编号": "厦文旅执法罚字（2025）第65号",
        "处罚日期": "2025年7月4日",
        "操作": "查看",
    },
)
PERSON_WARNING = _entry(
    "xmtravel.warning",
    "db02ad25c6e92b3cf5ae0afe108c475f",
    "S00020",
    {
        "主体名称": "许家豪",
        "主体类型": "导游",
        "证件号码": "350212********0728",
        "导游证号": "D-3502-943924",
        "案件编号": "厦文旅执法罚字（2025）第194号",
        "违法事由": "导游擅自变更旅游行程或者拒绝履行旅游合同",
        "处罚依据": "《中华人民共和国旅游法》第一百条",
        "处罚结果": "罚款人民币壹万元整",
        "处罚日期": "2025.4.25",
        "处罚机关": "厦门市文化和旅游局",
        "公示截止日期": "2028-04-23",
    },
    SUBJECT_XU,
    {"序号": "2", "主体名称": "许家豪", "主体类型": "导游", "处罚日期": "2025.4.25"},
)
INVALID_USCC_WARNING = _entry(
    "xmtravel.warning",
    "03a47e86aa77000a5558180b56700c14",
    "S00004",
    {
        "主体名称": "厦门椰风观光旅游有限公司",
        "主体类型": "旅行社",
        "统一社会信用代码": "91350212MA7L9F0M90",
        "法定代表人": "黄文斌",
        "案件编号": "厦文旅罚[2025]23号",
        "违法事由": "委派未取得导游证的人员提供导游服务",
        "处罚依据": "《中华人民共和国旅游法》第九十六条",
        "处罚结果": "罚款人民币伍仟元整",
        "处罚日期": "2025/01/11",
        "处罚机关": "厦门市文化和旅游局",
        "公示截止日期": "2026-01-10",
    },
    SUBJECT_YEFENG,
    {},
)
CONFISCATION_WARNING = _entry(
    "xmtravel.warning",
    "1e711eed6a4ea1fa30008bf27aea93f4",
    "S00022",
    {
        "主体名称": "叶志鹏",
        "主体类型": "导游",
        "证件号码": "350203********6834",
        "导游证号": "D-3502-990107",
        "案件编号": "厦文旅罚[2024]84号",
        "违法事由": "星级饭店未按规定公示服务项目及收费标准",
        "处罚依据": "《旅游饭店星级的划分与评定》",
        "处罚结果": "没收违法所得人民币3200元，并处罚款30000元",
        "处罚日期": "2024年7月19日",
        "处罚机关": "厦门市文化和旅游局",
        "公示截止日期": "2027-07-18",
    },
    SUBJECT_YE,
    {},
)
NO_END_WARNING = _entry(
    "xmtravel.warning",
    "d180b29511bed0e00b1bd430805b40ae",
    "S00008",
    {
        "主体名称": "厦门翔鹭观光旅游有限公司",
        "主体类型": "旅行社",
        "统一社会信用代码": "91350205MA7N301E8A",
        "法定代表人": "叶丽娟",
        "案件编号": "厦文旅执法罚字（2025）第30号",
        "违法事由": "以不合理的低价组织旅游活动，诱骗旅游者",
        "处罚依据": "《中华人民共和国旅游法》第九十八条",
        "处罚结果": "警告",
        "处罚日期": "2025.3.10",
        "处罚机关": "厦门市文化和旅游局",
        "公示截止日期": "—",
    },
    SUBJECT_XIANGLU,
    {},
)
GOOD_PERSON_LONG_TERM = _entry(
    "xmtravel.good",
    "ab8b04272e099163f830d4359c7a0fc3",
    "S00020",
    {
        "主体名称": "许家豪",
        "主体类型": "导游",
        "证件号码": "350212********0728",
        "导游证号": "D-3502-943924",
        "荣誉名称": "厦门市金牌导游（2025年度）",
        "认定部门": "厦门市文化和旅游局",
        "认定日期": "2025.4.10",
        "有效期至": "长期",
    },
    SUBJECT_XU,
    {"序号": "1", "主体名称": "许家豪", "荣誉名称": "厦门市金牌导游（2025年度）"},
)
GOOD_COMPANY_LONG_TERM = _entry(
    "xmtravel.good",
    "2dd9c8adc6114e763f4d607b8d9d7f85",
    "S00016",
    {
        "主体名称": "厦门嘉禾酒店有限公司",
        "主体类型": "星级饭店",
        "统一社会信用代码": "91350213MA028DE74Q",
        "法定代表人": "林晓岚",
        "荣誉名称": "全国旅游系统先进集体（2024年度）",
        "认定部门": "厦门市文化和旅游局",
        "认定日期": "2024-08-17",
        "有效期至": "长期",
    },
    SUBJECT_JIAHE,
    {},
)


def _normalise(entry: RawEntry, **kwargs: Any) -> dict[str, Any]:
    warning = entry.list == "xmtravel.warning"
    kwargs.setdefault("list_kind", "warning" if warning else "good")
    kwargs.setdefault("record_key_rule", "case" if warning else "subject")
    kwargs.setdefault("domain", "tourism")
    return normalise_entry(entry, **kwargs)


def _truth(list_id: str, case_number: str | None, title: str | None) -> dict[str, Any]:
    rows = json.loads(TRUTH_DAY1.read_text(encoding="utf-8"))
    (row,) = [
        r
        for r in rows
        if r["list"] == list_id and r["case_number"] == case_number and r["title"] == title
    ]
    return row


@pytest.mark.parametrize(
    ("entry", "case_number", "title"),
    [
        (COMPANY_WARNING, "厦文旅执法罚字（2025）第65号", None),
        (PERSON_WARNING, "厦文旅执法罚字（2025）第194号", None),
        (INVALID_USCC_WARNING, "厦文旅罚[2025]23号", None),
        (CONFISCATION_WARNING, "厦文旅罚[2024]84号", None),
        (NO_END_WARNING, "厦文旅执法罚字（2025）第30号", None),
        (GOOD_PERSON_LONG_TERM, None, "厦门市金牌导游（2025年度）"),
        (GOOD_COMPANY_LONG_TERM, None, "全国旅游系统先进集体（2024年度）"),
    ],
)
def test_matches_truth_day1(entry: RawEntry, case_number: str | None, title: str | None) -> None:
    truth = _truth(entry.list, case_number, title)
    record = _normalise(entry)
    assert {k: record[k] for k in truth} == truth


def test_record_shape() -> None:
    record = _normalise(COMPANY_WARNING)
    assert set(record) == SCHEMA_RECORD_FIELDS
    assert not {"status", "first_seen", "last_seen"} & set(record)
    assert "" not in record.values()
    json.dumps(record, ensure_ascii=False)  # JSON-ready


def test_company_warning_details() -> None:
    record = _normalise(COMPANY_WARNING)
    assert record["source"] == "xmtravel"
    assert record["record_key"] == "厦文旅执法罚字(2025)第65号"
    assert record["case_number_key"] == "厦文旅执法罚字(2025)第65号"
    assert record["entity_id"] == "uscc-91350213MA028DE74Q"
    assert record["entity_name_key"] == "厦门嘉禾酒店有限公司"
    assert record["legal_representative"] == "林晓岚"
    assert record["registration_no"] is None  # the subject page shows —
    assert record["region_code"] == "350213"
    assert record["reason_category"] == "forced_shopping"
    assert record["source_url"] == COMPANY_WARNING.source_url
    assert record["raw_sha256"] == "d" * 64


def test_extra_keeps_unmapped_labels_type_label_and_pages() -> None:
    extra = _normalise(COMPANY_WARNING)["extra"]
    assert extra["主体类型"] == "星级饭店"
    assert extra["联系电话"] == "0592-3478523"
    assert extra["地址"] == "厦门市翔安区嘉禾路145号"
    assert "序号" not in extra and "操作" not in extra  # page furniture, not content
    assert "名称" not in extra and "主体名称" not in extra  # mapped to entity_name
    assert extra["pages"] == [
        {"url": f"{BASE}publicity/xygs-main.html", "sha256": "a" * 64, "role": "list"},
        {"url": COMPANY_WARNING.source_url, "sha256": "d" * 64, "role": "detail"},
        {"url": f"{BASE}subject/info.html?id=S00016", "sha256": "b" * 64, "role": "subject"},
    ]


def test_person_entry_keeps_masked_id_byte_exact() -> None:
    record = _normalise(PERSON_WARNING)
    assert record["id_number_masked"] == "350212********0728"
    assert record["registration_no"] == "D-3502-943924"
    assert record["region_code"] == "350212"
    assert "许家豪" not in record["entity_id"] and "0728" not in record["entity_id"]
    # the same person has the same entity id on another list
    assert record["entity_id"] == _normalise(GOOD_PERSON_LONG_TERM)["entity_id"]


def test_good_list_subject_record_key_and_long_term() -> None:
    record = _normalise(GOOD_COMPANY_LONG_TERM)
    assert record["record_key"] == "91350213MA028DE74Q|全国旅游系统先进集体(2024年度)"
    assert record["valid_until"] is None
    assert record["extra"]["有效期至"] == "长期"  # open-ended, as published
    assert record["penalty_types"] == []


def test_field_precedence_detail_over_subject_over_row() -> None:
    entry = RawEntry(
        source="xmtravel",
        list="xmtravel.warning",
        source_url="u",
        raw_sha256="s",
        fields={"主体名称": "甲公司", "法定代表人": "—", "案件编号": "厦文旅罚[2025]1号"},
        subject={"名称": "乙公司", "法定代表人": "王五", "地址": "厦门"},
        row={"主体名称": "丙公司", "法定代表人": "赵六", "处罚日期": "2025-01-02", "备注": "x"},
    )
    record = _normalise(entry)
    assert record["entity_name"] == "甲公司"
    assert record["legal_representative"] == "王五"  # detail shows —, subject fills
    assert record["decided_on"] == "2025-01-02"  # only the row has it
    assert record["extra"]["备注"] == "x"
    assert record["extra"]["地址"] == "厦门"


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        ("<script>alert(1)</script>", "<script>alert(1)</script>"),
        ("&lt;script&gt;alert(1)&lt;/script&gt;", "<script>alert(1)</script>"),
        ("**x**", "**x**"),
        ("'; DROP TABLE x;--", "'; DROP TABLE x;--"),
        ("\u3000 [x](http://evil.example) \xa0", "[x](http://evil.example)"),
    ],
)
def test_hostile_names_come_out_verbatim(published: str, expected: str) -> None:
    entry = RawEntry(
        source="xmtravel",
        list="xmtravel.warning",
        source_url="u",
        raw_sha256="s",
        fields={"主体名称": published, "案件编号": "厦文旅罚[2025]9号"},
    )
    assert _normalise(entry)["entity_name"] == expected


def test_uscc_published_in_id_column_is_a_uscc() -> None:
    entry = RawEntry(
        source="x",
        list="x.penalty",
        source_url="u",
        raw_sha256="s",
        fields={"当事人名称": "厦门嘉禾酒店有限公司", "证件号码": "91350213MA028DE74Q"},
    )
    record = _normalise(entry, list_kind="penalty", record_key_rule="subject")
    assert record["uscc"] == "91350213MA028DE74Q"
    assert record["id_number_masked"] is None
    assert record["entity_type"] == "company"


def test_filler_uscc_entry() -> None:
    entry = RawEntry(
        source="xmtravel",
        list="xmtravel.warning",
        source_url="u",
        raw_sha256="s",
        fields={"主体名称": "厦门帆影观光旅游有限公司", "统一社会信用代码": "00000000000000000X"},
    )
    record = _normalise(entry, record_key_rule="subject")
    assert (record["uscc"], record["uscc_raw"], record["uscc_valid"]) == (
        None,
        "00000000000000000X",
        False,
    )
    assert record["record_key"] == "厦门帆影观光旅游有限公司"
    assert not record["entity_id"].startswith("uscc-")
    assert record["region_code"] is None


def test_wan_column_wins_over_measure_and_is_flagged() -> None:
    entry = RawEntry(
        source="x",
        list="x.penalty",
        source_url="u",
        raw_sha256="s",
        fields={
            "行政相对人名称": "厦门嘉禾酒店有限公司",
            "行政处罚决定书文号": "厦文旅罚〔2025〕1号",
            "处罚内容": "罚款人民币伍仟元整",
            "罚款金额（万元）": "0.6",
            "处罚决定日期": "2025/01/02",
        },
    )
    record = _normalise(entry, list_kind="penalty")
    assert record["fine_yuan"] == 6000
    assert record["extra"]["罚款金额（万元）"] == "0.6"
    assert record["extra"]["amount_mismatch"] == {"fine_yuan": {"column": 6000, "measure": 5000}}


def test_wan_column_agreeing_is_not_flagged() -> None:
    entry = RawEntry(
        source="x",
        list="x.penalty",
        source_url="u",
        raw_sha256="s",
        fields={
            "行政相对人名称": "某公司",
            "行政处罚决定书文号": "某罚〔2025〕1号",
            "处罚内容": "罚款人民币伍仟元整",
            "罚款金额（万元）": "0.500000",
        },
    )
    record = _normalise(entry, list_kind="penalty")
    assert record["fine_yuan"] == 5000
    assert "amount_mismatch" not in record["extra"]


def test_penalty_category_column_when_measure_is_silent() -> None:
    entry = RawEntry(
        source="x",
        list="x.penalty",
        source_url="u",
        raw_sha256="s",
        fields={"行政相对人名称": "某公司", "行政处罚决定书文号": "1", "处罚类别": "警告;罚款"},
    )
    assert _normalise(entry, list_kind="penalty")["penalty_types"] == ["warning", "fine"]


def test_unreadable_date_is_none_and_kept_in_extra() -> None:
    entry = RawEntry(
        source="x",
        list="x.warning",
        source_url="u",
        raw_sha256="s",
        fields={"主体名称": "某公司", "案件编号": "1", "处罚日期": "2025年某月"},
    )
    record = _normalise(entry)
    assert record["decided_on"] is None
    assert record["extra"]["处罚日期"] == "2025年某月"


def test_label_overrides_apply() -> None:
    entry = RawEntry(
        source="x",
        list="x.redlist",
        source_url="u",
        raw_sha256="s",
        fields={"单位名称": "某公司", "名称": "守合同重信用企业"},
    )
    record = _normalise(
        entry, list_kind="redlist", record_key_rule="subject", label_overrides={"名称": "title"}
    )
    assert record["entity_name"] == "某公司"
    assert record["title"] == "守合同重信用企业"


def test_entry_without_name_is_an_error() -> None:
    entry = RawEntry(source="x", list="x.warning", source_url="u", raw_sha256="s")
    with pytest.raises(NormaliseError):
        _normalise(entry)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        _normalise(COMPANY_WARNING, list_kind="grey")
    with pytest.raises(ValueError):
        _normalise(COMPANY_WARNING, record_key_rule="url")


def test_content_hash_ignores_provenance_and_storage_fields() -> None:
    record = _normalise(COMPANY_WARNING)
    other = dict(record)
    other["source_url"] = "http://elsewhere"
    other["raw_sha256"] = "e" * 64
    other["extra"] = {**record["extra"], "pages": [{"url": "u", "sha256": "c", "role": "list"}]}
    other.update(status="expired", first_seen="2025-01-01T00:00:00+00:00")
    assert content_hash(other) == content_hash(record)
    assert len(content_hash(record)) == 64


def test_content_hash_sees_content_changes() -> None:
    record = _normalise(COMPANY_WARNING)
    changed = RawEntry(
        **{
            **COMPANY_WARNING.__dict__,
            "fields": {**COMPANY_WARNING.fields, "处罚结果": "罚款人民币伍万元整"},
        }
    )
    changed_record = _normalise(changed)
    assert changed_record["fine_yuan"] == 50000
    assert content_hash(changed_record) != content_hash(record)
    assert changed_record["record_key"] == record["record_key"]


def test_content_hash_is_stable_across_key_order() -> None:
    record = _normalise(PERSON_WARNING)
    reordered = dict(reversed(list(record.items())))
    assert content_hash(reordered) == content_hash(record)
