"""The reason vocabularies as data: per domain, ordered categories with their keywords and
patterns (``reasons.py`` classifies with them; ``segment.py`` adds their keywords to jieba's
dictionary, so this module imports neither)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

UNCLASSIFIED = "unclassified"
VOCABULARY_VERSION = "2"  # version of this module's set of vocabularies (docs heading)


@dataclass(frozen=True)
class Category:
    """One class of reasons: keywords (``A B`` = both words) and regular expressions."""

    name: str
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    domain: str
    version: int
    categories: tuple[Category, ...]


def _c(name: str, keywords: str, *patterns: str) -> Category:
    """``keywords`` separated by ``|``; inside one, spaces join words that must all appear."""
    return Category(name, tuple(k.strip() for k in keywords.split("|") if k.strip()), patterns)


VOCABULARIES: dict[str, Vocabulary] = {
    v.domain: v
    for v in (
        Vocabulary(
            "tourism",
            2,
            (
                _c(
                    "licence_revoked",
                    "吊销 导游证|吊销 许可证|吊销 经营许可证|吊销 业务经营许可证|吊销 领队证",
                ),
                _c("low_price_tour", "低于成本|零团费|负团费", r"不合理的?低价"),
                _c("forced_shopping", "购物|另行付费|自费项目"),
                _c(
                    "contract_breach",
                    "变更行程|变更旅游行程|甩团|中止导游活动|减少旅游服务项目|拒绝履行 合同|"
                    "违反 旅游合同|转团",
                    r"(?:擅自|未经[^，,。；;]{0,6}同意)[^。；;]{0,10}(?:变更|委托|转交)",
                ),
                _c(
                    "unlicensed_guide",
                    "无证导游",
                    r"(?:未取得|未持有?|无|未佩戴|不具备)[^，,。；;]{0,4}导游证",
                ),
                _c(
                    "unlicensed_operation",
                    "超范围经营|非法经营旅行社业务|无证经营",
                    r"未(?:取得|经)[^，,。；;]{0,8}(?:许可|审批)",
                    r"(?:出租|出借|转让)[^，,。；;]{0,6}(?:业务经营许可|许可证)",
                ),
                _c("no_written_contract", "书面合同|书面旅游合同|签订 合同|签订 旅游合同"),
                _c("price_disclosure", "明码标价|公示 收费标准|公示 服务项目|价格|收费"),
                _c("insurance", "责任保险|投保|保险"),
                _c("deposit", "质量保证金"),
                _c("false_advertising", "虚假宣传|虚假广告|欺骗 旅游者|诱骗 旅游者"),
                _c("uncivilised_conduct", "不文明|扰乱|殴打|寻衅滋事|损毁|霸机|公序良俗"),
                _c("safety", "安全"),
            ),
        ),
        Vocabulary(
            "court",
            1,
            (
                _c("breach_settlement_agreement", "执行和解协议|和解协议"),
                _c(
                    "obstruct_enforcement",
                    "妨碍 执行|抗拒 执行|伪造证据|暴力|威胁",
                ),
                _c(
                    "evade_enforcement",
                    "规避执行|虚假诉讼|虚假仲裁|隐匿 财产|转移财产|转移 财产",
                ),
                _c("violate_property_reporting", "财产报告"),
                _c(
                    "violate_consumption_restriction",
                    "限制消费令|限制高消费令|限制消费|限制高消费",
                ),
                _c("refuse_to_perform", "拒不履行|有履行能力"),
            ),
        ),
        Vocabulary(
            "tax",
            1,
            (
                _c("arrears_evasion", "逃避追缴欠税|逃避 追缴 欠税"),
                _c("export_rebate_fraud", "骗取出口退税|骗取 出口退税|骗取 退税"),
                _c("false_invoicing", "虚开", r"虚开[^，,。；;]{0,10}发票"),
                _c(
                    "invoice_fraud",
                    "非法出售 发票|非法购买 发票|伪造 发票|私自印制 发票|变造 发票",
                    r"(?:出售|购买|印制|伪造|变造)[^，,。；;]{0,6}发票",
                ),
                _c("tax_resistance", "抗税"),
                _c("tax_evasion", "偷税|逃税|逃避缴纳税款|逃避 缴纳 税款"),
                _c("tax_arrears", "欠税|欠缴"),
            ),
        ),
        Vocabulary(
            "labour",
            1,
            (
                _c("wage_arrears", "拖欠 工资|拖欠 劳动报酬|欠薪|拖欠 农民工|克扣 工资"),
                _c("social_insurance", "社会保险|社保"),
                _c("no_labour_contract", "劳动合同"),
            ),
        ),
        Vocabulary(
            "general",
            1,
            (
                _c(
                    "unlicensed_operation",
                    "无证经营|无照经营|擅自从事|超范围经营|超越许可范围",
                    r"未(?:取得|经)[^，,。；;]{0,10}(?:许可|批准|审批|登记)",
                ),
                _c("false_advertising", "虚假宣传|虚假广告|引人误解的宣传|广告"),
                _c("pricing", "明码标价|价格|收费|乱收费"),
                _c("food_safety", "食品安全|食品|餐饮|过期"),
                _c("product_quality", "不合格|假冒伪劣|以次充好|以假充真|产品质量"),
                _c("work_safety", "安全生产|安全隐患|消防|特种设备"),
                _c(
                    "environment",
                    "排放|污染|环境影响评价|环评|固体废物|危险废物|扬尘",
                ),
                _c("transport", "超限|超载|道路运输|营运"),
                _c("tax", "偷税|逃税|虚开|发票|税款"),
                _c("intellectual_property", "商标|专利|著作权|侵权"),
                _c("wage_arrears", "拖欠 工资|拖欠 劳动报酬|欠薪"),
                _c("disclosure", "年度报告|年报|公示 信息|登记 事项"),
            ),
        ),
    )
}

DOMAINS = frozenset(VOCABULARIES)


def categories(domain: str) -> tuple[str, ...]:
    """Every category a domain's vocabulary can return (for docs and validation)."""
    vocabulary = VOCABULARIES.get(domain)
    names = tuple(c.name for c in vocabulary.categories) if vocabulary else ()
    return (*names, UNCLASSIFIED)


_LABELS = {v.domain: f"{v.domain}/{v.version}" for v in VOCABULARIES.values()}


def vocabulary_label(domain: str | None) -> str | None:
    """``tourism/2``: the domain and version that classify its reasons; None without one."""
    return _LABELS.get(domain or "")


def keywords() -> Iterator[str]:
    """Every word any vocabulary looks for (added to the jieba dictionary)."""
    for vocabulary in VOCABULARIES.values():
        for category in vocabulary.categories:
            for keyword in category.keywords:
                yield from keyword.split()
