"""FollowTheMoney export (export/ftm.py) over records replayed from the fixtures:
xmtravel day 1 (companies and tour guides, a warning list and a good list) and mct_tourism
day 1 (persons on a blacklist)."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from typing import Any, cast

import pytest
from followthemoney import model
from followthemoney.types import registry

from core.registry import get_source
from export.ftm import (
    SANCTION_KINDS,
    entities,
    export,
    names_from_sources,
    sanction_id,
    subject_id,
)
from tests.helpers import DAY1, FIXTURES, exported, replay

pytestmark = pytest.mark.replay

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}:\d{2})?")
SCHEMA_OF_TYPE = {
    "company": "Company",
    "individual_business": "Company",
    "person": "Person",
    "organization": "Organization",
    "government": "PublicBody",
    "unknown": "LegalEntity",
}


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('ftm') / 'creditwatch.sqlite'}"
    replay(url, DAY1)
    replay(url, FIXTURES / "mct_tourism" / "mct_tourism-day1.yaml", source="mct_tourism")
    out = exported(url) + exported(url, "mct_tourism")
    assert {r["entity_type"] for r in out} == {"company", "person"}
    assert {r["list_kind"] for r in out} == {"warning", "good", "blacklist"}
    return out


@pytest.fixture(scope="module")
def names() -> dict[str, tuple[str, ...]]:
    return names_from_sources([get_source("xmtravel"), get_source("mct_tourism")])


@pytest.fixture(scope="module")
def exported_entities(
    records: list[dict[str, Any]], names: dict[str, tuple[str, ...]]
) -> list[dict[str, Any]]:
    return list(export(records, names=names))


def by_id(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {e["id"]: e for e in items}
    assert len(out) == len(items), "an id is exported twice"
    return out


def lines(items: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(e, ensure_ascii=False, sort_keys=True) for e in items]


def person(records: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in records if r["id_number_masked"] and r["list_kind"] == "blacklist")


def redacted(record: dict[str, Any]) -> dict[str, Any]:
    """A person's record as core/redact.py shows it: short name, no masked ID, hashed keys."""
    name = record["entity_name"]
    return {
        **record,
        "entity_name": name[0] + "*" * (len(name) - 1),
        "entity_name_key": None,
        "id_number_masked": None,
        "record_key": "redacted:0123456789abcdef",
        "entity_id": "redacted:fedcba9876543210",
        "reason": record["reason"].replace(name, name[0] + "*" * (len(name) - 1)),
    }


def assert_valid(entity: dict[str, Any]) -> None:
    """As FtM reads untrusted data: every value survives re-cleaning unchanged, the schema
    validates it, required properties are there, and the id is one FtM accepts."""
    schema = model.get(entity["schema"])
    assert schema is not None and not schema.abstract
    assert registry.entity.validate(entity["id"]) and len(entity["id"]) <= 200
    assert schema.validate(cast(Any, entity)) is None  # raises InvalidData on a bad value
    proxy = model.get_proxy(entity, cleaned=False)
    assert {p: sorted(v) for p, v in proxy.properties.items()} == entity["properties"]
    assert proxy.id == entity["id"]
    for name in schema.required:
        assert entity["properties"].get(name), f"{entity['schema']} lacks {name}"
    for name in entity["properties"]:
        assert not schema.properties[name].stub


def test_every_exported_entity_validates_and_every_reference_resolves(
    exported_entities: list[dict[str, Any]],
) -> None:
    known = by_id(exported_entities)
    for entity in exported_entities:
        assert_valid(entity)
        assert entity["datasets"] == ["creditwatch"]
        schema = model[entity["schema"]]
        for name, values in entity["properties"].items():
            prop = schema.properties[name]
            if prop.type == registry.entity:
                for value in values:
                    assert value in known
                    assert model[known[value]["schema"]].is_a(prop.range)


def test_the_subject_schema_is_what_the_entity_type_says(records: list[dict[str, Any]]) -> None:
    for record in records:
        subject = entities(record)[0]
        assert subject["schema"] == SCHEMA_OF_TYPE[record["entity_type"]]
        assert subject["id"] == subject_id(record)
        assert subject["properties"]["name"] == [record["entity_name"]]
        assert subject["properties"]["country"] == ["cn"]


@pytest.mark.parametrize("entity_type", sorted(SCHEMA_OF_TYPE))
def test_every_entity_type_exports_valid_entities(
    records: list[dict[str, Any]], entity_type: str
) -> None:
    company = next(
        r
        for r in records
        if r["uscc"] and r["legal_representative"] and r["list_kind"] in SANCTION_KINDS
    )
    record = {**company, "entity_type": entity_type, "uscc": None}
    out = entities(record)
    for entity in out:
        assert_valid(entity)
    assert out[0]["schema"] == SCHEMA_OF_TYPE[entity_type]
    legal_form = out[0]["properties"].get("legalForm")
    assert legal_form == (["个体工商户"] if entity_type == "individual_business" else None)
    # Only an organisation has a legal representative, as a Directorship to a Person.
    schemas = [e["schema"] for e in out[1:]]
    is_org = model[SCHEMA_OF_TYPE[entity_type]].is_a("Organization")
    assert schemas == (["Person", "Directorship", "Sanction"] if is_org else ["Sanction"])


def test_an_unknown_subject_with_a_uscc_is_an_organization(records: list[dict[str, Any]]) -> None:
    company = next(r for r in records if r["uscc"])
    assert entities({**company, "entity_type": "unknown"})[0]["schema"] == "Organization"


def test_the_uscc_is_ftms_usc_code_and_an_invalid_one_is_left_out(
    records: list[dict[str, Any]],
) -> None:
    valid = next(r for r in records if r["uscc"])
    assert entities(valid)[0]["properties"]["uscCode"] == [valid["uscc"]]
    invalid = next(r for r in records if r["uscc_raw"] and not r["uscc"])
    text = json.dumps(entities(invalid), ensure_ascii=False)
    assert invalid["uscc_raw"] not in text
    licensed = next(r for r in records if r["registration_no"])
    assert entities(licensed)[0]["properties"]["licenseNumber"] == [licensed["registration_no"]]
    gs15 = {**licensed, "registration_no": "350200100012345"}
    assert entities(gs15)[0]["properties"]["registrationNumber"] == ["350200100012345"]


def test_subject_ids_are_stable_and_shared_across_lists(
    records: list[dict[str, Any]], exported_entities: list[dict[str, Any]]
) -> None:
    company = next(r for r in records if r["entity_id"] == "uscc-91350213MA028DE74Q")
    assert subject_id(company) == "creditwatch-uscc-91350213MA028DE74Q"  # readable, golden
    lists_of: dict[str, set[str]] = {}
    for record in records:
        lists_of.setdefault(record["entity_id"], set()).add(record["list"])
    shared = {eid for eid, lists in lists_of.items() if len(lists) > 1}
    assert len(shared) >= 3  # companies and persons on both xmtravel lists
    known = by_id(exported_entities)
    for eid in shared:
        ids = {entities(r)[0]["id"] for r in records if r["entity_id"] == eid}
        assert len(ids) == 1
        [merged_id] = ids
        assert known[merged_id]["schema"] in ("Company", "Person")
    # Only the key makes the id: other fields, or a run later, do not move it.
    moved = {**company, "entity_name": "改名", "last_seen": "2030-01-01T00:00:00+00:00"}
    assert [e["id"] for e in entities(moved)] == [e["id"] for e in entities(company)]
    assert subject_id(company, dataset="other") == "other-uscc-91350213MA028DE74Q"


def test_one_subject_entity_merges_its_records(
    records: list[dict[str, Any]], exported_entities: list[dict[str, Any]]
) -> None:
    known = by_id(exported_entities)
    subjects = {subject_id(r) for r in records}
    assert subjects <= set(known)
    eid = "xmtravel-pb122a3fdf23c2cd93bbb742a0f4fca77"  # a guide on both xmtravel lists
    mine = [r for r in records if r["entity_id"] == eid]
    subject = known[subject_id(mine[0])]
    assert subject["first_seen"] == min(r["first_seen"] for r in mine)[:19]
    assert subject["properties"]["licenseNumber"] == sorted({r["registration_no"] for r in mine})


def test_a_sanction_per_adverse_entry_linked_to_its_subject(
    records: list[dict[str, Any]],
    exported_entities: list[dict[str, Any]],
    names: dict[str, tuple[str, ...]],
) -> None:
    sanctions = {e["id"]: e for e in exported_entities if e["schema"] == "Sanction"}
    adverse = [r for r in records if r["list_kind"] in SANCTION_KINDS]
    assert len(sanctions) == len(adverse) > 0
    for record in adverse:
        props = sanctions[sanction_id(record)]["properties"]
        assert props["entity"] == [subject_id(record)]
        assert props["programId"] == [record["list"]]
        assert props["program"] == sorted(names[record["list"]])
        assert props["publisher"] == sorted(names[record["source"]])
        assert props["status"] == [record["status"]]
        assert props["sourceUrl"] == [record["source_url"]]
        assert props["startDate"] == [record["decided_on"]]
        assert props.get("endDate") == ([record["valid_until"]] if record["valid_until"] else None)
        assert props.get("authorityId") == (
            [record["case_number"]] if record["case_number"] else None
        )
        assert props.get("provisions") == ([record["measure"]] if record["measure"] else None)
    # An honour is no sanction: good-list entries give their subject only.
    for record in records:
        if record["list_kind"] == "good":
            assert "Sanction" not in {e["schema"] for e in entities(record)}


def test_without_names_the_program_is_the_list_id(records: list[dict[str, Any]]) -> None:
    record = next(r for r in records if r["list_kind"] in SANCTION_KINDS)
    sanction = entities(record)[-1]
    assert sanction["properties"]["program"] == [record["list"]]
    assert "publisher" not in sanction["properties"]


def test_dates_are_iso(exported_entities: list[dict[str, Any]]) -> None:
    seen = 0
    for entity in exported_entities:
        schema = model[entity["schema"]]
        for name, values in entity["properties"].items():
            if schema.properties[name].type == registry.date:
                seen += len(values)
                assert all(ISO_DATE.fullmatch(v) for v in values), (name, values)
        for key in ("first_seen", "last_seen"):
            assert ISO_DATE.fullmatch(entity[key])
    assert seen > 0


def test_a_masked_id_number_is_never_an_identifier_or_an_id(
    records: list[dict[str, Any]], exported_entities: list[dict[str, Any]]
) -> None:
    masked = {r["id_number_masked"] for r in records if r["id_number_masked"]}
    assert masked
    digits = {m.replace("*", "") for m in masked}
    for entity in exported_entities:
        assert not any(m in entity["id"] for m in masked | digits)
        schema = model[entity["schema"]]
        for name, values in entity["properties"].items():
            if schema.properties[name].type in (registry.identifier, registry.entity):
                for value in values:
                    assert not any(part in value for part in masked | digits), (name, value)
            if name == "notes":
                assert all("masked" in value for value in values)
    record = person(records)
    [note] = entities(record)[0]["properties"]["notes"]
    assert note.endswith(record["id_number_masked"])


def test_a_redacted_record_still_exports(records: list[dict[str, Any]]) -> None:
    original = person(records)
    record = redacted(original)
    out = entities(record)
    for entity in out:
        assert_valid(entity)
    subject, sanction = out
    assert subject["properties"]["name"] == [record["entity_name"]]
    assert "notes" not in subject["properties"]
    assert sanction["properties"]["entity"] == [subject["id"]]
    assert subject["id"] != subject_id(original) and sanction["id"] != sanction_id(original)
    assert subject["id"] == entities(record)[0]["id"]  # the pseudonym is stable, so is its id
    text = json.dumps(out, ensure_ascii=False)
    assert original["entity_name"] not in text
    assert original["id_number_masked"] not in text


def test_the_export_is_deterministic(
    records: list[dict[str, Any]],
    exported_entities: list[dict[str, Any]],
    names: dict[str, tuple[str, ...]],
) -> None:
    again = list(export(records, names=names))
    assert lines(again) == lines(exported_entities)
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    other = lines(list(export(shuffled, names=names)))
    assert sorted(other) == sorted(lines(exported_entities))
    merged = [e for e in exported_entities if e["schema"] != "Sanction"]
    assert [e["id"] for e in merged] == sorted(e["id"] for e in merged)


def test_sanctions_stream_before_the_input_ends(records: list[dict[str, Any]]) -> None:
    record = next(r for r in records if r["list_kind"] in SANCTION_KINDS)

    def feed() -> Iterator[dict[str, Any]]:
        yield record
        raise AssertionError("read past the first record")

    first = next(export(feed()))
    assert first["schema"] == "Sanction" and first["id"] == sanction_id(record)


def test_sources_that_disagree_on_the_kind_of_subject_merge_into_a_legal_entity(
    records: list[dict[str, Any]],
) -> None:
    company = next(r for r in records if r["uscc"])
    as_person = {**company, "entity_type": "person", "list": "other.list", "record_key": "k"}
    out = list(export([company, as_person]))
    [subject] = [e for e in out if e["id"] == subject_id(company)]
    assert subject["schema"] == "LegalEntity"
    assert_valid(subject)


def test_a_record_without_dates_or_names_exports() -> None:
    record = {
        "source": "x",
        "list": "x.blacklist",
        "list_kind": "blacklist",
        "record_key": "k",
        "entity_id": "x-n1",
        "entity_name": "某某公司",
        "entity_type": "company",
        "status": "active",
        "source_url": "https://example.org/a",
    }
    out = entities(record)
    for entity in out:
        assert_valid(entity)
    assert [e["schema"] for e in out] == ["Company", "Sanction"]
    assert "first_seen" not in out[0]
