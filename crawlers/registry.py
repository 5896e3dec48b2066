"""The source registry: every source declared once, as data, in ``crawlers/sources/*.yml``.

Spiders, the run orchestrator, storage and the scheduler all read the same declaration, so
a source's lists, politeness and schedule cannot drift apart between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

LIST_KINDS = ("blacklist", "redlist", "penalty", "warning", "good", "license", "other")
RECORD_KEY_RULES = ("case", "subject")
# How a list is published. A "database" shows every current entry on every run, so absence
# from healthy runs means delisting; "announcements" publish batches once, so an entry that
# no page repeats is still listed: it ends by expiry or a published removal only.
PUBLICATIONS = ("database", "announcements")


class RegistryError(ValueError):
    """A source declaration is malformed or a source/list id is unknown."""


@dataclass(frozen=True)
class ListDef:
    id: str  # full id, "<source>.<list>"
    short_id: str
    name_zh: str
    name_en: str
    list_kind: str
    record_key: str
    required_fields: tuple[str, ...]
    domain: str | None = None  # reason vocabulary when the list differs from its source
    publication: str = "database"
    validity_years: int | None = None  # listing ends N years after decided_on when unpublished

    @property
    def diffs_absence(self) -> bool:
        return self.publication == "database"


@dataclass(frozen=True)
class Politeness:
    download_delay: float = 2.0
    concurrency: int = 1
    autothrottle_max_delay: float = 30.0
    retry_times: int = 3
    retry_backoff: float = 5.0


@dataclass(frozen=True)
class AnnouncementSelectors:
    item: str
    link: str
    title: str
    body: str
    date: str | None = None
    next: str | None = None
    meta: str | None = None


@dataclass(frozen=True)
class AnnouncementDef:
    """Where a source publishes its lists as announcements, and how to recognise them."""

    index: str  # first index page, relative to the source's base_url
    selectors: AnnouncementSelectors
    listing: tuple[str, ...]  # title keywords of a listing announcement
    removal: tuple[str, ...]  # title keywords of a removal announcement (checked first)
    ignore: tuple[str, ...]  # title keywords of explainers that mention the list
    header_labels: tuple[str, ...]
    list: str  # full id of the list the announcements feed
    max_index_pages: int = 10

    def kind_of(self, title: str) -> str | None:
        """``removal``, ``listing`` or None (not a list announcement) from a title."""
        if any(word in title for word in self.ignore):
            return None
        if any(word in title for word in self.removal):
            return "removal"
        if any(word in title for word in self.listing):
            return "listing"
        return None


@dataclass(frozen=True)
class SourceDef:
    id: str
    name_zh: str
    name_en: str
    jurisdiction: str
    region_code: str
    base_url: str
    domain: str | None
    cron: str
    timezone: str
    politeness: Politeness
    filter_query_parameters: tuple[str, ...]
    lists: tuple[ListDef, ...] = field(default_factory=tuple)
    announcements: AnnouncementDef | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def list(self, ref: str) -> ListDef:
        """Find a list by full id (``xmtravel.good``) or suffix (``good``)."""
        for lst in self.lists:
            if ref in (lst.id, lst.short_id):
                return lst
        known = ", ".join(lst.id for lst in self.lists)
        raise RegistryError(f"source {self.id!r} has no list {ref!r} (known: {known})")

    @property
    def list_ids(self) -> tuple[str, ...]:
        return tuple(lst.id for lst in self.lists)


def _require(data: dict[str, Any], key: str, where: str) -> Any:
    if key not in data or data[key] in (None, ""):
        raise RegistryError(f"{where}: missing {key!r}")
    return data[key]


def parse_source(data: dict[str, Any]) -> SourceDef:
    """Validate one YAML declaration and turn it into a typed ``SourceDef``."""
    sid = _require(data, "id", "source")
    where = f"source {sid!r}"
    lists = []
    for raw_list in _require(data, "lists", where):
        short = _require(raw_list, "id", where)
        kind = _require(raw_list, "list_kind", f"{where} list {short!r}")
        if kind not in LIST_KINDS:
            raise RegistryError(f"{where} list {short!r}: list_kind {kind!r} not in {LIST_KINDS}")
        rule = raw_list.get("record_key", "case")
        if rule not in RECORD_KEY_RULES:
            raise RegistryError(f"{where} list {short!r}: record_key {rule!r}")
        publication = raw_list.get("publication", "database")
        if publication not in PUBLICATIONS:
            raise RegistryError(f"{where} list {short!r}: publication {publication!r}")
        validity = raw_list.get("validity_years")
        if validity is not None and (not isinstance(validity, int) or validity < 1):
            raise RegistryError(f"{where} list {short!r}: validity_years {validity!r}")
        lists.append(
            ListDef(
                id=f"{sid}.{short}",
                short_id=short,
                name_zh=raw_list.get("name_zh", short),
                name_en=raw_list.get("name_en", short),
                list_kind=kind,
                record_key=rule,
                required_fields=tuple(raw_list.get("required_fields", ("entity_name",))),
                domain=raw_list.get("domain"),
                publication=publication,
                validity_years=validity,
            )
        )
    jurisdiction = _require(data, "jurisdiction", where)
    schedule = data.get("schedule", {})
    return SourceDef(
        id=sid,
        name_zh=_require(data, "name_zh", where),
        name_en=_require(data, "name_en", where),
        jurisdiction=_require(jurisdiction, "name", where),
        region_code=str(_require(jurisdiction, "region_code", where)),
        base_url=_require(data, "base_url", where),
        domain=data.get("domain"),
        cron=schedule.get("cron", "0 3 * * *"),
        timezone=schedule.get("timezone", "Asia/Shanghai"),
        politeness=Politeness(**data.get("politeness", {})),
        filter_query_parameters=tuple(data.get("cassette", {}).get("filter_query_parameters", ())),
        lists=tuple(lists),
        announcements=_announcements(data.get("announcements"), lists, where),
        raw=data,
    )


def _announcements(
    data: dict[str, Any] | None, lists: list[ListDef], where: str
) -> AnnouncementDef | None:
    if not data:
        return None
    fed = [lst for lst in lists if lst.publication == "announcements"]
    list_ref = data.get("list")
    if list_ref is not None:
        fed = [lst for lst in lists if list_ref in (lst.id, lst.short_id)]
    if len(fed) != 1:
        raise RegistryError(f"{where}: announcements must feed exactly one list (set 'list')")
    selectors = _require(data, "selectors", f"{where} announcements")
    recognise = _require(data, "recognise", f"{where} announcements")
    try:
        parsed = AnnouncementSelectors(**selectors)
    except TypeError as exc:
        raise RegistryError(f"{where} announcements selectors: {exc}") from None
    return AnnouncementDef(
        index=_require(data, "index", f"{where} announcements"),
        selectors=parsed,
        listing=tuple(_require(recognise, "listing", f"{where} recognise")),
        removal=tuple(recognise.get("removal", ())),
        ignore=tuple(recognise.get("ignore", ())),
        header_labels=tuple(_require(data, "header_labels", f"{where} announcements")),
        list=fed[0].id,
        max_index_pages=int(data.get("max_index_pages", 10)),
    )


@cache
def load_registry() -> dict[str, SourceDef]:
    """All declared sources by id, read once per process from the package data."""
    sources: dict[str, SourceDef] = {}
    for entry in sorted(resources.files("crawlers.sources").iterdir(), key=lambda p: p.name):
        if entry.name.endswith((".yml", ".yaml")):
            source = parse_source(yaml.safe_load(entry.read_text(encoding="utf-8")))
            if source.id in sources:
                raise RegistryError(f"source {source.id!r} declared twice")
            sources[source.id] = source
    return sources


def get_source(source_id: str) -> SourceDef:
    try:
        return load_registry()[source_id]
    except KeyError:
        known = ", ".join(sorted(load_registry()))
        raise RegistryError(f"unknown source {source_id!r} (known: {known})") from None
