"""Portal labels → schema fields: the one field map every spider shares.

Spiders hand over values under the portal's own labels (Chinese labels, JSON keys such as
``iname``/``caseCode``/``cardNum``, Credit China's ``cf_*``/``xk_*`` codes or the labels its
``sencesMap`` gives them, see ``senses_values``); values are placed by label, never by
position. Labels are matched after folding (NFKC, no whitespace, no trailing ``：``/``:``,
ASCII lower-cased), so ``罚款金额（万元）：`` and ``罚款金额(万元)`` are the same label. Where a
page shows several labels for one field, the one listed first below wins and the others are
kept in ``extra``. A source's registry entry may override single labels (its ``labels:``
block): a label only one portal uses goes there, not here.

Besides schema fields, a label may map to a helper target starting with ``_`` (read by the
normaliser and also kept in ``extra``: a type label, a 万元 amount column, an organisation code,
an address for the region, a filing date, or ``_code`` for columns holding several kinds of
identifier), to ``extra`` (keep only) or to ``ignore`` (page furniture such as 序号, and
mirror bookkeeping that changes without the entry changing).
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

SCHEMA_TARGETS = (
    "entity_name",
    "uscc",
    "id_number_masked",
    "legal_representative",
    "registration_no",
    "case_number",
    "title",
    "reason",
    "basis",
    "measure",
    "authority",
    "decided_on",
    "published_on",
    "valid_until",
)
HELPER_TARGETS = (
    "_type_label",
    "_penalty_category",
    "_fine_wan",
    "_fine_yuan",
    "_fine_amount",
    "_confiscated_wan",
    "_confiscated_yuan",
    "_confiscated_amount",
    "_code",
    "_org_code",
    "_address",
    "_filed_on",
    "_removed_on",
    "_removal_reason",
    "_removal_authority",
)
CONTROL_TARGETS = ("extra", "ignore")
TARGETS = frozenset(SCHEMA_TARGETS + HELPER_TARGETS + CONTROL_TARGETS)

# target → labels, highest priority first. Sources: the Xiamen travel portal; the 双公示
# standard in both generations (old: 处罚事由/处罚结果/行政相对人代码_2 = 组织机构代码; new:
# 违法行为类型/处罚内容/行政相对人代码_2 = 工商注册号) with Credit China's field codes
# (cf_*, xk_*) and the Chinese labels its ``sencesMap`` gives them; Credit China's person,
# tax and subject tables (xm, tmzjhm, nsrmc, tyshxydm …) and its legacy API; the SPC
# lists (iname, caseCode, cardNum … and the zhixing keys pname, partyCardNum …); GSXT's
# 严重违法失信 rows; the MCT and MOHRSS announcement tables.
#
# ``_code`` labels hold more than one kind of identifier (cardNum: a masked ID or an
# organisation code; the bare 行政相对人代码_2/_3, whose meaning swapped between the two
# 双公示 generations): the value's check digits and shape decide its field, never the
# label's position.
_LABELS: dict[str, tuple[str, ...]] = {
    "entity_name": (
        "主体名称", "名称", "姓名", "行政相对人名称", "企业名称", "企业名", "单位名称",
        "当事人名称", "市场主体名称", "机构名称", "当事人", "被处罚单位", "被处罚人",
        "被执行人姓名/名称", "被执行人姓名", "被执行人名称", "失信被执行人名称",
        "纳税人名称", "cf_xdr_mc", "xk_xdr_mc", "iname", "pname", "xm", "nsrmc", "jgmc",
        "accurate_entity_name", "entname",
    ),
    "uscc": (
        "统一社会信用代码", "行政相对人代码_1(统一社会信用代码)", "行政相对人代码_1",
        "社会信用代码", "统一代码", "cf_xdr_shxym", "xk_xdr_shxym", "tyshxydm",
        "accurate_entity_code", "uniscid",
    ),
    "id_number_masked": (
        "证件号码", "身份证号码", "身份证号", "居民身份证号", "居民身份证号码", "身份证件号码",
        "行政相对人代码_5(居民身份证号)", "cf_xdr_zjhm", "xk_xdr_zjhm", "cf_xdr_sfz", "tmzjhm",
    ),
    "legal_representative": (
        "法定代表人", "负责人", "法定代表人(负责人)", "法定代表人或负责人",
        "法定代表人或者负责人姓名", "法定代表人或负责人姓名", "法定代表人姓名",
        "法定代表人/负责人/执行事务合伙人", "执行事务合伙人", "法人代表", "企业法人姓名",
        "经营者", "投资人", "法人", "许可法人", "cf_frdb", "cf_fddb", "xk_frdb",
        "businessentity",
    ),
    "registration_no": (
        "许可证编号", "导游证号", "导游证编号", "领队证号", "注册号", "许可证号", "经营许可证编号",
        "经营许可证号", "许可编号", "证书编号", "工商注册号", "工商登记码",
        "行政相对人代码_2(工商注册号)", "行政相对人代码_3(工商登记码)",
        "行政相对人代码_5(事业单位证书号)", "行政相对人代码_6(社会组织登记证号)",
        "事业单位证书号", "社会组织登记证号", "xk_xkbh", "cf_xdr_gszc", "xk_xdr_gszc", "regno",
    ),
    "case_number": (
        "案件编号", "行政处罚决定书文号", "处罚决定书文号", "决定书文号", "处罚文号", "案号",
        "行政许可决定文书号", "行政许可决定书文号", "许可决定书文号", "文书号", "cf_wsh",
        "xk_wsh", "casecode",
    ),
    "title": ("荣誉名称", "荣誉称号", "表彰名称", "奖项名称", "名单名称", "称号"),
    "reason": (
        "违法事由", "违法行为类型", "处罚事由", "列入事由", "列入名单事由", "列入原因",
        "列入严重违法失信名单原因", "失信情形",
        "失信被执行人行为具体情形", "失信被执行人具体情形", "案件性质", "违法行为", "cf_wfxw",
        "disrupttypename",
        "serillrea_cn", "ajxz", "主要违法事实", "违法事实", "zywfss", "cf_sy",
    ),
    "basis": ("处罚依据", "列入依据", "认定依据", "法律依据", "cf_yj"),
    "measure": ("处罚结果", "处罚内容", "惩戒措施", "处罚决定", "cf_nr", "cf_jg"),
    "authority": (
        "处罚机关", "认定部门", "认定机关", "认定单位", "列入机关", "列入部门", "决定机关",
        "作出决定机关", "作出决定机关(列入)", "许可机关", "执行法院", "实施检查的单位",
        "cf_cfjg", "cf_xzjg", "xk_xkjg", "courtname", "execcourtname", "lrbm", "decorg_cn",
        "发布机关", "发布单位",
    ),
    "decided_on": (
        "处罚日期", "处罚决定日期", "认定日期", "认定时间", "列入日期", "列入时间", "决定日期",
        "作出决定日期", "许可决定日期", "处罚时间", "cf_jdrq", "xk_jdrq", "lrsj", "abntime",
    ),
    "published_on": (
        "发布日期", "发布时间", "公示日期", "公示时间", "公布日期", "公布时间", "publishdate",
        "publishdatestamp",
    ),
    "valid_until": (
        "公示截止日期", "公示截止期", "有效期至", "有效期截止", "有效截止日期", "许可截止期",
        "许可截止日期", "cf_gsjzq", "xk_yxqzi", "处罚有效期", "cf_yxq", "处罚截止日期",
    ),
    "_type_label": (
        "主体类型", "行政相对人类别", "主体类别", "当事人类型", "cf_xdr_lb", "xk_xdr_lb",
        "企业类型", "enttype", "partytypename",
    ),
    "_penalty_category": ("处罚类别", "处罚类别1", "处罚类别2", "处罚种类", "cf_cflb"),
    "_fine_wan": ("罚款金额(万元)", "cf_nr_fk"),
    "_fine_yuan": ("罚款金额(元)",),
    "_fine_amount": ("罚款金额", "罚款数额"),
    "_confiscated_wan": (
        "没收违法所得、没收非法财物的金额(万元)", "没收金额(万元)", "没收违法所得(万元)",
        "cf_nr_wfff",
    ),
    "_confiscated_yuan": ("没收金额(元)", "没收违法所得(元)"),
    "_confiscated_amount": ("没收金额", "没收违法所得金额"),
    "_code": (
        "统一社会信用代码或证件号码", "统一社会信用代码/证件号码", "证件号码/统一社会信用代码",
        "身份证号码/组织机构代码", "组织机构代码/身份证号码", "cardnum", "partycardnum",
        "行政相对人代码_2", "行政相对人代码_3", "行政相对人代码_5", "纳税人识别号", "nsrsbh",
    ),
    "_org_code": (
        "组织机构代码", "行政相对人代码_2(组织机构代码)", "行政相对人代码_3(组织机构代码)",
        "cf_xdr_zzjg", "xk_xdr_zzjg", "zzjgdm",
    ),
    "_address": (
        "地址", "住所", "注册地址", "经营地址", "经营场所", "住所(经营场所)", "单位地址",
        "企业地址", "通讯地址", "dom",
    ),
    "_filed_on": ("立案时间", "立案日期", "regdate", "casecreatetime"),
    # A removal published with the entry (GSXT's 移出 fields, 退出名单 columns, a removal
    # announcement's rows): read into ``extra.removal``.
    "_removed_on": (
        "移出日期", "移出时间", "退出日期", "退出名单日期", "撤销日期", "remdate", "tcrq",
    ),
    "_removal_reason": (
        "移出原因", "移出事由", "移出名单原因", "退出原因", "退出名单原因", "撤销原因",
        "remexcpres_cn", "pemexcprexs_cn", "tcmdyy",
    ),
    "_removal_authority": (
        "移出机关", "作出决定机关(移出)", "移出决定机关", "退出认定部门", "redecorg_cn",
        "recorg_cn",
    ),
    # Page furniture, and the bookkeeping of mirrors and sitemaps (Baidu's opendata copy of
    # the SPC list): a view counter or a crawl stamp changes without the entry changing.
    "ignore": (
        "序号", "操作", "查看", "详情", "选择", "focusnumber", "_update_time", "_select_time",
        "_version", "lastmod", "changefreq", "priority", "sitelink", "stdstg", "stdstl",
        "cambrian_appid", "siteid",
    ),
}  # fmt: skip

_TRAILING_RE = re.compile(r"[\s:：]+$")
_SPACE_RE = re.compile(r"\s+")
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def display_label(label: str) -> str:
    """The label as the portal wrote it, minus surrounding whitespace and a trailing colon:
    the key used in ``extra``."""
    return _TRAILING_RE.sub("", label.strip().lstrip("*＊"))


def canonical_label(label: str) -> str:
    """Folded label for lookups: NFKC, no whitespace or trailing colon, ASCII lower-case."""
    text = unicodedata.normalize("NFKC", display_label(label))
    return _SPACE_RE.sub("", text).rstrip(":").translate(_ASCII_LOWER)


def _build() -> dict[str, tuple[str, int]]:
    table: dict[str, tuple[str, int]] = {}
    for target, labels in _LABELS.items():
        for rank, label in enumerate(labels):
            key = canonical_label(label)
            if key in table:
                raise ValueError(f"label {label!r} mapped twice")
            table[key] = (target, rank)
    return table


LABEL_MAP: dict[str, tuple[str, int]] = _build()


@lru_cache(maxsize=4096)
def _builtin(label: str) -> tuple[str, int, str]:
    """``(target, rank, display label)`` from the built-in table, memoised per raw label."""
    target, rank = LABEL_MAP.get(canonical_label(label), ("extra", 0))
    return target, rank, display_label(label)


def lookup(label: str, overrides: Mapping[str, str] | None = None) -> tuple[str, int]:
    """``(target, rank)`` for a portal label; unknown labels are ``("extra", 0)``.

    ``overrides`` (label → target) come from a source's registry entry and win over the
    built-in table; an override ranks before every built-in label of its target.
    """
    return resolve(label, overrides)[:2]


def resolve(label: str, overrides: Mapping[str, str] | None = None) -> tuple[str, int, str]:
    """``(target, rank, display label)``: ``lookup`` plus the key used in ``extra``."""
    if overrides:
        key = canonical_label(label)
        for o_label, target in overrides.items():
            if canonical_label(o_label) == key:
                if target not in TARGETS:
                    raise ValueError(f"unknown label target {target!r} for {o_label!r}")
                return target, -1, display_label(label)
    return _builtin(label)


def field_for_label(label: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The schema field (or helper target) a label fills, or None when it only goes to extra."""
    target, _ = lookup(label, overrides)
    return None if target in CONTROL_TARGETS else target


def senses_values(entity: Mapping[str, Any], senses_map: Mapping[str, str]) -> dict[str, Any]:
    """A Credit China record (``entity`` values by field code, ``sencesMap`` code → label)
    as label → value, for ``RawEntry.fields``.

    A field keeps its code when the code itself is in the table (``cf_wsh``, ``tyshxydm``),
    since codes are stable where labels vary by table; otherwise its ``sencesMap`` label is
    used, and fields without a label keep their code (``uuid``) so nothing is dropped.
    """
    out: dict[str, Any] = {}
    for code, value in entity.items():
        if canonical_label(code) in LABEL_MAP or code not in senses_map:
            out[code] = value
        else:
            out[senses_map[code]] = value
    return out
