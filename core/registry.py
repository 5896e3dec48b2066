"""The source registry: every source declared once, as data, in its room,
``crawlers/sources/<id>/source.yml``.

Spiders, the run orchestrator, storage and the scheduler all read the same declaration, so
a source's lists, politeness and schedule cannot drift apart between them. A room may also
hold the source's own ``spider.py``; a source without one names the family spider that
serves it (``spider: announcements``), so a new portal of a known pattern is data only.

Every key of a declaration is checked against a schema (pydantic models that forbid unknown
keys): a misspelt ``chekcs:`` would otherwise silently switch a list's health checks off. A
file that fails is reported with its path, line and the key probably meant, and skipped: the
other sources load and run (``broken_sources()``). ``CREDITWATCH_SOURCES_DIR`` points the
registry at another directory of rooms.
"""

from __future__ import annotations

import codecs
import difflib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from core.clock import TIMEZONE_NAME
from core.normalise.labels import TARGETS as LABEL_TARGETS
from core.normalise.labels import canonical_label

ListKind = Literal["blacklist", "redlist", "penalty", "warning", "good", "license", "other"]
# ``case_subject``: for portals that publish one decision number for several parties (共同
# 违法): the case number alone would make two entries collide.
RecordKeyRule = Literal["case", "case_subject", "subject"]
# How a list is published. A "database" shows every current entry on every run, so absence
# from healthy runs means delisting; "announcements" publish batches once, so an entry that
# no page repeats is still listed: it ends by expiry or a published removal only.
Publication = Literal["database", "announcements"]
# How much of a list a run reads. "complete": every entry the portal shows; "partial": by
# design only part of it (a portal's cap, the list's own ``max_pages``), so a run that read
# all it meant to is healthy (partial) and absence from it proves nothing, as on announcements.
Coverage = Literal["complete", "partial"]
# The shared spiders a source may be served by instead of a ``spider.py`` of its own
# (``crawlers/loader.py`` maps each to its class).
SpiderFamily = Literal["announcements", "json_api", "html_list", "creditsearch"]
LIST_KINDS: tuple[str, ...] = get_args(ListKind)
RECORD_KEY_RULES: tuple[str, ...] = get_args(RecordKeyRule)
PUBLICATIONS: tuple[str, ...] = get_args(Publication)
COVERAGES: tuple[str, ...] = get_args(Coverage)
SPIDER_FAMILIES: tuple[str, ...] = get_args(SpiderFamily)
# The families that read a block of their own, named after them, on every list.
LIST_BLOCK_FAMILIES: tuple[str, ...] = ("json_api", "html_list", "creditsearch")

SOURCES_DIR_ENV = "CREDITWATCH_SOURCES_DIR"
SHIPPED_SOURCES = Path(__file__).resolve().parent.parent / "crawlers" / "sources"
SOURCE_FILE = "source.yml"  # a room's declaration: <sources dir>/<id>/source.yml


class RegistryError(ValueError):
    """A source declaration is malformed or a source/list id is unknown. ``line`` is the
    declaration's line (1-based) when known, so a loader can say where the problem is."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


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
class ReadLimit:
    """The most of a list one run reads (its spider's ``cap`` and ``max_pages``): on a list of
    ``coverage: partial``, reading up to here is what the run meant to do, not a fault."""

    rows: int | None = None
    pages: int | None = None

    def rows_within(self, declared: int) -> int:
        """Of ``declared`` entries, how many a run reads."""
        return declared if self.rows is None else min(declared, self.rows)

    def pages_within(self, declared: int) -> int:
        """Of ``declared`` pages, how many a run reads."""
        return declared if self.pages is None else min(declared, self.pages)


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
    coverage: str = "complete"  # "partial": read in part by design (``Coverage``)
    read_limit: ReadLimit | None = None  # what one run reads at most, when declared
    validity_years: int | None = None  # listing ends N years after decided_on when unpublished
    checks: HealthChecks = field(default_factory=HealthChecks)
    guard: DelistingGuard = field(default_factory=DelistingGuard)
    # How the ``json_api`` family spider reads the list (its ``json_api:`` block), else None.
    json_api: JsonApiDef | None = field(default=None, compare=False)
    # How the ``html_list`` family spider reads the list (its ``html_list:`` block), else None.
    html_list: HtmlListDef | None = field(default=None, compare=False)
    # How the ``creditsearch`` family spider reads the list (its ``creditsearch:`` block).
    creditsearch: CreditSearchDef | None = field(default=None, compare=False)

    @property
    def partial(self) -> bool:
        """Read in part by design: its healthy runs are ``healthy (partial)``."""
        return self.coverage == "partial"

    @property
    def diffs_absence(self) -> bool:
        """Absence from a healthy run counts towards delisting: a database read whole. A
        partial list's runs miss entries by design, so it is kept like announcements: an
        entry ends by expiry or a published removal, never by ``disappeared``."""
        return self.publication == "database" and not self.partial


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
    # Queued crawl jobs per trigger, each one shard of the watchlist (``schedule.shards``), and
    # the most a source allows (``watch.max_shards``): every shard is a browser session of
    # its own at the source's full politeness, so N shards ask the portal N times as fast.
    shards: int = 1
    max_shards: int = 2
    spider: str | None = None  # the family spider serving it; None: its room's spider.py
    # The vendor platform the portal runs on (portals.md §4.1: xygs, creditsearch, …): one
    # family spider serves several platforms, each platform several portals.
    platform: str | None = None
    labels: tuple[tuple[str, str], ...] = ()  # portal label → target, over the shared map
    room: Path | None = field(default=None, compare=False)  # the folder it was read from
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def label_overrides(self) -> dict[str, str] | None:
        """The ``labels:`` block as the normaliser takes it (None when there is none)."""
        return dict(self.labels) or None

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


# --- the schema: every key a declaration may hold ---------------------------------------------
# Blocks spiders read from ``SourceDef.raw`` (``session``, ``watch``, a list's ``api`` and
# ``watch``) are declared too, so that a typo there is caught like any other.

Text = Annotated[str, Field(min_length=1)]
Count = Annotated[int, Field(ge=0)]
Positive = Annotated[int, Field(ge=1)]
Seconds = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Block(BaseModel):
    """Strict: no unknown keys, and no quietly converted values ("600" is not 600)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Jurisdiction(_Block):
    name: Text
    region_code: Text

    @field_validator("region_code", mode="before")
    @classmethod
    def _code_as_text(cls, value: Any) -> Any:
        # GB/T 2260 codes are digits: an unquoted 350200 means the same code.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class _Schedule(_Block):
    cron: Text = "0 3 * * *"
    timezone: Text = TIMEZONE_NAME
    jitter: Count = 0
    watchlist: str | None = None
    shards: Positive = 1

    @field_validator("cron")
    @classmethod
    def _five_fields(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("a cron expression has 5 fields: minute hour day month weekday")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("watchlist")
    @classmethod
    def _watchlist(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must be a file path or 'db:'")
        return value


class _Politeness(_Block):
    download_delay: Seconds = 2.0
    concurrency: Positive = 1
    autothrottle_max_delay: Seconds = 30.0
    retry_times: Count = 3
    retry_backoff: Seconds = 5.0


class _Cassette(_Block):
    filter_query_parameters: list[Text] = []


class _Session(_Block):
    """Credit China's browser session (read by its spider and ``creditwatch probe``)."""

    portal_url: Text
    api_base: Text
    min_interval: Seconds = 10.0
    navigation_timeout: Seconds = 20.0
    challenge_wait: Seconds = 15.0
    connect_timeout: Seconds = 5.0


class _Watch(_Block):
    """Watch mode's paging, per subject and record type (Credit China)."""

    page_size: Positive = 10
    max_pages: Positive = 20
    max_shards: Positive = 2  # cap on shards of one watchlist (each a session of its own)


class _Checks(_Block):
    min_rows: Count = 0
    max_drop: Annotated[float, Field(gt=0, le=100)] | None = None  # a percentage
    fill_rates: dict[str, Share] = {}


class _Guard(_Block):
    share: Share = 0.2
    min_count: Count = 10


class _Api(_Block):
    """A list browsed through a private API, page by page (Credit China's list mode)."""

    endpoint: Text
    params: dict[str, Any] = {}
    page_size: Positive = 10
    cap: Positive | None = None
    max_pages: Positive | None = None
    columns: dict[str, str] = {}

    @field_validator("params")
    @classmethod
    def _scalars(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, item in value.items():
            if item is not None and not isinstance(item, str | int | float):
                raise ValueError(f"query parameter {name!r} must be a string or a number")
        return value


JsonScalar = str | int | float | bool | None
# The unhealthy outcomes a JSON API's declared success check may name (core/outcomes.py).
ErrorOutcome = Literal[
    "session_rejected",
    "waf_challenge",
    "captcha_required",
    "rate_limited",
    "http_error",
    "malformed",
]


class _JsonSuccess(_Block):
    """An answer is an answer only when the value at ``path`` is one of ``equals`` (e.g.
    ``status == 1``); otherwise the fetch gets ``outcome`` and no row of it is read."""

    path: Text
    equals: Annotated[list[str | int | bool], Field(min_length=1)]
    outcome: ErrorOutcome = "session_rejected"

    @field_validator("equals", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return value if isinstance(value, list) else [value]


class _PagedRequest(_Block):
    """How a family spider asks a portal for one numbered page of a list: ``url`` relative
    to the source's ``base_url``, the query (``params``) or a POST ``form``, required
    ``headers`` (a Referer, often), the pages' ``encoding``, and the paging: ``page_size``
    rows a page, pages numbered from ``first_page``, at most ``max_pages`` read."""

    url: Text
    method: Literal["GET", "POST"] = "GET"
    params: dict[str, JsonScalar] = {}
    form: dict[str, JsonScalar] | None = None
    headers: dict[Text, str] = {}
    encoding: str | None = None
    page_size: Positive = 10
    first_page: Annotated[int, Field(ge=0, le=1)] = 1
    max_pages: Positive | None = None

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                codecs.lookup(value)
            except LookupError:
                raise ValueError(f"unknown encoding {value!r}") from None
        return value


class _JsonAnswer(_Block):
    """How a JSON answer holds one page of a list: the dotted path of the row array, of the
    declared total (rows) or page count, the JSON keys every row must hold, and an optional
    success check. Read by ``crawlers.spiders.json_api`` for every JSON-reading family."""

    rows: Text  # dotted path of the row array: "data.list", "list", "Data"
    total: str | None = None  # dotted path of the declared number of rows
    total_pages: str | None = None  # dotted path of the declared number of pages
    key_fields: Annotated[list[Text], Field(min_length=1)]  # JSON keys every row holds
    success: _JsonSuccess | None = None


class _JsonApi(_PagedRequest, _JsonAnswer):
    """A list read from a paged JSON API by the ``json_api`` family spider.

    ``url`` is relative to the source's ``base_url``; ``params`` (the query), ``form`` (a POST
    form) and ``json_body`` (a POST JSON body) may hold ``{page}``, ``{size}`` and ``{offset}``:
    a value that is exactly a placeholder becomes the number (a JSON number in a body)."""

    json_body: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _request_shape(self) -> _JsonApi:
        if self.method == "GET" and (self.form is not None or self.json_body is not None):
            raise ValueError("a GET request has no form or json_body (use params)")
        if self.form is not None and self.json_body is not None:
            raise ValueError("a POST sends a form or a json_body, not both")
        templates = [*self.params.values(), *(self.form or {}).values()]
        templates += _strings_in(self.json_body)
        if not any("{page}" in text or "{offset}" in text for text in _strings_in(templates)):
            raise ValueError(
                "no page placeholder: params, form or json_body must hold {page} or {offset}"
            )
        return self


JsonApiDef = _JsonApi  # the validated block, as the family spider reads it
JsonAnswerDef = _JsonAnswer  # what every JSON-reading family declares of its answers


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings_in(item)]
    return []


class _HtmlPager(_Block):
    """Where a list page states its size: the text under ``css`` searched with ``total``
    (rows, e.g. ``共(\\d+)条``) and ``pages`` (``共(\\d+)页``), each a regex whose first group
    is the number."""

    css: Text
    total: str | None = None
    pages: str | None = None

    @field_validator("total", "pages")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                groups = re.compile(value).groups
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if groups < 1:
                raise ValueError("the regex needs a group around the number: 共(\\d+)条")
        return value

    @model_validator(mode="after")
    def _states_something(self) -> _HtmlPager:
        if self.total is None and self.pages is None:
            raise ValueError("a pager states a 'total' or 'pages' (a regex each)")
        return self


class _HtmlDetail(_Block):
    """Each row's detail page: the link in the column headed ``column``, read as the
    label/value table at ``table``; ``key_labels`` must be on it."""

    column: Text
    table: Text
    key_labels: list[Text] = []


class _HtmlRefusal(_Block):
    """A page without the list table whose text holds one of ``contains`` is the portal
    saying no (访问过于频繁, 系统繁忙): the fetch gets ``outcome``."""

    contains: Annotated[list[Text], Field(min_length=1)]
    outcome: ErrorOutcome = "rate_limited"


class _HtmlList(_PagedRequest):
    """A list published as HTML pages of a table, read by the ``html_list`` family spider.

    ``url`` is relative to the source's ``base_url``; ``url``, ``params`` (the query) and
    ``form`` (a POST form) may hold ``{page}``, ``{size}`` and ``{offset}``; ``first_url``
    is page 1's address when it differs (``index.html`` before ``index_{page}.html``).
    Columns are found by their header label (``key_columns``), never by position."""

    first_url: str | None = None
    table: Text  # CSS of the list table; its first row of <th> cells is the header
    rows: Text = "tr"  # CSS of the rows within the table (header rows left out)
    key_columns: Annotated[list[Text], Field(min_length=1)]  # header labels rows must fill
    no_rows: Text = "暂无|无数据|没有(找到)?(相关|符合条件的)?(数据|记录|信息)"
    pager: _HtmlPager | None = None
    detail: _HtmlDetail | None = None
    refused: list[_HtmlRefusal] = []

    @field_validator("no_rows")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _request_shape(self) -> _HtmlList:
        if self.method == "GET" and self.form is not None:
            raise ValueError("a GET request has no form (use params)")
        templates = [self.url, *_strings_in([*self.params.values(), *(self.form or {}).values()])]
        if not any("{page}" in text or "{offset}" in text for text in templates):
            raise ValueError(
                "no page placeholder: url, params or form must hold {page} or {offset}"
            )
        if self.detail is not None and self.detail.column not in self.key_columns:
            raise ValueError(f"detail column {self.detail.column!r} is not one of key_columns")
        return self


HtmlListDef = _HtmlList  # the validated block, as the family spider reads it


class _SiteToken(_Block):
    """A request signature the portal's own script computes (信用山东's ``sd.js``): ``js`` is
    a JavaScript expression evaluated in the index page, over ``params`` (the page's query
    parameters, as an object), ``query`` (the same, urlencoded) and ``timestamp`` (the page's
    ``Date.now()``, as text); its value is sent as the parameter ``param``, the timestamp as
    ``timestamp``."""

    js: Text
    param: Text = "token"
    timestamp: Text = "timestamp"


class _CreditSearch(_PagedRequest, _JsonAnswer):
    """A list of the creditsearch vendor platform (信用山东, 陕西, 辽宁), read by the
    ``creditsearch`` family spider: the ``index`` page (relative to ``base_url``) is opened in
    Chromium, and each page of the JSON API at ``url`` (GET, ``params`` with ``{page}``,
    ``{size}``, ``{offset}``) is fetched from inside it, signed by the site's ``token``."""

    index: Text
    token: _SiteToken

    @model_validator(mode="after")
    def _request_shape(self) -> _CreditSearch:
        if self.method != "GET" or self.form is not None:
            raise ValueError("the list API is read with GET and params")
        if self.headers:
            raise ValueError("the page's fetch sends the browser's own headers: no 'headers'")
        if not any("{page}" in text or "{offset}" in text for text in _strings_in(self.params)):
            raise ValueError("no page placeholder: params must hold {page} or {offset}")
        reserved = {self.token.param, self.token.timestamp} & set(self.params)
        if reserved:
            raise ValueError(f"{', '.join(sorted(reserved))}: set by the token, not in params")
        return self


CreditSearchDef = _CreditSearch  # the validated block, as the family spider reads it


class _ListWatch(_Block):
    type: Text  # the portal's record type, e.g. 行政处罚


class _List(_Block):
    id: Text
    name_zh: str | None = None
    name_en: str | None = None
    list_kind: ListKind
    record_key: RecordKeyRule = "case"
    publication: Publication = "database"
    coverage: Coverage = "complete"
    validity_years: Positive | None = None
    required_fields: list[Text] = ["entity_name"]
    domain: str | None = None
    checks: _Checks | None = None
    delisting_guard: _Guard | None = None
    api: _Api | None = None
    watch: _ListWatch | None = None
    json_api: _JsonApi | None = None
    html_list: _HtmlList | None = None
    creditsearch: _CreditSearch | None = None

    @model_validator(mode="after")
    def _partial_reading(self) -> _List:
        """``coverage: partial`` needs the limit a run reads up to, and only fits a database
        read page by page: watch lists are complete per watched subject, and announcements
        never count absence anyway."""
        if self.coverage != "partial":
            return self
        if self.watch is not None:
            raise ValueError(
                "coverage: partial does not fit a watch list: its completeness is per watched "
                "subject"
            )
        if self.publication == "announcements":
            raise ValueError(
                "coverage: partial is for databases: announcements never count absence anyway"
            )
        if _read_limit(self) is None:
            raise ValueError(
                "coverage: partial needs the limit a run reads up to: api.cap or "
                "api.max_pages, or max_pages in the list's json_api, html_list or "
                "creditsearch block"
            )
        return self


def _read_limit(raw: _List) -> ReadLimit | None:
    """What one run reads of the list at most, from its paging block (None: no limit)."""
    if raw.api is not None:
        size = raw.api.page_size
        limits = [raw.api.cap, raw.api.max_pages * size if raw.api.max_pages else None]
        rows = min((n for n in limits if n is not None), default=None)
        return None if rows is None else ReadLimit(rows=rows, pages=math.ceil(rows / size))
    for block in (raw.json_api, raw.html_list, raw.creditsearch):
        if block is not None and block.max_pages is not None:
            return ReadLimit(rows=block.max_pages * block.page_size, pages=block.max_pages)
    return None


class _Selectors(_Block):
    item: Text
    link: Text
    title: Text
    body: Text
    date: str | None = None
    next: str | None = None
    meta: str | None = None


class _Recognise(_Block):
    listing: Annotated[list[Text], Field(min_length=1)]
    removal: list[Text] = []
    ignore: list[Text] = []


class _Announcements(_Block):
    index: Text
    max_index_pages: Positive = 10
    selectors: _Selectors
    recognise: _Recognise
    header_labels: Annotated[list[Text], Field(min_length=1)]
    feeds: str | None = Field(default=None, alias="list")  # `list` would shadow the builtin


class _Source(_Block):
    id: Text
    name_zh: Text
    name_en: Text
    jurisdiction: _Jurisdiction
    base_url: Text
    domain: str | None = None
    schedule: _Schedule | None = None
    politeness: _Politeness | None = None
    cassette: _Cassette | None = None
    lists: list[_List]
    announcements: _Announcements | None = None
    delist_after: Positive = 2
    failing_after: Positive = 3
    session: _Session | None = None
    watch: _Watch | None = None
    spider: SpiderFamily | None = None
    platform: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")] | None = None
    labels: dict[Text, Text] = {}

    @model_validator(mode="after")
    def _shards(self) -> _Source:
        """``schedule.shards`` split the watchlist: it needs one, and stays under the cap."""
        shards = self.schedule.shards if self.schedule is not None else 1
        if shards == 1:
            return self
        if self.schedule is None or not self.schedule.watchlist:
            raise ValueError("schedule.shards splits the watchlist: schedule.watchlist is needed")
        if not any(lst.watch is not None for lst in self.lists):
            raise ValueError("schedule.shards needs a watch list (a list with a 'watch:' block)")
        cap = self.watch.max_shards if self.watch is not None else _Watch().max_shards
        if shards > cap:
            raise ValueError(
                f"schedule.shards {shards} is above watch.max_shards {cap}: each shard asks "
                "the portal at the full politeness rate"
            )
        return self

    @field_validator("labels")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        # A misspelt target would otherwise only fail on the first page showing the label.
        seen: dict[str, str] = {}
        for label, target in value.items():
            folded = canonical_label(label)
            if folded in seen:
                raise ValueError(f"labels {seen[folded]!r} and {label!r} are the same label")
            seen[folded] = label
            if target not in LABEL_TARGETS:
                close = difflib.get_close_matches(target, sorted(LABEL_TARGETS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"label {label!r}: unknown target {target!r}{hint}")
        return value


# --- errors: where, and which key was meant ---------------------------------------------------

Loc = tuple[str | int, ...]


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The schema block at ``loc`` (list indexes skipped), to suggest its keys."""
    model: type[BaseModel] | None = _Source
    for step in loc:
        if isinstance(step, int):
            continue
        if model is None:
            return None
        fields = {info.alias or name: info for name, info in model.model_fields.items()}
        if step not in fields:
            return None
        model = _block_in(fields[step].annotation)
    return model


def _block_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _block_in(arg)
        if found is not None:
            return found
    return None


def _keys_at(loc: Loc) -> list[str]:
    model = _model_at(loc)
    return [info.alias or name for name, info in model.model_fields.items()] if model else []


def _meant(loc: Loc) -> str | None:
    """The declared key nearest to the unknown one at ``loc``."""
    close = difflib.get_close_matches(str(loc[-1]), _keys_at(loc[:-1]), n=1)
    return close[0] if close else None


def _suggestion(loc: Loc) -> str:
    meant = _meant(loc)
    if meant:
        return f" (did you mean {meant!r}?)"
    keys = _keys_at(loc[:-1])
    return f" (known: {', '.join(keys)})" if keys else ""


def _dotted(loc: Loc) -> str:
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else f".{step}" if text else str(step)
    return text


def _where(data: Any, loc: Loc) -> tuple[str, Loc]:
    """``source 'x'`` or ``source 'x' list 'y'``, and the rest of ``loc`` below it."""
    sid = data.get("id") if isinstance(data, dict) else None
    where = f"source {sid!r}" if isinstance(sid, str) else "source"
    if len(loc) >= 2 and loc[0] == "lists" and isinstance(loc[1], int):
        try:
            short = data["lists"][loc[1]]["id"]
        except (KeyError, IndexError, TypeError):
            short = None
        where += f" list {short!r}" if isinstance(short, str) else f" lists[{loc[1]}]"
        return where, loc[2:]
    return where, loc


def _line(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest key of ``loc`` the file holds (a missing key: its block's)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _problem(data: Any, error: Mapping[str, Any]) -> str:
    loc: Loc = tuple(error["loc"])
    where, rest = _where(data, loc)
    block = f" in {_dotted(rest[:-1])}" if len(rest) > 1 else ""
    if error["type"] == "extra_forbidden":
        return f"{where}: unknown key {loc[-1]!r}{block}{_suggestion(loc)}"
    if error["type"] == "missing":
        return f"{where}: missing {loc[-1]!r}{block}"
    message = error["msg"]
    if error["type"] in ("model_type", "model_attributes_type", "dict_type"):
        message = "Input should be a mapping"
    return (
        f"{where}: {_dotted(rest) or 'the declaration'}: {message} (got {_brief(error['input'])})"
    )


def _validation_error(data: Any, exc: ValidationError, lines: Mapping[Loc, int]) -> RegistryError:
    """One error for all of a declaration's problems, unknown keys first, then in file order.
    A key reported missing because it was misspelt is said once, as the misspelling."""
    found = exc.errors()
    misspelt = {
        (*e["loc"][:-1], _meant(tuple(e["loc"]))) for e in found if e["type"] == "extra_forbidden"
    }
    errors = sorted(
        (e for e in found if e["type"] != "missing" or tuple(e["loc"]) not in misspelt),
        key=lambda e: (e["type"] != "extra_forbidden", _line(lines, tuple(e["loc"])) or 0),
    )
    first = _line(lines, tuple(errors[0]["loc"]))
    messages = [_problem(data, errors[0])]
    for error in errors[1:]:
        line = _line(lines, tuple(error["loc"]))
        messages.append(f"  also{f' line {line}' if line else ''}: {_problem(data, error)}")
    return RegistryError("\n".join(messages), first)


# --- reading a declaration --------------------------------------------------------------------


def parse_source(
    data: Any, lines: Mapping[Loc, int] | None = None, room: Path | None = None
) -> SourceDef:
    """Validate one YAML declaration and turn it into a typed ``SourceDef``. ``lines`` maps
    each key's path to its line in the file, so that errors can say where they are; ``room``
    is the folder it was read from (where the source's own ``spider.py`` would be)."""
    lines = lines or {}
    if not isinstance(data, dict):
        raise RegistryError(
            f"a source declaration is a mapping (id: ..., lists: ...), not {type(data).__name__}",
            _line(lines, ()),
        )
    try:
        model = _Source.model_validate(data)
    except ValidationError as exc:
        raise _validation_error(data, exc, lines) from None
    where = f"source {model.id!r}"
    if model.spider == "announcements" and model.announcements is None:
        raise RegistryError(
            f"{where}: spider 'announcements' reads an 'announcements:' block, and there is none",
            _line(lines, ("spider",)),
        )
    for family in LIST_BLOCK_FAMILIES:  # each reads a block of its own on every list
        for index, item in enumerate(model.lists):
            if model.spider == family and getattr(item, family) is None:
                raise RegistryError(
                    f"{where} list {item.id!r}: spider {family!r} reads each list's "
                    f"'{family}:' block, and there is none",
                    _line(lines, ("lists", index)),
                )
            if getattr(item, family) is not None and model.spider != family:
                raise RegistryError(
                    f"{where} list {item.id!r}: its '{family}:' block is read only by "
                    f"'spider: {family}'",
                    _line(lines, ("lists", index, family)),
                )
    lists = [_list_def(model.id, raw) for raw in model.lists]
    schedule = model.schedule or _Schedule()
    politeness = model.politeness or _Politeness()
    cassette = model.cassette or _Cassette()
    return SourceDef(
        id=model.id,
        name_zh=model.name_zh,
        name_en=model.name_en,
        jurisdiction=model.jurisdiction.name,
        region_code=model.jurisdiction.region_code,
        base_url=model.base_url,
        domain=model.domain,
        cron=schedule.cron,
        timezone=schedule.timezone,
        politeness=Politeness(**politeness.model_dump()),
        filter_query_parameters=tuple(cassette.filter_query_parameters),
        lists=tuple(lists),
        announcements=_announcements(
            model.announcements, lists, where, _line(lines, ("announcements",))
        ),
        delist_after=model.delist_after,
        failing_after=model.failing_after,
        jitter=schedule.jitter,
        watchlist=schedule.watchlist,
        shards=schedule.shards,
        max_shards=(model.watch or _Watch()).max_shards,
        spider=model.spider,
        platform=model.platform,
        labels=tuple(model.labels.items()),
        room=room,
        raw=data,
    )


def _list_def(source_id: str, raw: _List) -> ListDef:
    checks = raw.checks or _Checks()
    guard = raw.delisting_guard or _Guard()
    return ListDef(
        id=f"{source_id}.{raw.id}",
        short_id=raw.id,
        name_zh=raw.name_zh or raw.id,
        name_en=raw.name_en or raw.id,
        list_kind=raw.list_kind,
        record_key=raw.record_key,
        required_fields=tuple(raw.required_fields),
        domain=raw.domain,
        publication=raw.publication,
        coverage=raw.coverage,
        read_limit=_read_limit(raw),
        validity_years=raw.validity_years,
        checks=HealthChecks(
            min_rows=checks.min_rows,
            max_drop=checks.max_drop,
            fill_rates=tuple(sorted(checks.fill_rates.items())),
        ),
        guard=DelistingGuard(share=guard.share, min_count=guard.min_count),
        json_api=raw.json_api,
        html_list=raw.html_list,
        creditsearch=raw.creditsearch,
    )


def _announcements(
    data: _Announcements | None, lists: list[ListDef], where: str, line: int | None
) -> AnnouncementDef | None:
    if data is None:
        return None
    fed = [lst for lst in lists if lst.publication == "announcements"]
    if data.feeds is not None:
        fed = [lst for lst in lists if data.feeds in (lst.id, lst.short_id)]
    if len(fed) != 1:
        raise RegistryError(f"{where}: announcements must feed exactly one list (set 'list')", line)
    return AnnouncementDef(
        index=data.index,
        selectors=AnnouncementSelectors(**data.selectors.model_dump()),
        listing=tuple(data.recognise.listing),
        removal=tuple(data.recognise.removal),
        ignore=tuple(data.recognise.ignore),
        header_labels=tuple(data.header_labels),
        list=fed[0].id,
        max_index_pages=data.max_index_pages,
    )


def read_yaml(text: str) -> tuple[Any, dict[Loc, int]]:
    """The document and the line of every key and list item in it (by path). A key given
    twice is an error: YAML would quietly keep the second."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[Loc, int] = {}
        _walk(node, (), lines)
        return loader.construct_document(node), lines
    finally:
        loader.dispose()


def _walk(node: yaml.Node, path: Loc, lines: dict[Loc, int]) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            if name in seen:
                where = _dotted(path)
                raise RegistryError(
                    f"key {name!r} twice" + (f" in {where}" if where else ""),
                    key.start_mark.line + 1,
                )
            seen.add(name)
            _walk(value, (*path, name), lines)
            lines[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), lines)


# --- the registry -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BrokenSource:
    """A declaration that could not be loaded: reported with its file and line, and skipped
    so that the other sources still load and run."""

    source_id: str  # the id it declares, else its room's name
    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}{f':{self.line}' if self.line else ''}: {self.message}"


@dataclass(frozen=True)
class Registry:
    """One sources directory (of rooms) as read: what loads, and what was skipped and why."""

    sources: dict[str, SourceDef]
    broken: tuple[BrokenSource, ...]


def sources_dir() -> Path:
    """``CREDITWATCH_SOURCES_DIR`` when set (a private registry, a test's), else the shipped.
    Either holds one room per source: ``<id>/source.yml``."""
    configured = os.environ.get(SOURCES_DIR_ENV)
    return Path(configured).resolve() if configured else SHIPPED_SOURCES


def room_name(path: Path) -> str:
    """The room a declaration file belongs to (``<room>/source.yml``), or a stray file's stem."""
    return path.parent.name if path.name == SOURCE_FILE else path.stem


def _read_file(path: Path) -> tuple[SourceDef | BrokenSource, int | None]:
    """The room's source, or why it is broken; and the line of its ``id``."""
    room = room_name(path)
    if path.name != SOURCE_FILE:  # a declaration left outside a room would silently not run
        message = f"a declaration outside a room: move it to {room}/{SOURCE_FILE}"
        return BrokenSource(room, path, None, message), None
    if not path.is_file():
        return BrokenSource(room, path, None, f"the room {room!r} has no {SOURCE_FILE}"), None
    try:
        data, lines = read_yaml(path.read_text(encoding="utf-8"))
    except RegistryError as exc:
        return BrokenSource(room, path, exc.line, exc.message), None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = ""
        if exc.context and exc.context_mark is not None:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        message = f"invalid YAML: {exc.problem or exc.context}{context}"
        return BrokenSource(room, path, mark.line + 1 if mark else None, message), None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return BrokenSource(room, path, None, f"unreadable: {exc}"), None
    if data is None:
        return BrokenSource(room, path, None, "the file is empty"), None
    declared = data.get("id") if isinstance(data, dict) else None
    try:
        return parse_source(data, lines, room=path.parent), lines.get(("id",))
    except RegistryError as exc:
        sid = declared if isinstance(declared, str) and declared else room
        return BrokenSource(sid, path, exc.line, exc.message), None


def _declarations(directory: Path) -> list[Path]:
    """Each room's ``source.yml`` (named even when missing, to be reported), and any YAML
    file lying loose in the directory (reported too). ``_``/``.`` entries are not rooms."""
    paths = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.is_dir():
            paths.append(entry / SOURCE_FILE)
        elif entry.suffix in (".yml", ".yaml"):
            paths.append(entry)
    return paths


@cache
def _load(directory: Path) -> Registry:
    if not directory.is_dir():
        raise RegistryError(f"no source directory {directory} ({SOURCES_DIR_ENV})")
    read = [(path, *_read_file(path)) for path in _declarations(directory)]
    # Two rooms declaring one id: the room named after the id keeps it (a copy made to start
    # a new source must not take the original's place), else the first by name. A broken
    # declaration keeps its id too, so that a copy cannot stand in for it unnoticed.
    read.sort(key=lambda entry: room_name(entry[0]) != _claimed(entry[1]))
    sources: dict[str, SourceDef] = {}
    broken: list[BrokenSource] = []
    origin: dict[str, BrokenSource | Path] = {}
    for path, item, id_line in read:
        sid = _claimed(item)
        if isinstance(item, BrokenSource):
            broken.append(item)
            origin.setdefault(sid, item)
        elif sid in origin:
            first = origin[sid]
            where = (
                f"{first.path} (which does not load)" if isinstance(first, BrokenSource) else first
            )
            message = f"source {sid!r} is already declared in {where}"
            broken.append(BrokenSource(sid, path, id_line, message))
        else:
            sources[sid] = item
            origin[sid] = path
    return Registry(
        sources=dict(sorted(sources.items())),
        broken=tuple(sorted(broken, key=lambda b: b.path)),
    )


def _claimed(item: SourceDef | BrokenSource) -> str:
    return item.id if isinstance(item, SourceDef) else item.source_id


def load_registry() -> dict[str, SourceDef]:
    """Every source that loads, by id, read once per process and sources directory. Broken
    declarations are left out; ``broken_sources()`` says which and why."""
    return _load(sources_dir()).sources


def broken_sources() -> tuple[BrokenSource, ...]:
    """The declarations ``load_registry()`` skipped, with file, line and message."""
    return _load(sources_dir()).broken


def get_source(source_id: str) -> SourceDef:
    """The source, or a RegistryError: a broken one's names its file and line."""
    registry = _load(sources_dir())
    try:
        return registry.sources[source_id]
    except KeyError:
        pass
    matches = [b for b in registry.broken if source_id in (b.source_id, room_name(b.path))]
    if matches:  # the room named after the id first: a copy's "declared twice" says less
        broken = min(matches, key=lambda b: room_name(b.path) != source_id)
        raise RegistryError(str(broken), broken.line)
    known = ", ".join(registry.sources)
    skipped = ", ".join(sorted({b.source_id for b in registry.broken}))
    raise RegistryError(
        f"unknown source {source_id!r} (known: {known})"
        + (f"; not loaded: {skipped}" if skipped else "")
    )
