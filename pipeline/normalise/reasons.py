"""``reason_category``: a small, versioned keyword vocabulary per domain.

Reasons are free text; categories let researchers count like with like across portals. The
vocabulary is deliberately small and readable: change it by adding a rule and bumping
``VOCABULARY_VERSION`` (a change re-classifies stored reasons, so records will show as
modified). Rules are tried in order; the first match wins. Matching is on folded text (NFKC,
traditional → simplified, no whitespace).

Tourism (``tourism``) vocabulary, version 1:

=========================  ===============================================================
category                   keywords (any)
=========================  ===============================================================
low_price_tour             不合理的低价 · 低于成本 · 零团费 · 负团费
forced_shopping            购物 · 另行付费 · 自费项目 (指定/诱导/强迫购物, 另行付费项目)
itinerary_change           变更旅游行程 · 变更行程 · 拒绝履行旅游合同 · 甩团 · 中止导游活动
unlicensed_guide           未取得导游证 · 无导游证 · 未持导游证 · 无证导游 · 未佩戴导游证
unlicensed_operation       未取得旅行社业务经营许可 · 未经许可经营旅行社 · 超范围经营 ·
                           出租/出借/转让旅行社业务经营许可
price_disclosure           公示服务项目 · 收费标准 · 明码标价 · 价格 · 收费
no_written_contract        签订书面旅游合同 · 签订旅游合同 · 未签订合同
insurance                  责任保险 · 投保 · 保险
deposit                    质量保证金
false_advertising          虚假宣传 · 虚假广告 · 欺骗旅游者 · 诱骗旅游者
safety                     安全
unclassified               (no rule matched)
=========================  ===============================================================

``low_price_tour`` precedes ``false_advertising`` because the statutory wording of the
low-price offence itself says 诱骗旅游者.
"""

from __future__ import annotations

import re

from .text import clean_text, fold

VOCABULARY_VERSION = "1"
UNCLASSIFIED = "unclassified"

_RULES: dict[str, tuple[tuple[str, re.Pattern[str]], ...]] = {
    "tourism": (
        ("low_price_tour", re.compile(r"不合理的?低价|低于成本|零团费|负团费")),
        ("forced_shopping", re.compile(r"购物|另行付费|自费项目")),
        (
            "itinerary_change",
            re.compile(r"变更(?:旅游)?行程|拒绝履行(?:旅游)?合同|甩团|中止导游活动"),
        ),
        (
            "unlicensed_guide",
            re.compile(r"未取得导游证|无导游证|未持(?:有)?导游证|无证导游|未佩戴导游证"),
        ),
        (
            "unlicensed_operation",
            re.compile(
                r"未取得旅行社业务经营许可|未经许可经营旅行社|超范围经营|"
                r"(?:出租|出借|转让)[^,;。]{0,6}旅行社业务经营许可"
            ),
        ),
        ("price_disclosure", re.compile(r"公示服务项目|收费标准|明码标价|价格|收费")),
        ("no_written_contract", re.compile(r"签订(?:书面)?(?:旅游)?合同")),
        ("insurance", re.compile(r"责任保险|投保|保险")),
        ("deposit", re.compile(r"质量保证金")),
        ("false_advertising", re.compile(r"虚假宣传|虚假广告|欺骗旅游者|诱骗旅游者")),
        ("safety", re.compile(r"安全")),
    ),
}

DOMAINS = frozenset(_RULES)


def categories(domain: str) -> tuple[str, ...]:
    """Every category a domain's vocabulary can return (for docs and validation)."""
    return (*(name for name, _ in _RULES.get(domain, ())), UNCLASSIFIED)


def reason_category(domain: str | None, reason: str | None) -> str | None:
    """Class of ``reason`` in ``domain``'s vocabulary; ``unclassified`` when no rule matches.

    None when there is no reason, or when the domain has no vocabulary (nothing was tried, so
    nothing is claimed).
    """
    text = clean_text(reason)
    if text is None or domain not in _RULES:
        return None
    folded = fold(text)
    for name, pattern in _RULES[domain]:
        if pattern.search(folded):
            return name
    return UNCLASSIFIED
