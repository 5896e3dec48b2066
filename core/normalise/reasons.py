"""``reason_category``: a small, versioned, documented vocabulary per domain.

Reasons are free text; categories let researchers count like with like across portals. Each
domain's vocabulary is an ordered list of categories, each with keywords and, where wording
varies too much for keywords, regular expressions. The first category that matches wins;
nothing matching gives ``unclassified``. The full tables, with examples, are in
``docs/reason-vocabulary.md``.

Matching runs on the folded reason (NFKC, simplified script, no whitespace, ASCII
lower-case) cut into words by jieba (``segment.py``, search mode, so the dictionary words
inside a long word count too: ``收费标准`` has ``收费``). A keyword is a word, not a
substring: ``保险`` is not found in ``担保险种`` (担保 · 险种). Every keyword is in the jieba
dictionary, so it is never split inside; a keyword written ``A B`` needs both words somewhere
in the reason.

Each domain has its own version, bumped whenever its rules change: a change re-classifies
stored reasons, and records then show as modified. Records carry the version that classified
them in ``extra.reason_vocabulary`` (``tourism/2``).
"""

from __future__ import annotations

import re
from functools import lru_cache

from .segment import search_words
from .text import clean_text, fold
from .vocabularies import UNCLASSIFIED, VOCABULARIES

_Rule = tuple[str, tuple[tuple[str, ...], ...], re.Pattern[str] | None]


@lru_cache(maxsize=1)
def _compiled() -> dict[str, tuple[_Rule, ...]]:
    """Per domain: (category, keyword word-groups, one combined pattern) in rule order."""
    out: dict[str, tuple[_Rule, ...]] = {}
    for domain, vocabulary in VOCABULARIES.items():
        rules: list[_Rule] = []
        for c in vocabulary.categories:
            groups = tuple(tuple(k.split()) for k in c.keywords)
            pattern = re.compile("|".join(f"(?:{p})" for p in c.patterns)) if c.patterns else None
            rules.append((c.name, groups, pattern))
        out[domain] = tuple(rules)
    return out


@lru_cache(maxsize=65536)
def _classify(domain: str, folded: str) -> str:
    words = search_words(folded)
    for name, groups, pattern in _compiled()[domain]:
        if any(all(w in words for w in group) for group in groups):
            return name
        if pattern is not None and pattern.search(folded):
            return name
    return UNCLASSIFIED


def reason_category(domain: str | None, reason: str | None) -> str | None:
    """Class of ``reason`` in ``domain``'s vocabulary; ``unclassified`` when no rule matches.

    None when there is no reason, or when the domain has no vocabulary (nothing was tried, so
    nothing is claimed).
    """
    if domain not in VOCABULARIES:
        return None
    text = clean_text(reason)
    if text is None:
        return None
    return _classify(domain, fold(text))
