"""Organisation names → region, trade name, industry, organisation form and branch.

Enterprise names are built as 行政区划 + 字号 + 行业或经营特点 + 组织形式 (《企业名称登记管理规
定》), a branch appends its own place and 分公司 / 营业部 … after the parent's form, and the
region may instead follow the trade name in brackets (``乐视影业（北京）有限公司``). The parse
reads the form and branch from the end with the suffix table and the region from the start
with the GB/T 2260 names (``regions.read_regions``: names that nest, ``吉林省`` ⊃ ``长春市``
⊃ ``农安县``), then cuts the rest with jieba and its user dictionary (``segment.py``):
trailing industry words are the industry, and what is left the trade name.

Parts are taken from the name folded for matching (NFKC, simplified script, no whitespace),
so ``（集团）`` reads as ``(集团)``; the published name itself is never changed. The parse is
for analysis (``extra.name_parts``), not identity: keys and ids never depend on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from . import regions
from .segment import cut, industry_words, org_forms
from .text import simplified

_BRACKET_RE = re.compile(r"\(([^()]*)\)")
_MIN_BODY = 2  # a one-character remainder before 店 / 厂 is a word, not a name


@dataclass(frozen=True)
class NameParts:
    """The parts of one organisation name; None where the name has no such part."""

    region: str | None
    trade_name: str | None
    industry: str | None
    organisation_form: str | None
    branch: str | None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "region": self.region,
            "trade_name": self.trade_name,
            "industry": self.industry,
            "organisation_form": self.organisation_form,
            "branch": self.branch,
        }


def normal_form(name: str) -> str:
    """NFKC, simplified script, no whitespace: the text the parse reads (case is kept)."""
    return simplified(name)


@lru_cache(maxsize=1)
def _suffixes() -> tuple[tuple[str, ...], tuple[str, ...], re.Pattern[str], tuple[str, ...]]:
    """Form suffixes, branch suffixes, the parent-form pattern and all suffixes (longest
    first)."""
    forms = org_forms()
    by_len = sorted(forms, key=len, reverse=True)
    form_suffixes = tuple(s for s in by_len if forms[s].role == "form")
    branch_suffixes = tuple(s for s in by_len if forms[s].role == "branch")
    # A parent ends in a company form of two or more characters (有限公司, 集团, 旅行社 …).
    parents = [
        re.escape(s)
        for s in form_suffixes
        if forms[s].entity_type == "company" and len(s) >= 2 and not s.startswith("(")
    ]
    parent_re = re.compile(rf"^(.*(?:{'|'.join(parents)}))(.+)$")
    return form_suffixes, branch_suffixes, parent_re, tuple(by_len)


@lru_cache(maxsize=8)
def _by_length(suffixes: tuple[str, ...]) -> tuple[tuple[int, frozenset[str]], ...]:
    """The suffixes grouped by length, longest first, for set lookups instead of scans."""
    lengths = sorted({len(s) for s in suffixes}, reverse=True)
    return tuple((n, frozenset(s for s in suffixes if len(s) == n)) for n in lengths)


def _ends_with(text: str, suffixes: tuple[str, ...]) -> str | None:
    """The longest of ``suffixes`` that ends ``text`` (a one-character one only after at
    least ``_MIN_BODY`` characters)."""
    for length, group in _by_length(suffixes):
        if length < len(text) or (length == len(text) and length > 1):
            tail = text[-length:]
            if tail in group and (length > 1 or len(text) - 1 >= _MIN_BODY):
                return tail
    return None


def _split_branch(text: str) -> tuple[str, str | None]:
    """``…股份有限公司湖里分公司`` → (``…股份有限公司``, ``湖里分公司``)."""
    _, branch_suffixes, parent_re, _ = _suffixes()
    suffix = _ends_with(text, branch_suffixes)
    if suffix is None:
        return text, None
    m = parent_re.match(text[: -len(suffix)])
    if m is None:
        return text, None
    return m.group(1), m.group(2) + suffix


def _split_form(text: str) -> tuple[str, str | None]:
    """The organisation form at the end; a bracketed qualifier takes the form before it
    along (``…合伙企业(有限合伙)`` → ``合伙企业(有限合伙)``)."""
    form_suffixes, branch_suffixes, _, _ = _suffixes()
    suffix = _ends_with(text, form_suffixes) or _ends_with(text, branch_suffixes)
    if suffix is None:
        return text, None
    body = text[: -len(suffix)]
    if suffix.startswith("(") and suffix.endswith(")"):
        inner = _ends_with(body, form_suffixes)
        if inner is not None and not inner.startswith("(") and len(inner) > 1:
            return body[: -len(inner)], inner + suffix
    return body, suffix


def _bracketed_region(body: str) -> tuple[str, str | None]:
    """Take a bracketed region out of the body (``乐视影业(北京)`` → ``乐视影业``, ``北京``)."""
    by_name = regions.table().by_name
    for m in _BRACKET_RE.finditer(body):
        if m.group(1) in by_name:
            return body[: m.start()] + body[m.end() :], m.group(1)
    return body, None


@lru_cache(maxsize=4096)
def _is_industry(token: str) -> bool:
    """An industry word, or a word made only of industry words (观光旅游 = 观光 + 旅游)."""
    words = industry_words()
    if token in words:
        return True
    # Dynamic programming over split points: can the token be tiled by industry words?
    ok = [True] + [False] * len(token)
    for end in range(1, len(token) + 1):
        ok[end] = any(ok[start] and token[start:end] in words for start in range(end))
    return ok[-1] and len(token) > 1


def _join(tokens: list[str]) -> str | None:
    return "".join(tokens) or None


@lru_cache(maxsize=65536)
def parse_name(name: str) -> NameParts | None:
    """Parts of an organisation name; None when nothing in it is recognised (a person's name,
    a shop sign without any form or industry word)."""
    text = normal_form(name)
    if not text:
        return None
    parent, branch = _split_branch(text)
    body, form = _split_form(parent)
    body, bracket_region = _bracketed_region(body)
    _, n_region = regions.read_regions(body)
    rest = [t for t in cut(body[n_region:]) if t.strip()] if n_region < len(body) else []
    n_industry = 0
    while n_industry < len(rest) and _is_industry(rest[len(rest) - 1 - n_industry]):
        n_industry += 1
    region = body[:n_region] or bracket_region
    trade = _join(rest[: len(rest) - n_industry])
    industry = _join(rest[len(rest) - n_industry :])
    if region is None and industry is None and form is None and branch is None:
        return None
    return NameParts(region, trade, industry, form, branch)


@lru_cache(maxsize=65536)
def form_entity_type(name_key: str) -> str | None:
    """The entity type implied by the organisation form a (folded) name ends with, if any.

    The longest matching suffix decides: 街道办事处 is a government office, 办事处 a branch
    of a company, 店 implies nothing (a company's shop or an individual business).
    """
    suffix = _ends_with(name_key, _suffixes()[3])
    return org_forms()[suffix].entity_type if suffix else None
