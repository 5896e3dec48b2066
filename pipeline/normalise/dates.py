"""Dates as portals print them → ``datetime.date`` (a calendar date in Asia/Shanghai).

Unreadable text gives None, never a guess: a wrong date would expire or keep alive an entry
that should not be. Open-ended validity (长期, 2099-12-31) is None in ``valid_until``.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

import cn2an

from .text import clean_text

# China has had no DST since 1991; a fixed offset avoids reading the tz database.
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# No PRC credit record is older; earlier dates are fillers (1899-12-31, 1900-01-01, 0001-01-01).
MIN_YEAR = 1949
# valid_until on or after this year is a "no end" sentinel (2099-12-31, 9999-12-31 ...).
OPEN_ENDED_FROM_YEAR = 2099
OPEN_ENDED_WORDS = ("长期", "永久", "无期限", "无限期", "不限期")

_TIME_RE = re.compile(r"(?:\s+|T)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?\s*$")
_SEP_RE = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_CN_RE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?")
_COMPACT_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_EPOCH_RE = re.compile(r"-?\d{10}(?:\d{3})?")
_CN_NUMERAL_RE = re.compile(
    r"([〇零○一二三四五六七八九]{4})年([一二三四五六七八九十]{1,3})月([一二三四五六七八九十]{1,3})日?"
)


def _make(year: int, month: int, day: int) -> dt.date | None:
    """A real calendar date inside the plausible range, else None."""
    if year < MIN_YEAR:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _from_chinese_numerals(text: str) -> str | None:
    """``二〇二四年五月十二日`` → ``2024年5月12日`` (cn2an reads 十二, 三十一 ...)."""
    m = _CN_NUMERAL_RE.fullmatch(text)
    if not m:
        return None
    try:
        year = "".join(str(cn2an.cn2an(c.replace("○", "〇"), "normal")) for c in m.group(1))
        month, day = (int(cn2an.cn2an(g, "normal")) for g in m.group(2, 3))
    except ValueError:
        return None
    return f"{year}年{month}月{day}日"


def _from_epoch(text: str) -> dt.date | None:
    """Epoch milliseconds (13 digits) or seconds (10 digits) → the date in Shanghai."""
    value = int(text)
    seconds = value / 1000 if len(text.lstrip("-")) == 13 else value
    try:
        stamp = dt.datetime.fromtimestamp(seconds, tz=SHANGHAI)
    except (OverflowError, OSError, ValueError):
        return None
    return _make(stamp.year, stamp.month, stamp.day)


def parse_date(value: str | int | dt.date | None) -> dt.date | None:
    """Read one published date; None when absent or not exactly one readable date.

    Accepts ``2024-05-12``, ``2024/05/12``, ``2024.5.12``, ``2024年5月12日``, ``20240512``,
    a trailing time (``2015-03-28 00:00:00``), full-width digits, Chinese numerals
    (``二〇二四年五月十二日``) and epoch milliseconds or seconds.
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = clean_text(value) if isinstance(value, str) else None
    if text is None:
        return None
    # Drop a trailing time of day, then all whitespace (`2024 年 5 月 12 日`).
    text = _TIME_RE.sub("", unicodedata.normalize("NFKC", text))
    text = re.sub(r"\s+", "", text)
    chinese = _from_chinese_numerals(text)
    if chinese is not None:
        text = chinese
    for pattern in (_SEP_RE, _CN_RE):
        m = pattern.fullmatch(text)
        if m:
            year, month, day = m.group(1), m.groups()[-2], m.groups()[-1]
            return _make(int(year), int(month), int(day))
    m = _COMPACT_RE.fullmatch(text)
    if m:
        return _make(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if _EPOCH_RE.fullmatch(text):
        return _from_epoch(text)
    return None


def is_open_ended(value: str | None) -> bool:
    """True for validity texts meaning "no end date" (长期, 永久, 长期有效, 2099-12-31 ...)."""
    text = clean_text(value)
    if text is None:
        return False
    if any(word in text for word in OPEN_ENDED_WORDS):
        return True
    parsed = parse_date(text)
    return parsed is not None and parsed.year >= OPEN_ENDED_FROM_YEAR


def parse_valid_until(value: str | int | dt.date | None) -> dt.date | None:
    """``valid_until``: the last day shown (inclusive), or None when open-ended or unreadable."""
    if isinstance(value, str) and is_open_ended(value):
        return None
    parsed = parse_date(value)
    if parsed is None or parsed.year >= OPEN_ENDED_FROM_YEAR:
        return None
    return parsed
