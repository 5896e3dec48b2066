"""Dates as portals print them → ``datetime.date`` (a calendar date in Asia/Shanghai).

Forms read: ``2024-05-12``, ``2024/05/12``, ``2024.5.12``, ``2024年5月12日``, ``20240512``, a
trailing time (``2015-03-28 00:00:00``, ``2019-07-15T03:08:21``), full-width digits, Chinese
numerals (``二〇二四年五月十二日``), epoch milliseconds or seconds (``1501689600000``), Java
``Date`` objects serialised to JSON (``{"time": 1501689600000, "year": 117, …}``), Excel
serial day numbers (``43658``, from xls attachments) and the US order ``03/29/2018`` that
Credit China's legacy API printed.

Unreadable text gives None, never a guess: a wrong date would expire or keep alive an entry
that should not be. Open-ended validity (长期, 2099-12-31) is None in ``valid_until``.
Parsing is memoised per distinct text (dates repeat across records).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from .text import clean_text

# China has had no DST since 1991; a fixed offset avoids reading the tz database.
SHANGHAI = dt.timezone(dt.timedelta(hours=8))

# No PRC credit record is older; earlier dates are fillers (1899-12-31, 1900-01-01, 0001-01-01).
MIN_YEAR = 1949
# valid_until on or after this year is a "no end" sentinel (2099-12-31, 9999-12-31 ...).
OPEN_ENDED_FROM_YEAR = 2099
OPEN_ENDED_WORDS = ("长期", "永久", "无期限", "无限期", "不限期")

# Excel's day 0 is 1899-12-30 (it counts the non-existent 1900-02-29); serials of 1949-01-01
# to 2099-12-31 are the only ones read.
EXCEL_EPOCH = dt.date(1899, 12, 30)
_EXCEL_MIN = (dt.date(MIN_YEAR, 1, 1) - EXCEL_EPOCH).days
_EXCEL_MAX = (dt.date(OPEN_ENDED_FROM_YEAR, 12, 31) - EXCEL_EPOCH).days

_TIME_RE = re.compile(r"(?:\s+|T)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})?\s*$")
_SPACE_RE = re.compile(r"\s+")
_SEP_RE = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})")
_US_RE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_CN_RE = re.compile(r"(\d{4})年(\d{1,2})月(\d{1,2})日?")
_COMPACT_RE = re.compile(r"(\d{4})(\d{2})(\d{2})")
_EPOCH_RE = re.compile(r"-?\d{10}(?:\d{3})?")
_EXCEL_RE = re.compile(r"(\d{5})(?:\.\d+)?")
_CN_NUMERAL_RE = re.compile(
    r"([〇零○一二三四五六七八九]{4})年([一二三四五六七八九十]{1,3})月([一二三四五六七八九十]{1,3})日?"
)
_CN_DIGIT = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0, "○": 0}

DateInput = str | int | float | dt.date | Mapping[str, Any] | None


def _make(year: int, month: int, day: int) -> dt.date | None:
    """A real calendar date inside the plausible range, else None."""
    if year < MIN_YEAR:
        return None
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _small_numeral(text: str) -> int | None:
    """一 … 三十一 (months and days): 十 = 10, 十二 = 12, 二十 = 20, 三十一 = 31."""
    if "十" not in text:
        return _CN_DIGIT.get(text) if len(text) == 1 else None
    tens, _, units = text.partition("十")
    high = _CN_DIGIT.get(tens, -1) if tens else 1
    low = _CN_DIGIT.get(units, -1) if units else 0
    if high < 1 or low < 0 or "十" in units:
        return None
    return high * 10 + low


def _from_chinese_numerals(text: str) -> dt.date | None:
    """``二〇二四年五月十二日`` → 2024-05-12."""
    m = _CN_NUMERAL_RE.fullmatch(text)
    if not m:
        return None
    year = int("".join(str(_CN_DIGIT[c]) for c in m.group(1)))
    month, day = _small_numeral(m.group(2)), _small_numeral(m.group(3))
    if month is None or day is None:
        return None
    return _make(year, month, day)


def _from_epoch(value: int, millis: bool) -> dt.date | None:
    """Epoch milliseconds or seconds → the date in Shanghai."""
    try:
        stamp = dt.datetime.fromtimestamp(value / 1000 if millis else value, tz=SHANGHAI)
    except (OverflowError, OSError, ValueError):
        return None
    return _make(stamp.year, stamp.month, stamp.day)


def _from_excel(serial: int) -> dt.date | None:
    if not _EXCEL_MIN <= serial <= _EXCEL_MAX:
        return None
    return EXCEL_EPOCH + dt.timedelta(days=serial)


def _from_java(obj: Mapping[str, Any]) -> dt.date | None:
    """A serialised ``java.util.Date``: ``time`` (epoch ms) is the instant; without it,
    ``year`` (since 1900), ``month`` (0-based) and ``date`` are the local date."""
    stamp = obj.get("time")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        return _from_epoch(int(stamp), millis=True)
    year, month, day = obj.get("year"), obj.get("month"), obj.get("date")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (year, month, day)):
        return _make(int(year) + 1900, int(month) + 1, int(day))  # type: ignore[arg-type]
    return None


@lru_cache(maxsize=65536)
def _parse_text(text: str) -> dt.date | None:
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError:
            return None
        return _from_java(obj) if isinstance(obj, dict) else None
    # Drop a trailing time of day, then all whitespace (`2024 年 5 月 12 日`).
    text = _SPACE_RE.sub("", _TIME_RE.sub("", unicodedata.normalize("NFKC", text)))
    if m := _SEP_RE.fullmatch(text):
        return _make(int(m.group(1)), int(m.group(3)), int(m.group(4)))
    if m := _CN_RE.fullmatch(text):
        return _make(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := _COMPACT_RE.fullmatch(text):
        return _make(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    if m := _US_RE.fullmatch(text):
        return _make(int(m.group(3)), int(m.group(1)), int(m.group(2)))
    if _EPOCH_RE.fullmatch(text):
        return _from_epoch(int(text), millis=len(text.lstrip("-")) == 13)
    if m := _EXCEL_RE.fullmatch(text):
        return _from_excel(int(m.group(1)))
    return _from_chinese_numerals(text)


def parse_date(value: DateInput) -> dt.date | None:
    """Read one published date; None when absent or not exactly one readable date.

    Besides text, accepts what JSON and spreadsheet readers hand over: ``date`` objects,
    integers (epoch seconds or milliseconds, ``20240512``), floats (Excel serials) and
    mappings (Java ``Date`` objects).
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dt.datetime):
        return value.astimezone(SHANGHAI).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, Mapping):
        return _from_java(value)
    if isinstance(value, float):
        return _from_excel(int(value)) if value >= 0 else None
    text = clean_text(str(value))
    return None if text is None else _parse_text(text)


def parse_clean_date(text: str | None) -> dt.date | None:
    """``parse_date`` for text already through ``clean_text`` (the normaliser's values)."""
    return None if text is None else _parse_text(text)


def is_open_ended(value: DateInput) -> bool:
    """True for validity values meaning "no end date" (长期, 永久, 长期有效, 2099-12-31 ...)."""
    if isinstance(value, str):
        text = clean_text(value)
        if text is None:
            return False
        if any(word in text for word in OPEN_ENDED_WORDS):
            return True
    parsed = parse_date(value)
    return parsed is not None and parsed.year >= OPEN_ENDED_FROM_YEAR


def parse_valid_until(value: DateInput) -> dt.date | None:
    """``valid_until``: the last day shown (inclusive), or None when open-ended or unreadable."""
    parsed = parse_date(value)
    if parsed is None or parsed.year >= OPEN_ENDED_FROM_YEAR:
        return None
    return parsed
