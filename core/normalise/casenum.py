"""Court case numbers (案号) → year, court, case type and sequence.

Two generations occur on the lists:

* since 2016 (《最高人民法院关于人民法院案件案号的若干规定》): ``(2019)皖1122执1194号`` =
  year · court code (province abbreviation, then 2 digits for an intermediate court or 4 for
  a basic court; ``最高法`` for the Supreme People's Court) · case-type code · sequence;
* before 2016, each court's own abbreviation and ``字第``: ``(2014)丰法民执字第00326号``.

Only numbers that fit one of these shapes are parsed; administrative decision numbers
(``厦文旅罚〔2019〕12号``), arbitration and notarial numbers (``(2018)京仲裁字第2589号``) are
left alone. The result goes to ``extra.case_number_parts``; ``case_number`` stays as
published.
"""

from __future__ import annotations

import re
from typing import Any

from .text import case_number_key

# Province-level abbreviations used in case numbers (兵 = Xinjiang Production and
# Construction Corps courts); 黔/滇/秦/陇 are the alternative abbreviations some courts use.
_PROVINCES = "京津冀晋内辽吉黑沪苏浙皖闽赣鲁豫鄂湘粤桂琼渝川贵黔云滇藏陕秦甘陇青宁新兵"
_CURRENT_RE = re.compile(
    rf"\((?P<year>\d{{4}})\)(?P<court>最高法|[{_PROVINCES}](?:\d{{4}}|\d{{2}})?)"
    r"(?P<type>(?:(?![字第])[\u4e00-\u9fff]){1,5}?)(?P<seq>\d+)号"  # no 字第: legacy style
)
# Legacy case-type words before 字 (民初, 民一初, 商终, 刑初, 行终, 执, 执恢, 非诉执 …).
_LEGACY_TYPES = (
    r"(?:民|商|刑|行|知|海|赔)[一二三四五六七八九]?(?:外)?(?:初|终|再|监|申|执|特|催|督|保|破|提|撤)?"
    r"|执(?:恢|异|复|保|监|行|他)?|非诉执|非诉行执|财保|诉保|破"
)
_LEGACY_RE = re.compile(
    rf"\((?P<year>\d{{4}})\)(?P<court>[\u4e00-\u9fff\d]+?)(?P<type>{_LEGACY_TYPES})"
    r"字第?(?P<seq>\d+)号"
)


def parse_court_case_number(case_number: str | None) -> dict[str, Any] | None:
    """``(2019)皖1122执1194号`` → ``{"year": 2019, "court": "皖1122", "case_type": "执",
    "sequence": 1194, "style": "2016"}``; None for anything that is not a court 案号.

    Not memoised: every entry of a list has its own case number."""
    return parse_case_key(case_number_key(case_number))


def parse_case_key(key: str | None) -> dict[str, Any] | None:
    """``parse_court_case_number`` on an already folded ``case_number_key``."""
    if key is None or not key.startswith("("):
        return None
    m = _CURRENT_RE.fullmatch(key)
    style = "2016"
    if m is None:
        m = _LEGACY_RE.fullmatch(key)
        style = "legacy"
    if m is None:
        return None
    return {
        "year": int(m.group("year")),
        "court": m.group("court"),
        "case_type": m.group("type"),
        "sequence": int(m.group("seq")),
        "style": style,
    }
