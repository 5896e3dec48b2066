"""Subscriptions: who wants to hear about which events, where, how often and in which language.

A subscription has two kinds of conditions (``matching.py`` applies them):

* scope filters (``sources``, ``lists``, ``list_kinds``, ``events``, ``include_baseline``):
  every one that is set must hold;
* entity criteria (``uscc``, ``names``, ``fuzzy_names``, ``keywords``, ``regions``): when none
  is set the subscription follows whole lists; otherwise at least one must match.

Every ``Subscription`` is valid once constructed: ``__post_init__`` checks and normalises every
field (USCCs upper-cased and check-digit verified, list ids checked against the registry,
time zones against zoneinfo), so a stored or hand-written subscription cannot silently match
more or less than its author meant. Errors are ``SubscriptionError`` naming the subscription
and the field.

File form
---------
Groups that keep their subscriptions in git write them as YAML (``.yml`` / ``.yaml``) or TOML
(``.toml``); ``load_file`` reads both, ``dump_file`` writes YAML. The fields are those of
``Subscription``; only ``id`` and ``channels`` are required. Unknown keys (at the top level or
in a subscription) and duplicate keys are errors, since a typo would otherwise widen or narrow
a subscription without anyone noticing; ids must be unique within a file::

    subscriptions:
      - id: xm-hotels
        channels: ["email:desk@example.org"]
        mode: daily
        timezone: Asia/Shanghai
        uscc: ["91350200612003118E"]
        names: ["厦门嘉禾酒店有限公司"]
        fuzzy_names: ["嘉禾酒店"]
        fuzzy_threshold: 90
        keywords: ["导游", "擅自变更"]
        regions: ["3502"]
        lists: ["xmtravel.warning", "mct_tourism.blacklist"]
        events: [listed, relisted]
      - id: maintainers
        channels: ["webhook:https://hooks.example.org/creditwatch"]
        language: en
        sources: [xmtravel]
        health: true
        events: []

The same in TOML::

    [[subscriptions]]
    id = "xm-hotels"
    channels = ["email:desk@example.org"]
    regions = ["3502"]
    lists = ["xmtravel.warning"]

``title`` (one line) names the subscription in its feeds (default ``creditwatch alerts: ID``,
in its language); ``base_url`` is the public address of the web app its alerts link to
(default ``CREDITWATCH_BASE_URL``, see ``alerts.links``).

``health: true`` adds source-health alerts (layout drift, a source failing) for the
subscription's ``sources`` (all when unset); with ``events: []`` it hears of nothing else.

A bare string where a list is expected (``channels: "email:desk@example.org"``) is read as a
one-item list; region codes and USCCs written as numbers are read as their digits.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from alerts.links import check_base_url
from core.catalogue import LANGUAGES, text
from core.clock import TIMEZONE_NAME
from core.normalise.codes import compact, is_valid_uscc
from core.normalise.segment import cut
from core.normalise.text import fold, name_key
from core.registry import LIST_KINDS, load_registry
from core.schema import EVENT_KINDS

MODES = ("immediate", "hourly", "daily")

_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
_ID_MAX = 64
_TITLE_MAX = 120
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# GB/T 2260 prefixes: province (2), prefecture (4) or county (6) digits. An odd length is a
# typo that would follow an arbitrary run of codes (``35020`` → 350200-350209).
_REGION_RE = re.compile(r"\d{2}|\d{4}|\d{6}")

_TUPLE_FIELDS = (
    "channels",
    "uscc",
    "names",
    "fuzzy_names",
    "keywords",
    "regions",
    "sources",
    "lists",
    "list_kinds",
    "events",
)
_NUMERIC_OK = ("uscc", "regions")  # YAML/TOML may read these unquoted as integers


class SubscriptionError(ValueError):
    """A subscription (or a file of them) is malformed; the message names where."""


def keyword_tokens(keyword: str) -> tuple[str, ...]:
    """The words a keyword stands for: jieba tokens of its folded text, punctuation dropped.

    Shared with ``matching.py`` so that validation rejects exactly the keywords that could
    never match (only punctuation or whitespace).
    """
    return tuple(tok for tok in cut(fold(keyword)) if any(ch.isalnum() for ch in tok))


@dataclass(frozen=True)
class Subscription:
    """One subscriber's conditions and delivery preferences (see the module docstring)."""

    id: str
    channels: tuple[str, ...]
    language: str = "zh"
    mode: str = "immediate"
    timezone: str = TIMEZONE_NAME
    uscc: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    fuzzy_names: tuple[str, ...] = ()
    fuzzy_threshold: float = 90.0
    keywords: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    lists: tuple[str, ...] = ()
    list_kinds: tuple[str, ...] = ()
    events: tuple[str, ...] = EVENT_KINDS
    include_baseline: bool = False
    health: bool = False
    title: str | None = None  # what people call it: its feeds' title
    base_url: str | None = None  # the web app its alerts link to (else CREDITWATCH_BASE_URL)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def feed_title(self) -> str:
        """Its feeds' title: its own, else ``creditwatch alerts: ID`` in its language."""
        if self.title:
            return self.title
        return text("alerts.human_feed_title", self.language).format(name=self.id)

    @property
    def follows_lists(self) -> bool:
        """True when no entity criterion is set: every in-scope event matches."""
        return not (self.uscc or self.names or self.fuzzy_names or self.keywords or self.regions)

    def as_dict(self) -> dict[str, Any]:
        """Every field, tuples as lists: JSON- and YAML-safe, and ``from_dict`` reads it back."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Subscription:
        """Build and validate a subscription from its dict (storage or file form).

        Unknown keys are errors; lists become tuples; everything else is checked by
        ``__post_init__``.
        """
        if not isinstance(data, Mapping):
            raise SubscriptionError(f"a subscription must be a mapping, not {_kind(data)}")
        sid = data.get("id")
        where = f"subscription {sid!r}" if isinstance(sid, str) and sid else "subscription"
        if "id" not in data:
            raise SubscriptionError(f"{where}: missing 'id'")
        if "channels" not in data:
            raise SubscriptionError(f"{where}: missing 'channels'")
        known = {f.name for f in fields(cls)}
        unknown = sorted(str(key) for key in data if key not in known)
        if unknown:
            raise SubscriptionError(
                f"{where}: unknown field(s) {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in _TUPLE_FIELDS:
                kwargs[key] = _as_tuple(value, where, key)
            else:
                kwargs[key] = value
        return cls(**kwargs)


def _kind(value: Any) -> str:
    return type(value).__name__


def _as_tuple(value: Any, where: str, field_name: str) -> tuple[Any, ...]:
    if isinstance(value, str):
        return (value,)
    if field_name in _NUMERIC_OK and isinstance(value, int) and not isinstance(value, bool):
        return (str(value),)
    if isinstance(value, list | tuple):
        items = []
        for item in value:
            if field_name in _NUMERIC_OK and isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            items.append(item)
        return tuple(items)
    raise SubscriptionError(f"{where}: {field_name} must be a list of strings, not {_kind(value)}")


def _strings(sub: Subscription, field_name: str, where: str) -> tuple[str, ...]:
    """The field's items, each a non-blank string, stripped, duplicates dropped (order kept)."""
    value = getattr(sub, field_name)
    if isinstance(value, list):
        value = tuple(value)
    if not isinstance(value, tuple):
        raise SubscriptionError(f"{where}: {field_name} must be a tuple of strings")
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise SubscriptionError(
                f"{where}: {field_name} items must be non-empty strings, got {item!r}"
            )
        item = item.strip()
        if item not in out:
            out.append(item)
    return tuple(out)


def _one_of(value: Any, allowed: Sequence[str], where: str, field_name: str) -> None:
    if value not in allowed:
        raise SubscriptionError(
            f"{where}: {field_name} {value!r} is not one of {', '.join(allowed)}"
        )


def _validate(sub: Subscription) -> None:
    """Check every field and store its normalised form (the dataclass is frozen)."""
    if not isinstance(sub.id, str) or len(sub.id) > _ID_MAX or not _ID_RE.fullmatch(sub.id):
        raise SubscriptionError(
            f"subscription id {sub.id!r} must be a slug of at most {_ID_MAX} characters: "
            "lower-case letters, digits, '_' and '-', starting with a letter or digit"
        )
    where = f"subscription {sub.id!r}"

    def put(field_name: str, value: Any) -> None:
        object.__setattr__(sub, field_name, value)

    for field_name in _TUPLE_FIELDS:
        put(field_name, _strings(sub, field_name, where))

    if not sub.channels:
        raise SubscriptionError(f"{where}: channels must name at least one channel")
    _one_of(sub.language, LANGUAGES, where, "language")
    _one_of(sub.mode, MODES, where, "mode")
    _check_timezone(sub.timezone, where)
    for flag in ("include_baseline", "health"):
        if not isinstance(getattr(sub, flag), bool):
            raise SubscriptionError(f"{where}: {flag} must be true or false")
    put("title", _title(sub.title, where))
    if sub.base_url is not None:
        try:
            put("base_url", check_base_url(sub.base_url))
        except ValueError as exc:
            raise SubscriptionError(f"{where}: {exc}") from None

    codes = []
    for code in sub.uscc:
        if not is_valid_uscc(code):
            raise SubscriptionError(
                f"{where}: uscc {code!r} is not a valid unified social credit code "
                "(GB 32100 check failed)"
            )
        codes.append(compact(code))
    put("uscc", tuple(dict.fromkeys(codes)))

    for field_name in ("names", "fuzzy_names"):
        for name in getattr(sub, field_name):
            if name_key(name) is None:
                raise SubscriptionError(f"{where}: {field_name} item {name!r} is empty")
    threshold = sub.fuzzy_threshold
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise SubscriptionError(f"{where}: fuzzy_threshold must be a number, got {threshold!r}")
    if not 0 < threshold <= 100:
        raise SubscriptionError(f"{where}: fuzzy_threshold {threshold!r} must be in (0, 100]")
    put("fuzzy_threshold", float(threshold))

    for keyword in sub.keywords:
        if not keyword_tokens(keyword):
            raise SubscriptionError(f"{where}: keyword {keyword!r} has no words to match")
    for region in sub.regions:
        if not _REGION_RE.fullmatch(region):
            raise SubscriptionError(
                f"{where}: region {region!r} must be a GB/T 2260 code prefix of 2, 4 or 6 "
                "digits (e.g. '35', '3502', '350203')"
            )

    registry = load_registry()
    for source in sub.sources:
        if source not in registry:
            raise SubscriptionError(
                f"{where}: unknown source {source!r} (known: {', '.join(sorted(registry))})"
            )
    list_ids = {lst.id: lst for src in registry.values() for lst in src.lists}
    for list_id in sub.lists:
        if list_id not in list_ids:
            hint = sorted(lid for lid, lst in list_ids.items() if lst.short_id == list_id)
            more = f"; did you mean {' or '.join(hint)}?" if hint else ""
            raise SubscriptionError(
                f"{where}: unknown list {list_id!r} (lists are full ids '<source>.<list>'{more})"
            )
    for kind in sub.list_kinds:
        _one_of(kind, LIST_KINDS, where, "list_kinds item")
    if not sub.events and not sub.health:
        raise SubscriptionError(
            f"{where}: events must name at least one event kind (only a maintainers' "
            "subscription, health: true, may hear of source health alone)"
        )
    for event in sub.events:
        _one_of(event, EVENT_KINDS, where, "events item")


def _title(value: Any, where: str) -> str | None:
    """A title is one line of at most ``_TITLE_MAX`` characters (a feed reader's list shows
    it); blank is none."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise SubscriptionError(f"{where}: title must be text, not {_kind(value)}")
    value = value.strip()
    if _CONTROL_RE.search(value) or len(value) > _TITLE_MAX:
        raise SubscriptionError(
            f"{where}: title must be one line of at most {_TITLE_MAX} characters, "
            "without control characters"
        )
    return value or None


def _check_timezone(name: Any, where: str) -> None:
    if not isinstance(name, str) or not name:
        raise SubscriptionError(f"{where}: timezone must be a zoneinfo name, got {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise SubscriptionError(
            f"{where}: timezone {name!r} is not a known zoneinfo name (e.g. 'Asia/Shanghai')"
        ) from None


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _one_line(exc: Exception) -> str:
    """A parser's error in one line, at its line and column: PyYAML's own message spans
    several lines (the snippet and a caret), which a command line would print as they are."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        context = f" ({exc.context})" if exc.context else ""
        return f"{where}{exc.problem or exc.context}{context if exc.problem else ''}"
    return " ".join(str(exc).split())


def load_file(path: Path) -> list[Subscription]:
    """Read the file form (YAML or TOML by extension); every subscription validated, ids
    unique. Errors name the file."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SubscriptionError(f"{path}: cannot read: {exc}") from None
    try:
        if suffix in (".yml", ".yaml"):
            data = yaml.load(text, Loader=_StrictLoader)  # SafeLoader plus the duplicate check
        elif suffix == ".toml":
            data = tomllib.loads(text)
        else:
            raise SubscriptionError(f"{path}: expected a .yml, .yaml or .toml file")
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise SubscriptionError(
            f"{path}: not valid {suffix[1:].upper()}: {_one_line(exc)}"
        ) from None

    if not isinstance(data, dict) or "subscriptions" not in data:
        raise SubscriptionError(f"{path}: expected a top-level 'subscriptions' list")
    extra = sorted(str(key) for key in data if key != "subscriptions")
    if extra:
        raise SubscriptionError(f"{path}: unknown top-level key(s) {', '.join(map(repr, extra))}")
    entries = data["subscriptions"]
    if not isinstance(entries, list):
        raise SubscriptionError(f"{path}: 'subscriptions' must be a list")

    subscriptions: list[Subscription] = []
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        try:
            sub = Subscription.from_dict(entry)
        except SubscriptionError as exc:
            raise SubscriptionError(f"{path}: entry {number}: {exc}") from None
        if sub.id in seen:
            raise SubscriptionError(f"{path}: subscription id {sub.id!r} is used twice")
        seen.add(sub.id)
        subscriptions.append(sub)
    return subscriptions


def dump_file(subscriptions: Sequence[Subscription], path: Path) -> None:
    """Write the YAML file form (every field spelled out); ``load_file`` reads it back."""
    ids = [sub.id for sub in subscriptions]
    dupes = sorted({sid for sid in ids if ids.count(sid) > 1})
    if dupes:
        raise SubscriptionError(f"{path}: subscription id(s) used twice: {', '.join(dupes)}")
    text = yaml.safe_dump(
        {"subscriptions": [sub.as_dict() for sub in subscriptions]},
        allow_unicode=True,
        sort_keys=False,
        default_flow_style=False,
    )
    Path(path).write_text(text, encoding="utf-8")
