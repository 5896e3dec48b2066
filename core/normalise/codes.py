"""Identifiers: USCC, organisation codes, registration numbers and person ID numbers.

Check digits come from python-stdnum (``cn.uscc`` for GB 32100, ``cn.ric`` for GB 11643,
``iso7064.mod_11_10`` for 15-digit registration numbers); GB 11714 organisation codes, which
stdnum does not cover, are checked here with the standard's weights.

Codes are validated, never corrected: a typo stays in ``uscc_raw`` and makes ``uscc`` null,
because a "fixed" code could name a different company. Values are upper-cased and trimmed
(NFKC, no spaces or hyphens) only to be checked; the published form is what is stored. Person
ID numbers are stored exactly as the portal masked them; only the visible prefix is ever read
(for the region), and nothing is ever completed.

Every check is a pure function memoised per distinct value.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from stdnum.cn import ric
from stdnum.cn import uscc as stdnum_uscc
from stdnum.iso7064 import mod_11_10

from .regions import is_known_code
from .text import clean_text

# GB 32100 filler for "no code": passes the shape, fails the check digit, names nobody.
USCC_FILLER = "00000000000000000X"

_SEPARATORS_RE = re.compile(r"[\s\-‐‑–—]+")
_MASKED_ID_RE = re.compile(r"[\dX*]{15,19}")
_USCC_SHAPE_RE = re.compile(r"[0-9A-Z]{2}\d{6}[0-9A-Z]{10}")
_ORG_CODE_RE = re.compile(r"[0-9A-Z]{8}[0-9X]")
_REG_NO_RE = re.compile(r"\d{15}")
_ID18_RE = re.compile(r"\d{17}[\dX]")
_ID15_RE = re.compile(r"\d{8}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}")
_MASK_CHARS = frozenset("*")

# GB 11714: weights of the eight body characters; check = 11 - sum mod 11 (10 → X, 11 → 0).
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"

CodeKind = Literal[
    "uscc", "org_code", "registration_no", "resident_id", "masked_id", "filler", "other"
]


@dataclass(frozen=True)
class UsccResult:
    """The three schema fields describing one published USCC."""

    uscc: str | None
    uscc_raw: str | None
    uscc_valid: bool | None


@lru_cache(maxsize=65536)
def compact(code: str) -> str:
    """Upper-case, NFKC (full-width letters/digits, ＊ → *), no spaces or hyphens."""
    return _SEPARATORS_RE.sub("", unicodedata.normalize("NFKC", code)).upper()


@lru_cache(maxsize=65536)
def _uscc_ok(compact_code: str) -> bool:
    return compact_code != USCC_FILLER and bool(stdnum_uscc.is_valid(compact_code))


def is_valid_uscc(code: str | None) -> bool:
    """GB 32100 check (alphabet, structure, mod-31 check character); the filler is invalid."""
    return bool(code) and _uscc_ok(compact(code or ""))


def org_code_check_digit(body: str) -> str:
    """GB 11714 check character of the eight body characters."""
    total = sum(_ORG_ALPHABET.index(c) * w for c, w in zip(body, _ORG_WEIGHTS, strict=True))
    digit = 11 - total % 11
    return "X" if digit == 10 else "0" if digit == 11 else str(digit)


@lru_cache(maxsize=65536)
def is_valid_org_code(code: str | None) -> bool:
    """GB 11714 organisation code (``79678854-1``, ``M000100Y-4``) with a correct check."""
    if not code:
        return False
    c = compact(code)
    return bool(_ORG_CODE_RE.fullmatch(c)) and org_code_check_digit(c[:8]) == c[8]


@lru_cache(maxsize=65536)
def is_valid_registration_no(code: str | None) -> bool:
    """15-digit business registration number (GS15) whose last digit passes ISO 7064
    MOD 11,10."""
    if not code:
        return False
    c = compact(code)
    return bool(_REG_NO_RE.fullmatch(c)) and bool(mod_11_10.is_valid(c))


@lru_cache(maxsize=65536)
def is_valid_resident_id(code: str | None) -> bool:
    """An unmasked 18-character GB 11643 number: check character, birth date and region."""
    if not code:
        return False
    c = compact(code)
    return bool(_ID18_RE.fullmatch(c)) and bool(ric.is_valid(c))


@lru_cache(maxsize=65536)
def parse_uscc(raw: str | None) -> UsccResult:
    """Split a published code into ``uscc`` (valid, upper-case), ``uscc_raw`` and validity.

    No code published → all None; the filler or a failing code → ``uscc`` None, raw kept,
    valid False.
    """
    published = clean_text(raw)
    if published is None:
        return UsccResult(None, None, None)
    c = compact(published)
    if _uscc_ok(c):
        return UsccResult(c, published, True)
    return UsccResult(None, published, False)


def region_from_code(code: str | None) -> str | None:
    """``code`` if it is a 6-digit GB/T 2260 division code (current or former), else None."""
    return code if code and len(code) == 6 and is_known_code(code) else None


@lru_cache(maxsize=65536)
def region_from_uscc(code: str | None) -> str | None:
    """Characters 3–8 of a *valid* USCC: the registering authority's division code."""
    if not is_valid_uscc(code):
        return None
    return region_from_code(compact(code or "")[2:8])


@lru_cache(maxsize=65536)
def region_from_id_number(id_number: str | None) -> str | None:
    """The visible 6-digit prefix of a (masked) ID number: the place of first registration."""
    if not id_number:
        return None
    c = compact(id_number)
    if len(c) < 15 or "*" in c[:6]:
        return None
    return region_from_code(c[:6])


def is_masked_id(id_number: str | None) -> bool:
    """A person ID with some digits replaced by ``*`` (``350212********0728``)."""
    if not id_number:
        return False
    c = compact(id_number)
    return bool(_MASKED_ID_RE.fullmatch(c)) and any(ch in _MASK_CHARS for ch in c)


@lru_cache(maxsize=65536)
def classify_code(value: str | None) -> CodeKind | None:
    """What kind of identifier a published value is, by check digit first, then by shape.

    Used where one column holds several kinds (SPC ``cardNum``: a masked ID or an
    organisation code; 统一社会信用代码或证件号码). An 18- or 15-character value that fails
    every check but has a kind's shape gets that kind (its check then reports it invalid); a
    9-character value is an organisation code only with a correct check character, since
    passport numbers (``E12345678``) share the shape; ``other`` is anything else.
    """
    if not value:
        return None
    c = compact(value)
    if c == USCC_FILLER:
        return "filler"
    if is_masked_id(c):
        return "masked_id"
    if len(c) == 18:
        if _uscc_ok(c):
            return "uscc"
        if is_valid_resident_id(c):
            return "resident_id"
        if _ID18_RE.fullmatch(c) and region_from_code(c[:6]) and c[6:8] in ("19", "20"):
            return "resident_id"
        if _USCC_SHAPE_RE.fullmatch(c):
            return "uscc"
        return "other"
    if is_valid_org_code(c):
        return "org_code"
    if len(c) == 15 and c.isdigit():
        if is_valid_registration_no(c):
            return "registration_no"
        if _ID15_RE.fullmatch(c) and region_from_code(c[:6]):
            return "resident_id"
        return "registration_no"
    return "other"


def code_check(kind: CodeKind | None, value: str | None) -> bool | None:
    """The check-digit verdict for a code of ``kind``; None when the kind has no check
    (masked and 15-digit person IDs, permits, free text)."""
    if not value:
        return None
    if kind == "uscc":
        return is_valid_uscc(value)
    if kind == "org_code":
        return is_valid_org_code(value)
    if kind == "registration_no":
        return is_valid_registration_no(value) if _REG_NO_RE.fullmatch(compact(value)) else None
    if kind == "resident_id" and len(compact(value)) == 18:
        return is_valid_resident_id(value)
    return None


def id_kind(id_number: str | None) -> CodeKind | None:
    """Kind of a value published in a person-ID column (see ``classify_code``)."""
    return classify_code(id_number)
