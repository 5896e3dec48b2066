"""The process's jieba tokenizer, with the project's user dictionary.

The user dictionary ships under ``lexicon/``: GB/T 2260 region names (``regions.txt``: full
and short forms of divisions in use, full names of former ones), organisation-form suffixes
(``org_forms.txt``) and industry words (``industries.txt``); the reason vocabularies add
their keywords (see ``vocabularies.py``). Words are added with at least ``MIN_FREQ`` so that jieba
keeps them whole instead of gluing them to a neighbour.

Loading costs about a second (jieba's own dictionary, then ours) and happens once per process,
on first use. jieba caches its prefix dictionary in the system temp directory
(``tempfile.gettempdir()``, one file per user), never in the repository. Cutting is done
with ``HMM=False``: an unknown name stays as single characters instead of being guessed into
a word, so the result depends only on the dictionaries.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import jieba

from .regions import table as region_table
from .vocabularies import keywords

MIN_FREQ = 2000


@dataclass(frozen=True)
class OrgForm:
    suffix: str
    entity_type: str | None
    role: str  # "form" or "branch"


def _dict_lines(name: str) -> Iterable[str]:
    text = (resources.files(__package__) / "lexicon" / name).read_text(encoding="utf-8")
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            yield line


@lru_cache(maxsize=1)
def org_forms() -> dict[str, OrgForm]:
    """Suffix → its form (read once from ``lexicon/org_forms.txt``)."""
    forms: dict[str, OrgForm] = {}
    for line in _dict_lines("org_forms.txt"):
        suffix, kind, role = line.split("\t")
        forms[suffix] = OrgForm(suffix, None if kind == "-" else kind, role)
    return forms


@lru_cache(maxsize=1)
def industry_words() -> frozenset[str]:
    """Industry words (read once from ``lexicon/industries.txt``)."""
    return frozenset(_dict_lines("industries.txt"))


def _extra_words() -> Iterable[str]:
    yield from region_table().by_name
    yield from org_forms()
    yield from industry_words()
    yield from keywords()


@lru_cache(maxsize=1)
def tokenizer() -> jieba.Tokenizer:
    """jieba with its default dictionary plus the project's words; built once per process."""
    logging.getLogger("jieba").setLevel(logging.WARNING)  # no "Building prefix dict" noise
    tk = jieba.Tokenizer()
    # One cache per user: a cache another user wrote first cannot be replaced by this one.
    tk.cache_file = f"jieba.u{os.getuid()}.cache"
    tk.initialize()
    for word in _extra_words():
        tk.add_word(word, freq=max(MIN_FREQ, tk.FREQ.get(word) or 0))
    return tk


def cut(text: str) -> list[str]:
    """Words of ``text`` (precise mode, no HMM guessing of unknown words)."""
    return tokenizer().lcut(text, HMM=False)


def search_words(text: str) -> frozenset[str]:
    """Words of ``text`` plus every dictionary word inside a longer one (like jieba's search
    mode, at any length): ``收费标准`` also yields ``收费`` and ``标准``, ``社会保险费``
    also ``社会保险``."""
    tk = tokenizer()
    words: set[str] = set()
    for token in tk.lcut(text, HMM=False):
        words.add(token)
        for i in range(len(token)):
            for j in range(i + 2, len(token) + (i > 0)):
                if tk.FREQ.get(token[i:j]):
                    words.add(token[i:j])
    return frozenset(words)
