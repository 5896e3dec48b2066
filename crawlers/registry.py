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
class HealthChecks:
    """A list's run assertions (zavod-style), declared under the list's ``checks:``. A run that
    breaks one is not healthy for the list: it stores what it saw but proves no absence."""

    min_rows: int = 0  # fewer records than this: the page or the query broke
    max_drop: float | None = None  # percent fewer records than the last healthy run
    fill_rates: tuple[tuple[str, float], ...] = ()  # (field, minimum share of records)


@dataclass(frozen=True)
class DelistingGuard:
    """Hold a run's disappearances as ``pending`` for a maintainer when they exceed ``share``
    of the list's active entries and number at least ``min_count``."""

    share: float = 0.2
    min_count: int = 10


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
    checks: HealthChecks = field(default_factory=HealthChecks)
    guard: DelistingGuard = field(default_factory=DelistingGuard)

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
    delist_after: int = 2  # consecutive healthy absences before `disappeared`
    failing_after: int = 3  # SCHEMA.md's K: unhealthy runs in a row before the source is failing
    jitter: int = 0  # seconds; each scheduled run starts up to this much later, at random
    watchlist: str | None = None  # what scheduled runs watch (watch lists): a file or "db:"
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
                checks=_checks(raw_list.get("checks"), f"{where} list {short!r}"),
                guard=_guard(raw_list.get("delisting_guard"), f"{where} list {short!r}"),
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
        delist_after=_count(data.get("delist_after", 2), "delist_after", where, minimum=1),
        failing_after=_count(data.get("failing_after", 3), "failing_after", where, minimum=1),
        jitter=_count(schedule.get("jitter", 0), "schedule.jitter", where, minimum=0),
        watchlist=_watchlist(schedule.get("watchlist"), where),
        raw=data,
    )


def _watchlist(value: Any, where: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise RegistryError(f"{where}: schedule.watchlist must be a file path or 'db:'")
    return value


def _count(value: Any, name: str, where: str, *, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise RegistryError(f"{where}: {name} must be an integer >= {minimum}, not {value!r}")
    return value


def _share(value: Any, name: str, where: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise RegistryError(f"{where}: {name} must be a share between 0 and 1, not {value!r}")
    return float(value)


def _checks(data: dict[str, Any] | None, where: str) -> HealthChecks:
    if not data:
        return HealthChecks()
    unknown = set(data) - {"min_rows", "max_drop", "fill_rates"}
    if unknown:
        raise RegistryError(f"{where}: unknown checks {sorted(unknown)}")
    max_drop = data.get("max_drop")
    if max_drop is not None and (
        not isinstance(max_drop, int | float)
        or isinstance(max_drop, bool)
        or not 0 < max_drop <= 100
    ):
        raise RegistryError(
            f"{where}: checks.max_drop is a percentage in (0, 100], not {max_drop!r}"
        )
    rates = data.get("fill_rates") or {}
    if not isinstance(rates, dict):
        raise RegistryError(f"{where}: checks.fill_rates maps field names to shares")
    return HealthChecks(
        min_rows=_count(data.get("min_rows", 0), "checks.min_rows", where, minimum=0),
        max_drop=float(max_drop) if max_drop is not None else None,
        fill_rates=tuple(
            (str(name), _share(share, f"checks.fill_rates.{name}", where))
            for name, share in sorted(rates.items())
        ),
    )


def _guard(data: dict[str, Any] | None, where: str) -> DelistingGuard:
    if not data:
        return DelistingGuard()
    unknown = set(data) - {"share", "min_count"}
    if unknown:
        raise RegistryError(f"{where}: unknown delisting_guard keys {sorted(unknown)}")
    return DelistingGuard(
        share=_share(data.get("share", 0.2), "delisting_guard.share", where),
        min_count=_count(data.get("min_count", 10), "delisting_guard.min_count", where, minimum=0),
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
