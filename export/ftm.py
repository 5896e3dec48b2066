"""FollowTheMoney (FtM) export: schema records as FtM entities, for Aleph, yente and ``ftm``.

Pure functions, no I/O. One record becomes:

* its subject: ``Company`` (company, individual business), ``Person``, ``PublicBody``
  (government), ``Organization`` (organization; unknown with a USCC, which only
  organisations get) or ``LegalEntity`` (unknown: FtM's type for "person or organisation,
  we can't tell"; it merges into either later);
* a ``Sanction`` for an entry of an adverse list (blacklist, penalty, warning). Entries of
  good, redlist, licence and other lists get none: FtM has no schema for an honour or a
  licence grant, and a ``Sanction`` would flag a model tour guide as sanctioned in every
  screening tool that reads the export. Their subject is still exported: its identity
  (name, USCC, licence number) is published fact;
* for an organisation with a ``legal_representative``, a ``Person`` (name only, its id
  scoped to the organisation: two companies' 法定代表人 of the same name are not taken for
  one person) and a ``Directorship`` linking them.

The masked ID number of a person is kept out of every identifier property: FtM matches
entities on identifiers, and ``3502**********1234`` is shared by many people, so it would
merge strangers. It goes, labelled as masked, into the person's ``notes``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from followthemoney import EntityProxy, model
from followthemoney.exc import InvalidData
from followthemoney.types import registry
from followthemoney.util import ENTITY_ID_LEN

if TYPE_CHECKING:
    from core.registry import SourceDef

DATASET = "creditwatch"
COUNTRY = "cn"
# List kinds whose entries are restrictions or penalties decided by an authority.
SANCTION_KINDS = frozenset({"blacklist", "penalty", "warning"})
ORGANISATION_TYPES = {
    "company": "Company",
    "individual_business": "Company",
    "organization": "Organization",
    "government": "PublicBody",
}
INDIVIDUAL_BUSINESS = "个体工商户"
REPRESENTATIVE_ROLE = "legal representative (法定代表人/负责人)"
MASKED_ID_NOTE = "ID number as published, masked by the publisher (证件号码，发布方已遮蔽): {}"
# A 15-digit 注册号 (GS15) is a business registration number; the other numbers the schema
# collects under registration_no (许可证编号, 导游证号, 证书编号 …) are licences.
_GS15 = re.compile(r"\d{15}")

Names = Mapping[str, Sequence[str]]


def names_from_sources(sources: Iterable[SourceDef]) -> dict[str, tuple[str, ...]]:
    """Chinese and English names of each source and list, by id, for ``names=``.

    The registry is read by the caller, so that the mapping here stays pure.
    """
    names: dict[str, tuple[str, ...]] = {}
    for source in sources:
        names[source.id] = (source.name_zh, source.name_en)
        for lst in source.lists:
            names[lst.id] = (lst.name_zh, lst.name_en)
    return names


def make_id(dataset: str, *parts: str) -> str:
    """A valid FtM id, readable when the key is one already (``creditwatch-uscc-9135…``).

    Several parts, or a key FtM would refuse (``redacted:…`` has a colon) or too long, are
    hashed (SHA-1 of the parts joined by U+001F): a project key is never 40 bare hex
    digits, so the two forms cannot collide.
    """
    if len(parts) == 1:
        readable = f"{dataset}-{parts[0]}"
        if len(readable) <= ENTITY_ID_LEN and registry.entity.validate(readable):
            return readable
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8"), usedforsecurity=False)
    return f"{dataset}-{digest.hexdigest()}"


def subject_id(record: Mapping[str, Any], *, dataset: str = DATASET) -> str:
    """The subject's id, from ``entity_id`` alone: the same across lists, sources and runs."""
    return make_id(dataset, str(record["entity_id"]))


def sanction_id(record: Mapping[str, Any], *, dataset: str = DATASET) -> str:
    """The entry's id, from its list and ``record_key`` (hashed: person keys name the person)."""
    return make_id(dataset, "sanction", str(record["list"]), str(record["record_key"]))


def _timestamp(value: Any) -> str | None:
    """A UTC datetime as FtM writes it; storage may hand back naive UTC or an offset."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.replace(microsecond=0).isoformat()


def _day(value: Any) -> str | None:
    """A calendar date as ISO text (schema dates are already Asia/Shanghai days)."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _context(record: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Provenance kept beside the properties, as FtM's statement entities write it."""
    context: dict[str, Any] = {"datasets": [dataset]}
    for key in ("first_seen", "last_seen"):
        stamp = _timestamp(record.get(key))
        if stamp is not None:
            context[key] = stamp
    return context


def _make(schema: str, id_: str, record: Mapping[str, Any], dataset: str) -> EntityProxy:
    proxy = model.make_entity(schema)
    proxy.id = id_
    proxy.context = _context(record, dataset)
    return proxy


def _add(proxy: EntityProxy, prop: str, value: Any) -> None:
    """Add a value through FtM's type cleaning; a value FtM rejects is dropped, not forced."""
    text = _text(value)
    if text is not None:
        proxy.add(prop, text)


def _subject_schema(record: Mapping[str, Any]) -> str:
    entity_type = record.get("entity_type")
    if entity_type == "person":
        return "Person"
    if entity_type in ORGANISATION_TYPES:
        return ORGANISATION_TYPES[entity_type]
    # unknown: a valid USCC is only issued to organisations (individual businesses included).
    return "Organization" if record.get("uscc") else "LegalEntity"


def _subject(record: Mapping[str, Any], dataset: str) -> EntityProxy:
    proxy = _make(_subject_schema(record), subject_id(record, dataset=dataset), record, dataset)
    _add(proxy, "name", record.get("entity_name"))
    proxy.add("country", COUNTRY)
    _add(proxy, "uscCode", record.get("uscc"))  # FtM's USCC property, check digit verified
    reg_no = _text(record.get("registration_no"))
    if reg_no is not None:
        prop = "registrationNumber" if _GS15.fullmatch(reg_no) else "licenseNumber"
        proxy.add(prop, reg_no)
    if proxy.schema.is_a("Organization"):
        proxy.add("jurisdiction", COUNTRY)
    if record.get("entity_type") == "individual_business":
        proxy.add("legalForm", INDIVIDUAL_BUSINESS)
    masked = _text(record.get("id_number_masked"))
    if masked is not None:
        proxy.add("notes", MASKED_ID_NOTE.format(masked))
    return proxy


def _representation(
    record: Mapping[str, Any], subject: EntityProxy, dataset: str
) -> list[EntityProxy]:
    name = _text(record.get("legal_representative"))
    if name is None or not subject.schema.is_a("Organization"):
        return []
    assert subject.id is not None
    person = _make("Person", make_id(dataset, "rep", subject.id, name), record, dataset)
    person.add("name", name)
    person.add("country", COUNTRY)
    assert person.id is not None
    link = _make("Directorship", make_id(dataset, "dir", subject.id, person.id), record, dataset)
    link.add("director", person.id)
    link.add("organization", subject.id)
    link.add("role", REPRESENTATIVE_ROLE)
    return [person, link]


def _sanction(
    record: Mapping[str, Any], subject: EntityProxy, dataset: str, names: Names
) -> EntityProxy:
    proxy = _make("Sanction", sanction_id(record, dataset=dataset), record, dataset)
    proxy.add("entity", subject.id)
    proxy.add("country", COUNTRY)
    list_id = str(record["list"])
    proxy.add("programId", list_id)
    proxy.add("program", list(names.get(list_id, ())) or list_id)
    proxy.add("publisher", list(names.get(str(record.get("source")), ())))
    _add(proxy, "authority", record.get("authority"))
    _add(proxy, "authorityId", record.get("case_number"))  # 决定书文号: issued by the authority
    _add(proxy, "summary", record.get("title"))
    _add(proxy, "reason", record.get("reason"))
    _add(proxy, "provisions", record.get("measure"))  # FtM: "scope of sanctions" = 处罚结果
    _add(proxy, "description", record.get("basis"))  # the legal basis cited
    _add(proxy, "startDate", _day(record.get("decided_on")))
    _add(proxy, "listingDate", _day(record.get("published_on")))
    _add(proxy, "endDate", _day(record.get("valid_until")))
    _add(proxy, "status", record.get("status"))
    _add(proxy, "sourceUrl", record.get("source_url"))
    _add(proxy, "retrievedAt", _timestamp(record.get("last_seen")))
    return proxy


def _proxies(record: Mapping[str, Any], dataset: str, names: Names) -> list[EntityProxy]:
    subject = _subject(record, dataset)
    out = [subject, *_representation(record, subject, dataset)]
    if record.get("list_kind") in SANCTION_KINDS:
        out.append(_sanction(record, subject, dataset, names))
    return out


def _to_dict(proxy: EntityProxy) -> dict[str, Any]:
    """``EntityProxy.to_dict()`` with properties and values sorted: same data, same JSON."""
    data = proxy.to_dict()
    data["properties"] = {key: sorted(vals) for key, vals in sorted(data["properties"].items())}
    return data


def entities(
    record: Mapping[str, Any], *, dataset: str = DATASET, names: Names | None = None
) -> list[dict[str, Any]]:
    """The FtM entities of one schema record, as ``EntityProxy.to_dict()`` writes them.

    ``names`` (see ``names_from_sources``) gives the Sanction its program and publisher
    names; without it the program is the list id.
    """
    return [_to_dict(proxy) for proxy in _proxies(record, dataset, names or {})]


def _merge(into: EntityProxy, other: EntityProxy) -> None:
    """Merge a fragment of the same entity; sources that disagree on person vs.
    organisation leave a ``LegalEntity``, which holds every property set here."""
    try:
        into.schema = model.common_schema(into.schema, other.schema)
    except InvalidData:
        into.schema = model["LegalEntity"]
    for prop, values in other.properties.items():
        into.add(prop, values, cleaned=True, quiet=True)
    context = into.context
    context["datasets"] = sorted({*context.get("datasets", ()), *other.context["datasets"]})
    for key, pick in (("first_seen", min), ("last_seen", max)):
        stamps = [s for s in (context.get(key), other.context.get(key)) if s is not None]
        if stamps:
            context[key] = pick(stamps)


def export(
    records: Iterable[Mapping[str, Any]], *, dataset: str = DATASET, names: Names | None = None
) -> Iterator[dict[str, Any]]:
    """Every record's entities, each subject once with its properties from all its records.

    Sanctions stream out as their record is read, in input order (one per list and
    ``record_key``, which an export holds once). Subjects, representatives and their
    directorships are merged by id in memory and follow, sorted by id, when the input
    ends: a subject's last record may be the last one read. Memory grows with the number
    of distinct subjects, not of records; values are sorted, so the merged entities do
    not depend on the order of the input.
    """
    pending: dict[str, EntityProxy] = {}
    for record in records:
        for proxy in _proxies(record, dataset, names or {}):
            assert proxy.id is not None
            if proxy.schema.name == "Sanction":
                yield _to_dict(proxy)
            elif proxy.id in pending:
                _merge(pending[proxy.id], proxy)
            else:
                pending[proxy.id] = proxy
    for key in sorted(pending):
        yield _to_dict(pending.pop(key))
