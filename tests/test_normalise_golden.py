"""The golden set: published values → expected schema values, one test per case.

Cases live in ``tests/golden/*.yaml`` (format in ``tests/golden/README.md``). A ``record``
case runs a whole entry through ``normalise_entry`` and compares only the fields it names
(``extra.a.b`` reaches into ``extra``; ``<absent>`` means the key must not be there); the
other kinds exercise one field's function on one published value.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.items import PageRef, RawEntry
from core.normalise import (
    NormaliseError,
    case_number_key,
    classify_code,
    clean_text,
    entity_type,
    field_for_label,
    name_key,
    normalise_entry,
    parse_court_case_number,
    parse_date,
    parse_measure,
    parse_name,
    parse_uscc,
    parse_valid_until,
    reason_category,
    region_from_address,
    region_from_id_number,
    region_from_uscc,
    senses_values,
)
from core.normalise.codes import code_check
from core.normalise.money import parse_amount_column

GOLDEN = Path(__file__).resolve().parent / "golden"
ROOT = GOLDEN.parent.parent
ABSENT = "<absent>"


def load_cases() -> list[dict[str, Any]]:
    cases = []
    for path in sorted(GOLDEN.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            cases.append({**case, "file": path.name})
    return cases


CASES = load_cases()


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _record(inp: dict[str, Any]) -> dict[str, Any]:
    entry = RawEntry(
        source=inp["source"],
        list=inp["list"],
        source_url=f"https://example.invalid/{inp['list']}",
        raw_sha256="0" * 64,
        fields=inp.get("fields") or {},
        row=inp.get("row") or {},
        subject=inp.get("subject") or {},
        pages=[PageRef(f"https://example.invalid/{inp['list']}", "0" * 64, "detail")],
    )
    return normalise_entry(
        entry,
        list_kind=inp["list_kind"],
        record_key_rule=inp["record_key_rule"],
        domain=inp.get("domain"),
        label_overrides=inp.get("label_overrides"),
    )


def _region(inp: dict[str, Any]) -> str | None:
    return (
        region_from_uscc(inp.get("uscc"))
        or region_from_id_number(inp.get("id_number"))
        or region_from_address(clean_text(inp.get("address")))
    )


def _code(value: str) -> dict[str, Any]:
    kind = classify_code(value)
    return {"kind": kind, "valid": code_check(kind, value)}


def _name(value: str) -> dict[str, Any]:
    name = clean_text(value)
    return {"entity_name": name, "entity_name_key": name_key(name)}


def _name_parts(value: str) -> dict[str, Any] | None:
    parts = parse_name(value)
    return parts.as_dict() if parts else None


def _measure(value: str) -> dict[str, Any]:
    m = parse_measure(value)
    return {
        "penalty_types": m.penalty_types,
        "fine_yuan": m.fine_yuan,
        "confiscated_yuan": m.confiscated_yuan,
    }


def _case_number(value: str) -> dict[str, Any]:
    number = clean_text(value)
    return {"case_number_key": case_number_key(number), "parts": parse_court_case_number(number)}


FIELD_KINDS: dict[str, Callable[[Any], Any]] = {
    "uscc": lambda v: vars(parse_uscc(v)),
    "code": _code,
    "region": _region,
    "name": _name,
    "name_parts": _name_parts,
    "entity_type": lambda v: entity_type(v["name"], **{k: x for k, x in v.items() if k != "name"}),
    "date": lambda v: _iso(parse_date(v)),
    "valid_until": lambda v: _iso(parse_valid_until(v)),
    "measure": _measure,
    "amount_column": lambda v: parse_amount_column(v["text"], unit=v["unit"]),
    "case_number": _case_number,
    "reason": lambda v: reason_category(v["domain"], v["reason"]),
    "label": field_for_label,
    "senses": lambda v: senses_values(v["entity"], v["sencesMap"]),
}


def _get(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return ABSENT
        value = value[part]
    return value


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_golden_case(case: dict[str, Any]) -> None:
    expect = case["expect"]
    if case["kind"] != "record":
        assert FIELD_KINDS[case["kind"]](case["input"]) == expect
        return
    if isinstance(expect, dict) and expect.get("error") == "NormaliseError":
        with pytest.raises(NormaliseError):
            _record(case["input"])
        return
    record = _record(case["input"])
    got = {path: _get(record, path) for path in expect}
    assert got == expect


def test_golden_set_size_and_origins() -> None:
    """At least 300 cases; ids unique; every case says where it came from."""
    assert len(CASES) >= 300
    assert len({c["id"] for c in CASES}) == len(CASES)
    assert all(c.get("source") for c in CASES)
    assert set(FIELD_KINDS) | {"record"} >= {c["kind"] for c in CASES}


def test_every_real_sample_contributes_cases() -> None:
    """Each data file under fixtures/samples/ is the source of at least one case."""
    samples = ROOT / "fixtures" / "samples"
    files = {
        str(p.relative_to(ROOT)) for p in samples.rglob("*") if p.is_file() and p.suffix != ".md"
    }
    used = {c["source"] for c in CASES}
    assert files and files <= used, sorted(files - used)


def test_every_form_named_in_the_issue_has_a_case() -> None:
    """Dates, money forms and code kinds the issue lists each appear in the golden set."""
    dates = {repr(c["input"]) for c in CASES if c["kind"] == "date"}
    for form in ("2024-05-12", "2024年5月12日", "2024/05/12", "2024.5.12", "20240512"):
        assert repr(form) in dates
    measures = " ".join(str(c["input"]) for c in CASES if c["kind"] == "measure")
    for form in ("叁万元", "伍仟元", "30,000元", "1.5万元", "没收违法所得"):
        assert form in measures
    kinds = {c["expect"]["kind"] for c in CASES if c["kind"] == "code"}
    assert {"org_code", "registration_no", "resident_id", "masked_id", "uscc", "filler"} <= kinds
