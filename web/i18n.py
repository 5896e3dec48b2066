"""The web app's translator: its labels in Chinese and English, from ``core.catalogue``.

The language comes from the ``lang`` query parameter, else the ``lang`` cookie (set whenever
the parameter is given), else Chinese. Scraped values are never translated.
"""

from __future__ import annotations

import re
from typing import Any

from core import catalogue
from core.catalogue import DEFAULT, LANGUAGES, Texts

SECTION = "web"

# Flat views, for tests and callers that want every label at once.
LABELS: dict[str, dict[str, str]] = {lang: Texts(SECTION, lang).labels() for lang in LANGUAGES}
FIELDS: dict[str, dict[str, str]] = {
    lang: dict(catalogue.group(catalogue.FIELD, lang)) for lang in LANGUAGES
}


def pick_language(query: str | None, cookie: str | None) -> str:
    return catalogue.pick_language(query, cookie)


class Translator:
    """Labels of one language, for templates: ``t("search")``, ``t.value("status", s)``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in LANGUAGES else DEFAULT
        self.texts = Texts(SECTION, self.lang)

    def __call__(self, key: str, **values: Any) -> str:
        text = self.texts.get(key) or key
        return text.format(**values) if values else text

    def value(self, group: str, value: Any) -> str:
        """A vocabulary value (status, health, event kind …) in this language; unknown
        values as they are."""
        if value is None:
            return self.texts["none"]
        return self.texts.word(group, value) or str(value)

    def field(self, name: str) -> str:
        return self.texts.field(name)

    def name(self, item: Any) -> str:
        """A registry item's name (source or list) in this language."""
        return getattr(item, "name_en" if self.lang == "en" else "name_zh", None) or item.id

    def operation(self, method: str, path: str, summary: str | None) -> tuple[str, bool]:
        """An API operation's summary in this language and whether it is: OpenAPI's own
        summaries are English, so Chinese comes from ``ui_api_op.<get_api_sources>`` (the
        method and path as a key); an operation the catalogue lacks falls back to English."""
        return self._described(summary, ("ui_api_op", operation_key(method, path)))

    def parameter(
        self, name: str, description: str | None, method: str = "", path: str = ""
    ) -> tuple[str, bool]:
        """An API parameter's description in this language, the same way: the operation's
        own (``ui_api_op_param.<operation>_<name>``: ``from`` is not the same date on every
        route), else the name's (``ui_api_param.<name>``)."""
        return self._described(
            description,
            ("ui_api_op_param", operation_key(method, path, name)),
            ("ui_api_param", operation_key(name)),
        )

    def _described(self, english: str | None, *keys: tuple[str, str]) -> tuple[str, bool]:
        """The first text the catalogue has for ``keys`` (group, key), else ``english``;
        and whether the answer is in this language (nothing to say counts as in it)."""
        if self.lang == "en":
            return english or "", True
        for group, key in keys:
            if found := self.texts.group(group).get(key):
                return found, True
        return english or "", not english


def operation_key(*parts: str) -> str:
    """A catalogue key for an API operation or parameter: ``GET /api/lists/{list_id}`` →
    ``get_api_lists_list_id`` (paths hold dots and braces, which catalogue keys cannot)."""
    return re.sub(r"[^a-z0-9]+", "_", " ".join(parts).lower()).strip("_")


__all__ = [
    "DEFAULT",
    "FIELDS",
    "LABELS",
    "LANGUAGES",
    "Translator",
    "operation_key",
    "pick_language",
]
