"""The web app's translator: its labels in Chinese and English, from ``core.catalogue``.

The language comes from the ``lang`` query parameter, else the ``lang`` cookie (set whenever
the parameter is given), else Chinese. Scraped values are never translated.
"""

from __future__ import annotations

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


__all__ = ["DEFAULT", "FIELDS", "LABELS", "LANGUAGES", "Translator", "pick_language"]
