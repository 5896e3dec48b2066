"""One organisation across every source: which lists it is or was on, when, and why.

The identity rule (see docs/running.md#one-entity-across-sources):

* **same valid USCC → same entity**, whatever the source, list or spelling of the name;
* a record without a valid USCC belongs to the entity of its **name key + jurisdiction**:
  ``entity_name_key`` and the prefecture (4-digit prefix) of its ``region_code``, else of its
  source's region code (a province-level code keeps 2 digits; the national code ``100000``
  is the jurisdiction ``""``, "national, unknown region"). The same name in two
  jurisdictions is two entities;
* a natural person is never merged by name (``张*`` names many people): a person's records
  stay the entity of their own ``entity_id``.

Reads are set-based and indexed: a USCC reads ``records`` by ``entity_id``/``uscc``; a name
reads the name-only entity ids it would have in each source (``core.normalise.entity_id`` is
a hash of source + name key, so they are computed, then read by the ``entity_id`` index) and
the records with a USCC whose stored ``entity_name_key`` is the name (a scan of ``records``
restricted to rows with a USCC: names are not a column); events are read by their
``entity_id`` index (migration 0009) and kept for the entity's own entries.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from core.normalise.codes import compact, is_valid_uscc
from core.normalise.entity import entity_id as name_entity_id
from core.normalise.text import name_key
from core.redact import PERSON
from core.schema import RECORD_FIELDS
from storage.events import event_dict
from storage.lifecycle import last_seen
from storage.models import Event, Record, Source, table_of

RECORDS = table_of(Record)
EVENTS = table_of(Event)
SOURCES = table_of(Source)

NATIONAL = ("100000", "000000")
_CHUNK = 500  # ids per IN (...) list


def jurisdiction(region_code: str | None, source_region: str | None = None) -> str:
    """The jurisdiction key of a record: the prefecture prefix of its region code (or its
    source's), 2 digits for a province-level code, ``""`` for national or unknown."""
    code = region_code if region_code and region_code not in NATIONAL else source_region
    if not code or code in NATIONAL or len(code) != 6 or not code.isdigit():
        return ""
    return code[:2] if code.endswith("0000") else code[:4]


def region_matches(key: str, region: str | None) -> bool:
    """Whether jurisdiction ``key`` lies in (or contains) the region ``region`` asked for."""
    if not region:
        return True
    wanted = jurisdiction(region) if len(region) == 6 else region
    if not wanted:
        return key == ""
    return bool(key) and (key.startswith(wanted) or wanted.startswith(key))


@dataclass
class Listing:
    """One entry of the entity: a (source, list, record_key) it is or was on."""

    record: dict[str, Any]  # the schema record, current state (status, first/last seen)
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first

    @property
    def summary(self) -> dict[str, Any]:
        return listing_summary(self.record, self.events)


@dataclass
class Entity:
    """An entity and every entry it is or was on, by source, list and record key."""

    key: str  # ``uscc:<code>`` · ``name:<name key>@<jurisdiction>`` · ``person:<entity id>``
    kind: str  # uscc · name · person
    listings: list[Listing] = field(default_factory=list)

    @property
    def uscc(self) -> str | None:
        return self.key.removeprefix("uscc:") if self.kind == "uscc" else None

    @property
    def jurisdiction(self) -> str | None:
        return self.key.rsplit("@", 1)[1] if self.kind == "name" else None

    @property
    def names(self) -> list[str]:
        return sorted({r["entity_name"] for r in self.records if r.get("entity_name")})

    @property
    def entity_ids(self) -> list[str]:
        return sorted({r["entity_id"] for r in self.records})

    @property
    def sources(self) -> list[str]:
        return sorted({r["source"] for r in self.records})

    @property
    def records(self) -> list[dict[str, Any]]:
        return [listing.record for listing in self.listings]

    @property
    def events(self) -> list[dict[str, Any]]:
        events = [e for listing in self.listings for e in listing.events]
        return sorted(events, key=lambda e: (e["at"] or "", e["event_id"]))


def listing_summary(record: dict[str, Any], events: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """An entry in one line: where, its status now, when it was (last) listed and delisted
    and why, and its evidence. Works on redacted records and events as well."""
    listed_at = delisted_at = cause = None
    delisting: dict[str, Any] | None = None
    for event in events:
        if event["event"] in ("listed", "relisted"):
            listed_at = listed_at if event["event"] == "listed" and listed_at else event["at"]
            delisted_at = cause = delisting = None
        elif event["event"] == "delisted":
            delisted_at, cause, delisting = event["at"], event.get("cause"), event
    return {
        "source": record.get("source"),
        "list": record.get("list"),
        "list_kind": record.get("list_kind"),
        "record_key": record.get("record_key"),
        "entity_id": record.get("entity_id"),
        "entity_name": record.get("entity_name"),
        "uscc": record.get("uscc"),
        "region_code": record.get("region_code"),
        "case_number": record.get("case_number"),
        "title": record.get("title"),
        "status": record.get("status"),
        "first_seen": record.get("first_seen"),
        "last_seen": record.get("last_seen"),
        "listed_at": listed_at or record.get("first_seen"),
        "delisted_at": delisted_at,
        "delisted_cause": cause,
        "source_url": record.get("source_url"),
        "raw_sha256": record.get("raw_sha256"),
        "delisting_evidence": (delisting or {}).get("evidence"),
    }


# -- reading --------------------------------------------------------------------------------------


def _chunks(values: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(values), _CHUNK):
        yield list(values[start : start + _CHUNK])


def record_of(row: Any) -> dict[str, Any]:
    """A row of ``RECORD_COLUMNS`` as a record in the shape of SCHEMA.md, with its state."""
    record = {name: row.data.get(name) for name in RECORD_FIELDS}
    record.update(source=row.source, list=row.list, record_key=row.record_key)
    record["entity_id"] = row.entity_id
    record["status"] = row.status
    record["first_seen"] = row.first_seen.isoformat()
    record["last_seen"] = row.last_seen.isoformat()
    return record


# The columns a record dict is made of (``record_of``).
RECORD_COLUMNS = (
    RECORDS.c.source,
    RECORDS.c.list,
    RECORDS.c.record_key,
    RECORDS.c.entity_id,
    RECORDS.c.status,
    RECORDS.c.first_seen,
    last_seen(),
    RECORDS.c.data,
)


def _records(conn: Connection, condition: Any) -> list[dict[str, Any]]:
    query = select(*RECORD_COLUMNS).where(condition)
    return [record_of(row) for row in conn.execute(query)]


def _by_entity_ids(conn: Connection, ids: Iterable[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(ids))):
        out += _records(conn, RECORDS.c.entity_id.in_(chunk))
    return out


def _source_regions(conn: Connection) -> dict[str, str]:
    return {
        row.id: row.region_code for row in conn.execute(select(SOURCES.c.id, SOURCES.c.region_code))
    }


def _identity(record: dict[str, Any], regions: dict[str, str]) -> tuple[str, str]:
    code = record.get("uscc")
    if isinstance(code, str) and is_valid_uscc(code):
        return f"uscc:{compact(code)}", "uscc"
    if record.get("entity_type") == PERSON or record.get("id_number_masked"):
        return f"person:{record['entity_id']}", "person"
    key = record.get("entity_name_key") or name_key(record.get("entity_name")) or ""
    where = jurisdiction(record.get("region_code"), regions.get(record["source"]))
    return f"name:{key}@{where}", "name"


def _events(conn: Connection, records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], list]:
    """The events of exactly these entries, oldest first, by (list, record_key)."""
    wanted = {(r["list"], r["record_key"]) for r in records}
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for chunk in _chunks(sorted({r["entity_id"] for r in records})):
        rows = conn.execute(
            select(EVENTS).where(EVENTS.c.entity_id.in_(chunk)).order_by(EVENTS.c.at, EVENTS.c.id)
        )
        for row in rows:
            if (row.list, row.record_key) in wanted:
                out[(row.list, row.record_key)].append(event_dict(row))
    return out


def _entities(
    conn: Connection, records: list[dict[str, Any]], regions: dict[str, str]
) -> list[Entity]:
    groups: dict[str, Entity] = {}
    seen: set[tuple[str, str]] = set()
    for record in records:
        if (record["list"], record["record_key"]) in seen:
            continue
        seen.add((record["list"], record["record_key"]))
        key, kind = _identity(record, regions)
        groups.setdefault(key, Entity(key=key, kind=kind)).listings.append(Listing(record))
    events = _events(conn, [r for e in groups.values() for r in e.records])
    for entity in groups.values():
        entity.listings.sort(key=lambda li: (li.record["list"], li.record["record_key"]))
        for listing in entity.listings:
            listing.events = events.get((listing.record["list"], listing.record["record_key"]), [])
    return sorted(groups.values(), key=lambda e: (e.kind != "uscc", e.key))


def by_uscc(conn: Connection, code: str) -> Entity | None:
    """The entity of a (valid) USCC with every entry it is or was on, in every source."""
    if not is_valid_uscc(code):
        raise ValueError(f"{code!r} is not a valid unified social credit code")
    code = compact(code)
    records = _records(conn, or_(RECORDS.c.entity_id == f"uscc-{code}", RECORDS.c.uscc == code))
    found = [e for e in _entities(conn, records, _source_regions(conn)) if e.uscc == code]
    return found[0] if found else None


def by_name(conn: Connection, name: str, region: str | None = None) -> list[Entity]:
    """Every entity a name (compared as its name key) may be: the USCC entities whose records
    carry the name, and the name-only entities per jurisdiction; ``region`` keeps those whose
    jurisdiction lies in it."""
    key = name_key(name)
    if not key:
        return []
    regions = _source_regions(conn)
    named = _named(conn, key, regions)
    coded = _records(
        conn,
        and_(RECORDS.c.uscc.is_not(None), RECORDS.c.data["entity_name_key"].as_string() == key),
    )
    codes = {r["uscc"] for r in coded if is_valid_uscc(r.get("uscc"))}
    everything = named + _by_entity_ids(conn, (f"uscc-{compact(c)}" for c in codes))
    for chunk in _chunks(sorted(codes)):
        everything += _records(conn, RECORDS.c.uscc.in_(chunk))
    entities = _entities(conn, everything, regions)
    # A USCC entity is here because one of its records carries the name; a name entity of
    # another name key can only come from a hash collision, which is dropped.
    entities = [e for e in entities if e.kind != "name" or e.key.startswith(f"name:{key}@")]
    if region:
        entities = [e for e in entities if any(_in_region(r, regions, region) for r in e.records)]
    return entities


def _named(conn: Connection, key: str, regions: dict[str, str]) -> list[dict[str, Any]]:
    """The records without a valid USCC whose name key is ``key``, in every source: read by
    the name-only entity id each source gives the name (indexed)."""
    # Every source with records has its row in ``sources`` (a run registers its source).
    sources = sorted(regions)
    return _by_entity_ids(conn, (name_entity_id(s, None, None, key) for s in sources))


def _in_region(record: dict[str, Any], regions: dict[str, str], region: str) -> bool:
    return region_matches(
        jurisdiction(record.get("region_code"), regions.get(record["source"])), region
    )


def find(conn: Connection, query: str, region: str | None = None) -> list[Entity]:
    """``query`` as a USCC when it is a valid one, else as a name (see ``by_name``)."""
    if is_valid_uscc(query):
        found = by_uscc(conn, query)
        return [found] if found else []
    return by_name(conn, query, region)


def of_entity_id(conn: Connection, entity_id: str) -> list[Entity]:
    """The entities the records stored under ``entity_id`` belong to, each with every entry
    it is or was on across sources (a source-scoped name id can span jurisdictions)."""
    records = _records(conn, RECORDS.c.entity_id == entity_id)
    if not records:
        return []
    regions = _source_regions(conn)
    out: list[Entity] = []
    for entity in _entities(conn, records, regions):
        if entity.kind == "uscc" and entity.uscc:
            full = by_uscc(conn, entity.uscc)
            out.append(full or entity)
        elif entity.kind == "name":
            key = entity.key.removeprefix("name:").rsplit("@", 1)[0]
            named = _entities(conn, _named(conn, key, regions), regions)
            out += [e for e in named if e.key == entity.key] or [entity]
        else:
            out.append(entity)
    return out
