"""Identifiers: USCC, person ID numbers and the region codes visible in them.

Codes are validated, never corrected: a typo stays in ``uscc_raw`` and makes ``uscc`` null,
because a "fixed" code could name a different company. Person ID numbers are stored exactly as
the portal masked them; only the visible prefix is ever read (for the region).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from stdnum.cn import ric
from stdnum.cn import uscc as stdnum_uscc

from .text import clean_text

# GB 32100 filler for "no code": passes the shape, fails the check digit, names nobody.
USCC_FILLER = "00000000000000000X"

# First two digits of GB/T 2260 codes (31 provinces, Taiwan, Hong Kong, Macao).
_PROVINCES = frozenset({
    "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64",
    "65", "71", "81", "82",
})  # fmt: skip
_REGION_RE = re.compile(r"\d{6}")
_SEPARATORS_RE = re.compile(r"[\s\-‐‑–—]+")
_MASKED_ID_RE = re.compile(r"[\dXx*＊]{15,19}")
_MASK_CHARS = "*＊"

IdKind = Literal["resident_id", "masked_id", "uscc", "other"]


@dataclass(frozen=True)
class UsccResult:
    """The three schema fields describing one published USCC."""

    uscc: str | None
    uscc_raw: str | None
    uscc_valid: bool | None


def _compact(code: str) -> str:
    """Upper-case, NFKC (full-width letters/digits), no spaces or hyphens: the form to check."""
    return _SEPARATORS_RE.sub("", unicodedata.normalize("NFKC", code)).upper()


def is_valid_uscc(code: str | None) -> bool:
    """GB 32100 check (alphabet, structure, mod-31 check character); the filler is invalid."""
    if not code:
        return False
    compact = _compact(code)
    return compact != USCC_FILLER and bool(stdnum_uscc.is_valid(compact))


def parse_uscc(raw: str | None) -> UsccResult:
    """Split a published code into ``uscc`` (valid, upper-case), ``uscc_raw`` and validity.

    No code published → all None; the filler or a failing code → ``uscc`` None, raw kept,
    valid False.
    """
    published = clean_text(raw)
    if published is None:
        return UsccResult(None, None, None)
    if is_valid_uscc(published):
        return UsccResult(_compact(published), published, True)
    return UsccResult(None, published, False)


def region_from_code(code: str | None) -> str | None:
    """A 6-digit GB/T 2260 code if ``code`` looks like one (known province prefix), else None."""
    if code and _REGION_RE.fullmatch(code) and code[:2] in _PROVINCES:
        return code
    return None


def region_from_uscc(code: str | None) -> str | None:
    """Characters 3–8 of a *valid* USCC: the registering authority's division code."""
    if not is_valid_uscc(code):
        return None
    return region_from_code(_compact(code or "")[2:8])


def region_from_id_number(id_number: str | None) -> str | None:
    """The visible 6-digit prefix of a (masked) ID number: the place of first registration."""
    if not id_number:
        return None
    compact = _compact(id_number)
    if len(compact) < 15 or compact[:6].count("*"):
        return None
    return region_from_code(compact[:6])


def is_masked_id(id_number: str | None) -> bool:
    """A person ID with some digits replaced by ``*`` (``350212********0728``)."""
    if not id_number:
        return False
    compact = _compact(id_number)
    return bool(_MASKED_ID_RE.fullmatch(compact)) and any(c in compact for c in _MASK_CHARS)


def id_kind(id_number: str | None) -> IdKind | None:
    """Classify a published ID number without changing it.

    ``resident_id``: an unmasked GB 11643 number that passes ``stdnum.cn.ric`` (only checked,
    never copied elsewhere); ``masked_id``: masked by the portal; ``uscc``: a valid USCC put in
    an ID column; ``other``: passports, permits or anything unreadable.
    """
    if not id_number:
        return None
    compact = _compact(id_number)
    if is_masked_id(compact):
        return "masked_id"
    if ric.is_valid(compact):
        return "resident_id"
    if is_valid_uscc(compact):
        return "uscc"
    return "other"
