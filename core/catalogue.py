"""The one zh/en catalogue: every string a person reads, in Chinese and English.

The web app and alert messages used to keep their own catalogues and translated the same
domain words (field names, event kinds, statuses, health ...) differently. The strings now
live in ``catalogue.yml`` next to this module, read once on first use: the shared
``vocabulary`` (field names of the schema, values of its enumerations, common terms) and
the own texts of each user (``web``, ``alerts``). Keys are dotted paths
(``vocabulary.status.active``); every key has both languages. A part of the app may keep its
texts in a file of its own, ``catalogue.<part>.yml`` beside it, merged in; a key written in
two files is an error.

Pure: no I/O beyond reading those files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

LANGUAGES: tuple[str, ...] = ("zh", "en")
DEFAULT = "zh"

CATALOGUE_FILE = re.compile(r"catalogue(\.[a-z0-9_-]+)?\.yml")
# Groups of the shared vocabulary that name values of the schema's enumerations.
FIELD = "vocabulary.field"
TERM = "vocabulary.term"


def check_language(language: str) -> str:
    """``language`` when the catalogue has it, else ValueError (callers that must not guess)."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}: expected one of {', '.join(LANGUAGES)}")
    return language


def pick_language(*candidates: str | None) -> str:
    """The first candidate the catalogue has, else the default: for user-chosen languages."""
    for candidate in candidates:
        if candidate is not None and candidate in LANGUAGES:
            return candidate
    return DEFAULT


def _flatten(node: Mapping[str, Any], prefix: str, out: dict[str, dict[str, str]]) -> None:
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if not isinstance(value, Mapping):
            raise ValueError(f"catalogue: {path} is neither a group nor a zh/en pair")
        if set(value) & set(LANGUAGES) and all(isinstance(v, str) for v in value.values()):
            out[path] = {str(lang): str(text) for lang, text in value.items()}
        else:
            _flatten(value, path, out)


@cache
def entries() -> dict[str, dict[str, str]]:
    """Every key of the catalogue with its texts by language, as written in its files."""
    out: dict[str, dict[str, str]] = {}
    names = sorted(p.name for p in files("core").iterdir() if CATALOGUE_FILE.fullmatch(p.name))
    for name in names:
        data = yaml.safe_load(files("core").joinpath(name).read_text(encoding="utf-8"))
        found: dict[str, dict[str, str]] = {}
        _flatten(data or {}, "", found)
        if twice := sorted(set(found) & set(out)):
            raise ValueError(f"catalogue: {name} writes keys written before: {', '.join(twice)}")
        out.update(found)
    return out


@cache
def _groups(language: str) -> dict[str, dict[str, str]]:
    """``group path -> {child key: text}`` over the leaves, for one language."""
    groups: dict[str, dict[str, str]] = {}
    for path, texts in entries().items():
        parent, _, child = path.rpartition(".")
        groups.setdefault(parent, {})[child] = texts.get(language) or texts[DEFAULT]
    return groups


def text(key: str, language: str) -> str:
    """The text of one dotted ``key``; KeyError when the catalogue lacks it."""
    texts = entries()[key]
    return texts.get(check_language(language)) or texts[DEFAULT]


def group(path: str, language: str) -> Mapping[str, str]:
    """The leaves directly under ``path`` (``vocabulary.event`` ...) in ``language``."""
    return _groups(check_language(language)).get(path, {})


def word(group_name: str, value: object, language: str) -> str | None:
    """A value of the shared vocabulary (``word("status", "active", "en")``), None if unknown."""
    return group(f"vocabulary.{group_name}", language).get(str(value))


def field_name(name: str, language: str) -> str:
    """The label of a schema field (records', events', evidence's); unknown names as they are."""
    return group(FIELD, language).get(name, name)


class Texts:
    """One user's texts (``section`` = ``web`` or ``alerts``) in one language, over the shared
    vocabulary: ``t["key"]`` reads the section, then the common terms, then field names."""

    def __init__(self, section: str, language: str) -> None:
        self.section = section
        self.language = check_language(language)

    def __getitem__(self, key: str) -> str:
        for path in (self.section, TERM, FIELD):
            found = group(path, self.language).get(key)
            if found is not None:
                return found
        raise KeyError(key)

    def get(self, key: str, default: str | None = None) -> str | None:
        try:
            return self[key]
        except KeyError:
            return default

    def group(self, name: str) -> Mapping[str, str]:
        """A nested group of the section (``problem``, ``criterion`` ...)."""
        return group(f"{self.section}.{name}", self.language)

    def word(self, group_name: str, value: object) -> str | None:
        return word(group_name, value, self.language)

    def field(self, name: str) -> str:
        return field_name(name, self.language)

    def labels(self) -> dict[str, str]:
        """Every flat key ``t[key]`` answers, as one dict (field names, terms, the section)."""
        return {
            **group(FIELD, self.language),
            **group(TERM, self.language),
            **group(self.section, self.language),
        }
