"""Penalty types and amounts read from a measure text (处罚结果 / 处罚内容).

Measures are free text (``警告，并处罚款人民币0.2万元``, ``没收违法所得人民币3200元，并处罚款
10000元``). Types are found by keyword; an amount counts only when a fine or confiscation
keyword governs it directly (``罚款人民币…元``, ``处…元罚款``), so amounts such as refunds
to tourists are never mistaken for fines.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

Number = int | float

PENALTY_TYPES = (
    "warning",
    "fine",
    "confiscation",
    "suspension",
    "licence_revocation",
    "detention",
    "other",
)

# Keyword rules per type (legacy Administrative Penalty Law Art. 8 and the 2021 Art. 9
# classes, folded onto the schema's enum). A clause stops at `，,；;。`.
_NEAR = r"[^，,；;。]{0,12}?"
_TYPE_PATTERNS: dict[str, re.Pattern[str]] = {
    "warning": re.compile(r"警告"),
    "fine": re.compile(r"罚款|罚金"),
    "confiscation": re.compile(r"没收"),
    "suspension": re.compile(
        rf"停产|停业|暂停|暂扣|停止{_NEAR}(?:业务|经营|营业|执业|招徕|组团)|限制开展生产经营活动"
    ),
    "licence_revocation": re.compile(rf"吊销|撤销{_NEAR}(?:许可|执照|证|资质)"),
    "detention": re.compile(r"拘留"),
    "other": re.compile(
        rf"通报批评|责令关闭|降低资质等级|限制从业|禁止{_NEAR}从业|取消{_NEAR}资格"
    ),
}
_NO_PENALTY_RE = re.compile(r"(?:不予|免予|免于)(?:行政)?处罚")

_CN_DIGITS = "零〇○一二两三四五六七八九十百千万亿壹贰叁肆伍陆柒捌玖拾佰仟萬億点"
_AMOUNT_RE = re.compile(rf"(?P<num>(?:\d[\d,]*(?:\.\d+)?|[{_CN_DIGITS}])+)\s*(?:元|圆)")
_UNIT_VALUES = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000,
                "万": 10_000, "萬": 10_000, "亿": 100_000_000, "億": 100_000_000}  # fmt: skip
_ARABIC_UNITS_RE = re.compile(r"(\d+(?:\.\d+)?)([十拾百佰千仟万萬亿億]+)")
# Words allowed between a keyword and its amount: "罚款人民币…", "没收违法所得共计…".
_FILLER = (
    r"(?:人民币|违法所得|非法所得|违法收入|非法财物|共计|合计|总计|金额|数额|计|其|的|为|以|处|款|"
    r"[：:\s])*"
)
_FINE_BEFORE_RE = re.compile(rf"(?:罚款|罚金){_FILLER}$")
_CONFISCATION_BEFORE_RE = re.compile(rf"没收{_FILLER}$")
_FINE_AFTER_RE = re.compile(r"^\s*整?\s*(?:的)?\s*(?:罚款|罚金)")


@dataclass
class Measure:
    """What a measure text says: types in order of first mention, and amounts in yuan."""

    penalty_types: list[str] = field(default_factory=list)
    fine_yuan: Number | None = None
    confiscated_yuan: Number | None = None


def as_number(value: Decimal) -> Number:
    """An int when whole (10000), a float otherwise (1234.5): JSON-friendly and exact enough."""
    return int(value) if value == value.to_integral_value() else float(value)


def parse_number(text: str) -> Decimal | None:
    """``30,000``, ``1.5万``, ``叁万``, ``壹万伍仟``, ``1万5千`` → Decimal; None if unreadable."""
    text = unicodedata.normalize("NFKC", text).replace(",", "").replace("，", "").strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return Decimal(text)
        m = _ARABIC_UNITS_RE.fullmatch(text)
        if m:
            value = Decimal(m.group(1))
            for unit in m.group(2):
                value *= _UNIT_VALUES[unit]
            return value
        return chinese_number(text)
    except (ValueError, InvalidOperation, KeyError):
        return None


_CN_DIGIT_VALUES = {
    **{c: i for i, c in enumerate("零一二三四五六七八九")},
    **{c: i for i, c in enumerate("〇壹贰叁肆伍陆柒捌玖")},
    "○": 0, "两": 2, "貳": 2, "參": 3, "陸": 6,
}  # fmt: skip
_CN_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_ARABIC_RE = re.compile(r"\d+(?:\.\d+)?")


def chinese_number(text: str) -> Decimal | None:
    """Chinese numerals, financial (壹贰叁 … 拾佰仟万亿) or ordinary, possibly mixed with
    Arabic digits: ``叁万零伍佰`` → 30500, ``壹拾万`` → 100000, ``1万5千`` → 15000,
    ``十二`` → 12. None for anything else (two digits without a unit between them, stray
    characters)."""
    total = section = Decimal(0)
    number: Decimal | None = None
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isascii() and ch.isdigit():
            if number is not None:
                return None
            m = _ARABIC_RE.match(text, i)
            assert m is not None
            number, i = Decimal(m.group()), m.end()
            continue
        if ch in _CN_DIGIT_VALUES:
            value = _CN_DIGIT_VALUES[ch]
            if number is not None and value != 0 and number != 0:
                return None  # 伍伍: digits without a unit
            number = Decimal(value)
        elif ch in _CN_SMALL_UNITS:
            section += (number if number is not None else 1) * _CN_SMALL_UNITS[ch]
            number = None
        elif ch in "万萬":
            total += (section + (number or 0)) * 10_000
            section, number = Decimal(0), None
        elif ch in "亿億":
            total = (total + section + (number or 0)) * 100_000_000
            section, number = Decimal(0), None
        else:
            return None
        i += 1
    return total + section + (number or 0)


def penalty_types(text: str | None) -> list[str]:
    """Schema penalty types mentioned in ``text``, ordered by first mention.

    A measure that names none of the known types is ``["other"]``; an explicit decision not
    to penalise (不予处罚) with nothing else is ``[]``.
    """
    if not text:
        return []
    norm = unicodedata.normalize("NFKC", text)
    found: list[tuple[int, str]] = []
    for kind, pattern in _TYPE_PATTERNS.items():
        m = pattern.search(norm)
        if m:
            found.append((m.start(), kind))
    if not found:
        return [] if _NO_PENALTY_RE.search(norm) else ["other"]
    return [kind for _, kind in sorted(found, key=lambda f: (f[0], PENALTY_TYPES.index(f[1])))]


def _attribute(before: str, after: str) -> str | None:
    """Which amount this is: the keyword right before it wins, else one right after it."""
    if _CONFISCATION_BEFORE_RE.search(before):
        return "confiscation"
    if _FINE_BEFORE_RE.search(before):
        return "fine"
    if _FINE_AFTER_RE.search(after):
        return "fine"
    return None


def amounts(text: str | None) -> tuple[Number | None, Number | None]:
    """``(fine_yuan, confiscated_yuan)`` read from a measure; several fines are summed."""
    if not text:
        return None, None
    norm = unicodedata.normalize("NFKC", text)
    totals: dict[str, Decimal] = {}
    matches = list(_AMOUNT_RE.finditer(norm))
    for i, m in enumerate(matches):
        start = matches[i - 1].end() if i else 0
        end = matches[i + 1].start() if i + 1 < len(matches) else len(norm)
        kind = _attribute(norm[start : m.start()], norm[m.end() : end])
        value = parse_number(m.group("num"))
        if kind is None or value is None:
            continue
        totals[kind] = totals.get(kind, Decimal(0)) + value
    fine = totals.get("fine")
    confiscated = totals.get("confiscation")
    return (
        as_number(fine) if fine is not None else None,
        as_number(confiscated) if confiscated is not None else None,
    )


@lru_cache(maxsize=65536)
def _measure(text: str) -> tuple[tuple[str, ...], Number | None, Number | None]:
    fine, confiscated = amounts(text)
    return tuple(penalty_types(text)), fine, confiscated


def parse_measure(text: str | None) -> Measure:
    """Types and amounts of one measure text; an absent measure gives an empty Measure.

    Memoised per distinct text: measures repeat across records far more than they differ.
    """
    if not text:
        return Measure()
    types, fine, confiscated = _measure(text)
    return Measure(list(types), fine, confiscated)


@lru_cache(maxsize=65536)
def parse_amount_column(text: str | None, *, unit: Literal["wan", "yuan"] | None) -> Number | None:
    """A money column in yuan (``罚款金额（万元）`` = 0.5 → 5000).

    A unit written in the cell wins over the column's; a bare number in a column whose unit
    is unknown is not read (the unit is never guessed).
    """
    if not text:
        return None
    norm = unicodedata.normalize("NFKC", text).strip().removeprefix("人民币").removesuffix("整")
    m = re.fullmatch(r"([\d,]+(?:\.\d+)?)\s*(万元|元)?", norm.strip())
    if m:
        value = parse_number(m.group(1))
        cell_unit = {"万元": "wan", "元": "yuan"}.get(m.group(2) or "", unit)
        if value is None or cell_unit is None:
            return None
        return as_number(value * 10_000 if cell_unit == "wan" else value)
    m = _AMOUNT_RE.fullmatch(norm.strip())
    if m:
        value = parse_number(m.group("num"))
        return as_number(value) if value is not None else None
    return None
