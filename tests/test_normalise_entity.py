"""Entity type, entity id, record key, labels and reason categories."""

from __future__ import annotations

import pytest

from core.normalise import (
    VOCABULARY_VERSION,
    entity_id,
    entity_type,
    field_for_label,
    name_key,
    reason_category,
    record_key,
)
from core.normalise.labels import lookup
from core.normalise.vocabularies import categories


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"name": "厦门嘉禾酒店有限公司", "uscc": "91350213MA028DE74Q"}, "company"),
        ({"name": "厦门鹭江观光旅游股份有限公司湖里分公司"}, "company"),
        ({"name": "厦门椰风观光旅游有限公司", "uscc_raw": "91350212MA7L9F0M90"}, "company"),
        ({"name": "思明区老王小吃店", "uscc": "92340602MA2PBQAH7E"}, "individual_business"),
        ({"name": "思明区老王小吃店（个体工商户）"}, "individual_business"),
        ({"name": "老王", "type_label": "个体工商户"}, "individual_business"),
        ({"name": "某某单位", "uscc": "121200004013590816"}, "organization"),
        ({"name": "许家豪", "id_number": "350212********0728", "type_label": "导游"}, "person"),
        ({"name": "许家豪", "id_number": "350212********0728"}, "person"),
        ({"name": "许家豪", "type_label": "导游"}, "person"),
        ({"name": "张*"}, "person"),
        ({"name": "厦门市文化和旅游局"}, "government"),
        ({"name": "厦门市人民政府"}, "government"),
        ({"name": "厦门市旅游协会"}, "organization"),
        ({"name": "厦门旅游集散服务中心"}, "organization"),
        ({"name": "同安区莲花镇茶叶专业合作社"}, "organization"),
        ({"name": "鹭岛之星", "type_label": "旅行社"}, "company"),
        ({"name": "鹭岛之星", "type_label": "星级饭店"}, "company"),
        ({"name": "许家豪"}, "unknown"),
        ({"name": None}, "unknown"),
    ],
)
def test_entity_type(kwargs: dict, expected: str) -> None:
    name = kwargs.pop("name")
    assert entity_type(name, **kwargs) == expected


def test_entity_id_from_valid_uscc() -> None:
    key = name_key("厦门嘉禾酒店有限公司")
    assert entity_id("xmtravel", "91350213MA028DE74Q", None, key) == "uscc-91350213MA028DE74Q"


def test_entity_id_never_spells_out_persons() -> None:
    eid = entity_id("xmtravel", None, "350212********0728", "许家豪")
    assert "许家豪" not in eid and "0728" not in eid and "350212" not in eid
    assert eid == entity_id("xmtravel", None, "350212********0728", "许家豪")  # stable
    assert eid != entity_id("other", None, "350212********0728", "许家豪")  # source-scoped
    assert eid != entity_id("xmtravel", None, "350212********1485", "许家豪")
    assert eid != entity_id("xmtravel", None, None, "许家豪")


def test_entity_id_invalid_uscc_falls_back_to_name() -> None:
    eid = entity_id("xmtravel", "91350212MA7L9F0M90", None, "厦门椰风观光旅游有限公司")
    assert eid == entity_id("xmtravel", None, None, "厦门椰风观光旅游有限公司")
    assert not eid.startswith("uscc-")


def test_entity_id_needs_something() -> None:
    with pytest.raises(ValueError):
        entity_id("xmtravel", None, None, None)


def test_record_key_case_rule() -> None:
    assert record_key("case", case_number_key="厦文旅罚(2025)71号") == "厦文旅罚(2025)71号"


def test_record_key_subject_rule() -> None:
    title = "全国旅游系统先进集体（2024年度）"
    assert (
        record_key("subject", uscc="91350213MA028DE74Q", name_key="x", title=title)
        == "91350213MA028DE74Q|全国旅游系统先进集体(2024年度)"
    )
    assert (
        record_key("subject", id_number_masked="350212********0728", name_key="许家豪")
        == "350212********0728|许家豪"
    )
    assert record_key("subject", name_key="厦门某某") == "厦门某某"
    # an invalid code is not a subject: the name is
    assert record_key("subject", uscc="91350212MA7L9F0M90", name_key="椰风") == "椰风"


def test_record_key_case_without_number_uses_subject_and_date() -> None:
    key = record_key("case", name_key="厦门某某", decided_on="2025-01-02")
    assert key == "厦门某某|2025-01-02"


def test_record_key_unknown_rule() -> None:
    with pytest.raises(ValueError):
        record_key("position", name_key="x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("label", "target"),
    [
        ("主体名称", "entity_name"),
        ("主体名称：", "entity_name"),
        ("名称:", "entity_name"),
        ("姓名", "entity_name"),
        ("统一社会信用代码", "uscc"),
        ("证件号码", "id_number_masked"),
        ("法定代表人", "legal_representative"),
        ("负责人", "legal_representative"),
        ("许可证编号", "registration_no"),
        ("导游证号", "registration_no"),
        ("案件编号", "case_number"),
        ("行政处罚决定书文号", "case_number"),
        ("违法事由", "reason"),
        ("违法行为类型", "reason"),
        ("处罚依据", "basis"),
        ("处罚结果", "measure"),
        ("处罚内容", "measure"),
        ("处罚机关", "authority"),
        ("认定部门", "authority"),
        ("处罚日期", "decided_on"),
        ("处罚决定日期", "decided_on"),
        ("认定日期", "decided_on"),
        ("公示截止日期", "valid_until"),
        ("公示截止期", "valid_until"),
        ("有效期至", "valid_until"),
        ("荣誉名称", "title"),
        ("行政相对人名称", "entity_name"),
        ("行政相对人代码_1（统一社会信用代码）", "uscc"),
        ("罚款金额（万元）", "_fine_wan"),
        ("主体类型", "_type_label"),
        ("联系电话", None),
        ("法定代表人证件号码", None),  # never the subject's ID
        ("序号", None),
    ],
)
def test_labels(label: str, target: str | None) -> None:
    assert field_for_label(label) == target


def test_label_overrides() -> None:
    assert field_for_label("名称", {"名称": "title"}) == "title"
    assert lookup("序号")[0] == "ignore"
    with pytest.raises(ValueError):
        field_for_label("名称", {"名称": "no_such_field"})


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("以不合理的低价组织旅游活动，诱骗旅游者", "low_price_tour"),
        ("指定具体购物场所，安排另行付费旅游项目", "forced_shopping"),
        ("导游诱导、欺骗、强迫或者变相强迫旅游者购物", "forced_shopping"),
        ("导游擅自变更旅游行程或者拒绝履行旅游合同", "contract_breach"),
        ("擅自变更旅游行程安排", "contract_breach"),
        ("委派未取得导游证的人员提供导游服务", "unlicensed_guide"),
        ("未取得旅行社业务经营许可开展旅行社业务", "unlicensed_operation"),
        ("星级饭店未按规定公示服务项目及收费标准", "price_disclosure"),
        ("未与旅游者签订书面旅游合同", "no_written_contract"),
        ("未按规定投保旅行社责任保险", "insurance"),
        ("擅自變更旅遊行程", "contract_breach"),  # traditional script
        ("在景区内乱扔垃圾", "unclassified"),
    ],
)
def test_reason_category_tourism(reason: str, category: str) -> None:
    assert reason_category("tourism", reason) == category
    assert category in categories("tourism")


def test_reason_category_none_cases() -> None:
    assert reason_category("tourism", None) is None
    assert reason_category("tourism", "—") is None
    assert reason_category(None, "擅自变更旅游行程") is None
    assert reason_category("no_such_domain", "擅自变更旅游行程") is None
    assert VOCABULARY_VERSION
