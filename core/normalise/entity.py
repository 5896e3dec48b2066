"""Who an entry is about: entity type, entity id and the entry's record key.

Signals are read from the most to the least reliable: the registration authority encoded in
a valid USCC, a person's ID number, the name's organisation form, the portal's own type
labels. Identifiers of persons are hashed into ids so that names and ID numbers are not
spelled out in every reference to them.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Literal

from .codes import classify_code, compact, is_valid_uscc
from .names import form_entity_type
from .text import fold

EntityType = Literal[
    "company", "individual_business", "person", "organization", "government", "unknown"
]
RecordKeyRule = Literal["case", "case_subject", "subject"]

# Type labels portals show (Xiamen 主体类型, 双公示 行政相对人类别, SPC 当事人类型, Credit
# China 企业类型), compared folded. Exact labels first, then the words that decide a longer
# label (有限责任公司(自然人独资) is a company, not a person).
PERSON_LABELS = frozenset(
    {"导游", "领队", "讲解员", "自然人", "个人", "从业人员", "人员", "公民", "失信黑名单-自然人"}
)
INDIVIDUAL_BUSINESS_LABELS = frozenset({"个体工商户", "个体户", "个体"})
BUSINESS_LABELS = frozenset(
    {"旅行社", "星级饭店", "饭店", "酒店", "宾馆", "景区", "旅游景区", "a级景区", "企业", "法人",
     "法人及非法人组织", "在线旅游经营者", "旅游经营者", "失信黑名单-法人"}
)  # fmt: skip
ORGANIZATION_LABELS = frozenset(
    {"事业单位", "社会组织", "社会团体", "民办非企业单位", "基金会", "农民专业合作社"}
)
GOVERNMENT_LABELS = frozenset({"机关", "机关法人", "行政机关"})
_COMPANY_LABEL_RE = re.compile(r"公司|企业|合伙|独资")

# Portals mask natural persons' names: 张*, 李**, 王*武.
_MASKED_NAME_RE = re.compile(r"[\u4e00-\u9fff][*＊×]{1,3}[\u4e00-\u9fff]?")

# GB 32100 registration authority (1st character) and category (2nd) → type.
_USCC_TYPES: dict[str, EntityType] = {
    "11": "government",  # 机构编制: 机关
    "91": "company",  # 工商: 企业
    "92": "individual_business",  # 工商: 个体工商户
}


def _from_uscc(code: str) -> EntityType:
    """Type from a USCC's first two characters; every other authority is an organisation
    (事业单位, 社会组织, 律所, 农民专业合作社 …)."""
    return _USCC_TYPES.get(code[:2], "organization")


def label_type(type_label: str | None) -> EntityType | None:
    """What a portal's own type label says, if it says anything readable."""
    if not type_label:
        return None
    label = fold(type_label)
    if label in INDIVIDUAL_BUSINESS_LABELS or "个体" in label:
        return "individual_business"
    if _COMPANY_LABEL_RE.search(label) or label in BUSINESS_LABELS:
        return "company"
    if label in PERSON_LABELS:
        return "person"
    if label in GOVERNMENT_LABELS:
        return "government"
    if label in ORGANIZATION_LABELS:
        return "organization"
    return None


def entity_type(
    name: str | None,
    *,
    uscc: str | None = None,
    uscc_raw: str | None = None,
    id_number: str | None = None,
    type_label: str | None = None,
) -> EntityType:
    """The subject's type (see ``_entity_type``), memoised: a subject's signals repeat in
    each of its entries."""
    return _entity_type(name, uscc, uscc_raw, id_number, type_label)


@lru_cache(maxsize=65536)
def _entity_type(
    name: str | None,
    uscc: str | None,
    uscc_raw: str | None,
    id_number: str | None,
    type_label: str | None,
) -> EntityType:
    """``company`` · ``individual_business`` · ``person`` · ``organization`` · ``government``
    · ``unknown``, from the most to the least reliable signal.

    1. an individual-business marker (name ending 个体工商户, or the portal's label);
    2. a valid USCC's authority and category;
    3. a person's ID number (masked or not), or a person label;
    4. the name's organisation form (有限公司, 分公司, 合作社, 局 …);
    5. the portal's label for organisations (旅行社, 法人及非法人组织 …);
    6. a failing USCC's readable 91/92 prefix;
    7. a masked person name (张*).
    """
    key = fold(name) if name else ""
    by_form = form_entity_type(key) if key else None
    by_label = label_type(type_label)
    if by_form == "individual_business" or by_label == "individual_business":
        return "individual_business"
    if uscc and is_valid_uscc(uscc):
        return _from_uscc(compact(uscc))
    kind = classify_code(id_number)
    if kind == "uscc" and id_number and is_valid_uscc(id_number):
        return _from_uscc(compact(id_number))
    if kind in ("masked_id", "resident_id") or by_label == "person":
        return "person"
    if by_form is not None:
        return by_form  # type: ignore[return-value]
    if by_label is not None:
        return by_label
    raw = compact(uscc_raw or "")
    if len(raw) == 18 and raw[:2] in ("91", "92"):
        # A mistyped check digit still carries a readable authority/category prefix.
        return _from_uscc(raw)
    if _MASKED_NAME_RE.fullmatch(key):
        return "person"
    return "unknown"


def _digest(*parts: str | None) -> str:
    """Stable, unambiguous hash of the parts (unit separator between them)."""
    joined = "\x1f".join(p or "" for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


@lru_cache(maxsize=65536)
def entity_id(
    source: str, uscc: str | None, id_number_masked: str | None, name_key: str | None
) -> str:
    """The subject across lists and sources.

    ``uscc-<code>`` from a valid USCC (the same company on every portal); otherwise a hash,
    scoped to the source, of the masked ID number and name key, or of the name key alone.
    """
    if uscc and is_valid_uscc(uscc):
        return f"uscc-{compact(uscc)}"
    if id_number_masked:
        return f"{source}-p{_digest(source, 'id', id_number_masked, name_key)}"
    if name_key:
        return f"{source}-n{_digest(source, 'name', name_key)}"
    raise ValueError("entity_id needs a valid USCC, an ID number or a name")


def subject_key(uscc: str | None, id_number_masked: str | None, name_key: str | None) -> str:
    """The schema's subject: valid USCC, else masked ID + name key, else name key."""
    if uscc and is_valid_uscc(uscc):
        return compact(uscc)
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
    back to the subject + its decision date, the most stable fields left. ``case_subject``:
    the case number key + the subject, for sources whose one decision names several
    parties. ``subject``: the subject + the folded ``title`` when there is one.
    """
    if rule == "case" and case_number_key:
        return case_number_key
    if rule in ("case", "case_subject"):
        subject = subject_key(uscc, id_number_masked, name_key)
        if not case_number_key:
            return f"{subject}|{decided_on or ''}"
        return f"{case_number_key}|{subject}"
    if rule == "subject":
        subject = subject_key(uscc, id_number_masked, name_key)
        return f"{subject}|{fold(title)}" if title else subject
    raise ValueError(f"unknown record_key rule: {rule!r}")
