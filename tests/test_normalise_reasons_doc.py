"""docs/reason-vocabulary.md and core/normalise/reasons.py describe the same vocabulary:
the same domains, versions and categories in the same order, and each documented example
reason is classified as documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.normalise.reasons import reason_category
from core.normalise.vocabularies import VOCABULARIES, categories

DOC = Path(__file__).resolve().parent.parent / "docs" / "reason-vocabulary.md"
_SECTION_RE = re.compile(r"^## `(\w+)` — .*\(version (\d+)\)$")
_ROW_RE = re.compile(r"^\| `(\w+)` \|.*\| ([^|]*) \|$")


def documented() -> dict[str, tuple[int, list[tuple[str, str]]]]:
    out: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    domain = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if m := _SECTION_RE.match(line):
            domain = m.group(1)
            out[domain] = (int(m.group(2)), [])
        elif domain and (m := _ROW_RE.match(line)):
            out[domain][1].append((m.group(1), m.group(2).strip()))
    return out


DOCUMENTED = documented()


def test_doc_lists_every_domain_with_its_version_and_categories_in_order() -> None:
    assert set(DOCUMENTED) == set(VOCABULARIES)
    for domain, (version, rows) in DOCUMENTED.items():
        assert version == VOCABULARIES[domain].version
        assert tuple(name for name, _ in rows) == categories(domain)


@pytest.mark.parametrize(
    ("domain", "category", "example"),
    [
        (domain, name, example)
        for domain, (_, rows) in DOCUMENTED.items()
        for name, example in rows
        if example and example != "—"
    ],
)
def test_documented_examples_classify_as_documented(
    domain: str, category: str, example: str
) -> None:
    for reason in example.split(" / "):
        assert reason_category(domain, reason) == category
