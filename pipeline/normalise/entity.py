"""Who an entry is about: entity type, entity id and the entry's record key.

Signals are read from the most to the least reliable: the registration authority encoded in
a valid USCC, a person's ID number, the portal's own type labels, then the name's legal-form
suffix. Identifiers of persons are hashed into ids so that names and ID numbers are not
spelled out in every reference to them.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from typing import Literal

from .codes import id_kind, is_valid_uscc
from .text import fold

EntityType = Literal[
    "company", "individual_business", "person", "organization", "government", "unknown"
]
RecordKeyRule = Literal["case", "subject"]

# Type labels portals show (Xiamen 主体类型, 双公示 行政相对人类别, SPC 当事人类型).
PERSON_LABELS = frozenset({"导游", "领队", "讲解员", "自然人", "个人", "从业人员", "人员"})
INDIVIDUAL_BUSINESS_LABELS = frozenset({"个体工商户", "个体户", "个体"})
BUSINESS_LABELS = frozenset(
    {"旅行社", "星级饭店", "饭店", "酒店", "宾馆", "景区", "旅游景区", "a级景区", "企业", "法人",
     "法人及非法人组织", "在线旅游经营者", "旅游经营者"}
)  # fmt: skip

# Name endings by legal form, longest first within each class (matched on the name key).
_INDIVIDUAL_RE = re.compile(r"\(个体工商户\)$|个体工商户$|\(个体户\)$")
_COMPANY_SUFFIXES = (
    "股份有限公司", "有限责任公司", "有限公司", "股份公司", "分公司", "公司", "集团",
    "有限合伙", "普通合伙", "合伙企业", "个人独资企业", "企业", "分店", "营业部", "经营部",
    "门市部", "商行", "旅行社",
)  # fmt: skip
_GOVERNMENT_SUFFIXES = (
    "人民政府", "政府", "委员会", "管委会", "局", "厅", "人民法院", "法院", "人民检察院",
    "检察院", "街道办事处", "执法大队", "执法支队", "执法总队",
)  # fmt: skip
_ORGANIZATION_SUFFIXES = (
    "协会", "学会", "商会", "研究会", "促进会", "联合会", "基金会", "中心", "合作社", "医院",
    "学校", "大学", "学院", "幼儿园", "研究院", "研究所", "事务所", "公证处", "俱乐部", "工会",
)  # fmt: skip
# Portals mask natural persons' names: 张*, 李**, 王*武.
_MASKED_NAME_RE = re.compile(r"[\u4e00-\u9fff][*＊×]{1,3}[\u4e00-\u9fff]?")


def _from_uscc(code: str) -> EntityType:
    """GB 32100 registration authority (1st char) and category (2nd char)."""
    authority, category = code[0], code[1]
    if authority == "9":
        return {"1": "company", "2": "individual_business"}.get(category, "organization")
    if authority == "1" and category == "1":
        return "government"
    return "organization"


def _from_name(name_key: str) -> EntityType | None:
    """Legal-form suffix of the (folded) name; a branch of a company is a company."""
    if _INDIVIDUAL_RE.search(name_key):
        return "individual_business"
    if name_key.endswith(_COMPANY_SUFFIXES):
        return "company"
    if name_key.endswith(_GOVERNMENT_SUFFIXES):
        return "government"
    if name_key.endswith(_ORGANIZATION_SUFFIXES):
        return "organization"
    return None


def _label(type_label: str | None) -> str:
    return fold(type_label) if type_label else ""


def entity_type(
    name: str | None,
    *,
    uscc: str | None = None,
    uscc_raw: str | None = None,
    id_number: str | None = None,
    type_label: str | None = None,
) -> EntityType:
    """``company`` · ``individual_business`` · ``person`` · ``organization`` · ``government``
    · ``unknown`` from the code kind, the ID number, the portal's type label and the name."""
    key = fold(name) if name else ""
    label = _label(type_label)
    if _INDIVIDUAL_RE.search(key) or label in INDIVIDUAL_BUSINESS_LABELS:
        return "individual_business"
    if uscc and is_valid_uscc(uscc):
        return _from_uscc(unicodedata.normalize("NFKC", uscc).upper())
    kind = id_kind(id_number)
    if kind == "uscc" and id_number:
        return _from_uscc(unicodedata.normalize("NFKC", id_number).strip().upper())
    if kind in ("masked_id", "resident_id") or label in PERSON_LABELS:
        return "person"
    by_name = _from_name(key)
    if by_name is not None:
        return by_name
    if label in BUSINESS_LABELS:
        return "company"
    raw = unicodedata.normalize("NFKC", uscc_raw or "").strip().upper()
    if len(raw) == 18 and raw[:2] in {"91", "92"}:
        # A mistyped check digit still carries a readable authority/category prefix.
        return _from_uscc(raw)
    if _MASKED_NAME_RE.fullmatch(key):
        return "person"
    return "unknown"


def _digest(*parts: str | None) -> str:
    """Stable, unambiguous hash of the parts (unit separator between them)."""
    joined = "\x1f".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def entity_id(
    source: str, uscc: str | None, id_number_masked: str | None, name_key: str | None
) -> str:
    """The subject across lists and sources.

    ``uscc-<code>`` from a valid USCC (the same company on every portal); otherwise a hash,
    scoped to the source, of the masked ID number and name key, or of the name key alone.
    """
    if uscc and is_valid_uscc(uscc):
        return f"uscc-{unicodedata.normalize('NFKC', uscc).strip().upper()}"
    if id_number_masked:
        return f"{source}-p{_digest(source, 'id', id_number_masked, name_key)}"
    if name_key:
        return f"{source}-n{_digest(source, 'name', name_key)}"
    raise ValueError("entity_id needs a valid USCC, an ID number or a name")


def subject_key(uscc: str | None, id_number_masked: str | None, name_key: str | None) -> str:
    """The schema's subject: valid USCC, else masked ID + name key, else name key."""
    if uscc and is_valid_uscc(uscc):
        return unicodedata.normalize("NFKC", uscc).strip().upper()
    if id_number_masked:
        return f"{id_number_masked}|{name_key or ''}"
    if name_key:
        return name_key
    raise ValueError("a subject needs a valid USCC, an ID number or a name")


def record_key(
    rule: RecordKeyRule,
    *,
    case_number_key: str | None = None,
    uscc: str | None = None,
    id_number_masked: str | None = None,
    name_key: str | None = None,
    title: str | None = None,
    decided_on: str | None = None,
) -> str:
    """Stable natural key of an entry within its list (never a URL or a page position).

    ``case``: the case number key. An entry of a case list that shows no case number falls
    back to the subject + its decision date, the most stable fields left. ``subject``: the
    subject + the folded ``title`` when there is one.
    """
    if rule == "case":
        if case_number_key:
            return case_number_key
        subject = subject_key(uscc, id_number_masked, name_key)
        return f"{subject}|{decided_on or ''}"
    if rule == "subject":
        subject = subject_key(uscc, id_number_masked, name_key)
        return f"{subject}|{fold(title)}" if title else subject
    raise ValueError(f"unknown record_key rule: {rule!r}")
