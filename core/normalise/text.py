"""Text hygiene and match keys.

Display values keep the published text (only trimmed and entity-decoded), so a reader sees
what the portal showed. All folding happens in the ``*_key`` functions, which exist only for
matching the same thing published in different widths, scripts and bracket styles.
"""

from __future__ import annotations

import html
import json
import re
import string
import unicodedata
from functools import lru_cache
from typing import Any

import opencc

# Whitespace as portals produce it: str.isspace() covers U+3000 and U+00A0; zero-width
# characters and the BOM are invisible too and leak in from copy-pasted office documents.
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_TRIM_RE = re.compile(rf"^[\s{_INVISIBLE}]+|[\s{_INVISIBLE}]+$")
_SPACE_RE = re.compile(rf"[\s{_INVISIBLE}]+")

# Values portals print instead of leaving a cell empty. Compared after NFKC, whitespace
# removal and ASCII lower-casing.
PLACEHOLDERS: frozenset[str] = frozenset(
    {"", "无", "暂无", "空", "无数据", "未公示", "不公示", "null", "none", "nil", "nan", "n/a"}
)
# Cells made only of dashes, slashes, dots or equals signs (`—`, `--`, `/`, `——`, `.`, `=`).
_FILLER_CHARS = "-‐‑‒–—―─━_~·・./\\="
_FILLER_RE = re.compile(rf"[{re.escape(_FILLER_CHARS)}]+")
# Longer texts can only be placeholders when made of filler: their first character tells.
_SHORT = 12
_FILLER_FIRST = frozenset(_FILLER_CHARS + "－＿～．／＼＝﹣﹒")

_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)

# Case numbers use every bracket style for the same year (〔2019〕, [2019], （2019）...).
_BRACKETS = str.maketrans({"〔": "(", "〕": ")", "[": "(", "]": ")", "【": "(", "】": ")",
                           "〖": "(", "〗": ")", "（": "(", "）": ")"})  # fmt: skip


# C0 and C1 control characters other than tab and line breaks: they carry no text, and a NUL
# cuts strings short in e-mail, feeds and C libraries and is refused by PostgreSQL.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# The longest value kept for one field. Real cells (even 违法事实 narratives) stay far below;
# a page that puts megabytes in a cell would otherwise be copied into every table and alert.
MAX_FIELD_CHARS = 20_000


def strip_controls(s: str) -> str:
    """``s`` without control characters (tab, CR and LF kept); those that separate words
    (vertical tab, form feed, the information separators, NEL) become a space."""
    return _CONTROL_RE.sub(lambda m: " " if m.group().isspace() else "", s)


def has_controls(s: str) -> bool:
    return _CONTROL_RE.search(s) is not None


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    """One converter per process: building it loads OpenCC's dictionaries."""
    return opencc.OpenCC("t2s")


def trim(s: str) -> str:
    """Strip whitespace (incl. U+3000, U+00A0) and zero-width characters at both ends."""
    if s and not (s[0].isspace() or s[-1].isspace() or s[0] in _INVISIBLE or s[-1] in _INVISIBLE):
        return s
    return _TRIM_RE.sub("", s)


def is_placeholder(s: str) -> bool:
    """True for the texts portals use to mean "no value" (`—`, `-`, `/`, `无`, `暂无` ...)."""
    if len(s) > _SHORT and s.lstrip()[:1] not in _FILLER_FIRST:
        return False
    folded = _SPACE_RE.sub("", unicodedata.normalize("NFKC", s)).translate(_ASCII_LOWER)
    return folded in PLACEHOLDERS or _FILLER_RE.fullmatch(folded) is not None


def as_text(value: Any) -> str | None:
    """A value as a spider may hand it over (JSON numbers, objects, spreadsheet floats) →
    its text: ``510240.0`` → ``510240``, objects → compact JSON (read by ``parse_date``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return str(value)


@lru_cache(maxsize=1 << 17)
def _clean(s: str) -> str | None:
    text = trim(html.unescape(s)) if "&" in s else trim(s)
    if is_placeholder(text):
        return None
    return text


def clean_text(s: Any) -> str | None:
    """Published text made safe to store: entities decoded, trimmed, placeholders → None.

    Nothing else changes (no tag stripping, no width folding): the schema promises the text
    as published, and a hostile-looking name is still the name the portal showed.
    """
    if s is None:
        return None
    text = s if isinstance(s, str) else as_text(s)
    return None if text is None else _clean(text)


@lru_cache(maxsize=1 << 16)
def simplified(s: str) -> str:
    """NFKC, traditional → simplified, all whitespace removed; case kept (name parsing)."""
    text = unicodedata.normalize("NFKC", s)
    text = _t2s().convert(text)
    return _SPACE_RE.sub("", text)


@lru_cache(maxsize=1 << 16)
def fold(s: str) -> str:
    """NFKC, traditional → simplified, all whitespace removed, ASCII lower-cased."""
    return simplified(s).translate(_ASCII_LOWER)


def name_key(s: str | None) -> str | None:
    """The schema's ``entity_name_key``: ``廈門（集團）有限公司 `` → ``厦门(集团)有限公司``."""
    if s is None:
        return None
    key = fold(s)
    return key or None


def case_number_key(s: str | None) -> str | None:
    """The schema's ``case_number_key``: NFKC, no whitespace, every bracket pair → ``()``,
    traditional characters → simplified.

    ``厦文旅罚〔2019〕12号`` → ``厦文旅罚(2019)12号``. Case numbers are issued in simplified
    characters, but a page shown through a traditional-script converter (廈文旅罰) is the
    same case: without folding, one run would delist it and the next relist it. ASCII case
    is kept (``A`` and ``a`` may be different series).
    """
    if s is None:
        return None
    text = unicodedata.normalize("NFKC", s)
    text = _SPACE_RE.sub("", text).translate(_BRACKETS)
    return _traditional_folded(text) if text else None


def _traditional_folded(text: str) -> str:
    """Characters outside GB 2312 turned simplified, one by one. Those inside are left alone:
    some are simplified characters OpenCC would still change (乾安 → 干安, 於 → 于)."""
    try:
        text.encode("gb2312")
    except UnicodeEncodeError:
        return "".join(ch if _in_gb2312(ch) else _t2s().convert(ch) for ch in text)
    return text


@lru_cache(maxsize=1 << 14)
def _in_gb2312(ch: str) -> bool:
    try:
        ch.encode("gb2312")
    except UnicodeEncodeError:
        return False
    return True
