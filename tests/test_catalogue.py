"""The one zh/en catalogue (core/catalogue.yml): complete in both languages, and the words
the web app and alert messages share are the same words."""

from __future__ import annotations

import string

import pytest

from core import catalogue
from core.schema import EVENT_FIELDS, RECORD_FIELDS


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_key_has_zh_and_en() -> None:
    entries = catalogue.entries()
    assert len(entries) > 200
    for key, texts in entries.items():
        assert set(texts) == set(catalogue.LANGUAGES), key
        assert all(t.strip() for t in texts.values()), key
        # A placeholder filled in one language is filled in the other.
        assert _placeholders(texts["zh"]) == _placeholders(texts["en"]), key


def test_every_schema_field_has_a_label() -> None:
    for name in (*RECORD_FIELDS, *EVENT_FIELDS):
        for lang in catalogue.LANGUAGES:
            assert catalogue.group(catalogue.FIELD, lang).get(name), (name, lang)


def test_lookups() -> None:
    assert catalogue.text("vocabulary.status.active", "en") == "active"
    assert catalogue.word("event", "listed", "zh") == "列入"
    assert catalogue.word("event", "nope", "zh") is None
    assert catalogue.field_name("not_a_field", "en") == "not_a_field"
    t = catalogue.Texts("alerts", "en")
    assert t["digest"] == "digest" and t["source"] == "Source" and t["entity"] == "Entity"
    assert t.group("criterion")["fuzzy_name"] == "similar name"
    with pytest.raises(KeyError):
        t["no such key"]
    with pytest.raises(ValueError):
        catalogue.Texts("web", "fr")
    assert catalogue.pick_language(None, "fr", "en") == "en"
    assert catalogue.pick_language("fr") == catalogue.DEFAULT


def test_web_and_alerts_say_shared_words_alike() -> None:
    from alerts.messages import _texts
    from web.i18n import Translator

    for lang in catalogue.LANGUAGES:
        web, alert = Translator(lang), _texts(lang)
        for name in ("source", "title", "case_number", "id_number_masked", "raw_sha256"):
            assert web.field(name) == alert.field(name)
        assert web.value("cause", "disappeared") == alert.word("cause", "disappeared")
