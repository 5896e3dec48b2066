"""Which subscriptions an event concerns, and why: pure functions of their arguments.

No I/O per call; the one-time lazy loads are those of the normalisers (jieba and the
project's user dictionary, OpenCC) and the source registry (package data), as elsewhere.

Order of checks, for one subscription and one event:

1. Scope filters, all that are set must hold: ``sources`` (the event's source), ``lists``
   (its full list id), ``list_kinds`` (the record's ``list_kind``, else the registry's kind
   of the list), ``events`` (the event kind). Baseline events (``event["baseline"]``) pass
   only with ``include_baseline``.
2. Entity criteria. None set: the subscription follows whole lists and matches as
   ``Match("list", <list id>)``. Otherwise the first criterion that matches wins, in the
   order uscc → name → fuzzy_name → keyword → region, and within one criterion the first of
   the subscription's values (for fuzzy names: the best score, the first value on a tie).

Decisions:

* **uscc**: the record's ``uscc`` (valid, upper-case by the schema) equals a subscribed code.
  Only the validated field is read, never ``uscc_raw``: a typo'd code is not the company's.
* **name**: ``name_key`` equality against the event's ``entity_name`` and the record's
  ``entity_name`` / ``entity_name_key``.
* **fuzzy_name**: rapidfuzz ``fuzz.token_set_ratio`` over the jieba words of the
  ``name_key``-folded names. With the project's dictionary a name cuts into region, trade
  name, industry and organisation form (``厦门|嘉禾|酒店|有限公司``), so a branch
  (``…有限公司思明分公司``) or an abbreviation (``嘉禾酒店``) whose words are a subset of the
  other name scores 100, whatever the lengths. ``WRatio`` was rejected: its partial-ratio
  branch depends on the length ratio, so the same branch relation scores 90 for one company
  and 83 for another with a longer name. Two refinements: a branch written the naming
  rules' way (the parent's full name, then ``…思明分公司``) scores 100 outright; and a
  token-set score counts only when the names share a *distinctive* word: not an
  organisation form or industry word, and not a region name that leads both names
  (``厦门`` in ``厦门嘉禾…`` and ``厦门嘉华…``; a region word elsewhere, like ``嘉禾`` after
  ``厦门``, is a trade name). Otherwise the score is ``fuzz.ratio`` over the two names'
  distinctive text (``嘉禾`` vs ``嘉华``: 50), or over the whole folded names when one has no
  distinctive word (``厦门国际旅行社有限公司``). Without the guard ``有限公司`` or ``厦门``
  would score 100 against every company of that shape, and ``厦门嘉华酒店有限公司`` 92
  against ``厦门嘉禾酒店有限公司``.
  Scores are rounded to 0.1; a match needs score ≥ ``fuzzy_threshold``.
* **keyword**: the keyword's jieba words (of its folded text) must all be among the words
  of the record's ``reason`` or ``measure`` (folded), where a text's words are its jieba
  words plus the dictionary words that a compound word splits into at its own boundaries
  (forward maximum matching): ``未取得导游证`` yields ``导游证`` and ``导游``, and
  ``擅自变更旅游行程`` yields ``擅自``, ``变更旅游行程``, ``变更``, ``旅游``, ``行程``. Plain
  substrings are *not* accepted: ``游行`` is a substring of ``旅游行程`` and a one-character
  keyword is a substring of half the reasons on a list. The words need not be adjacent.
* **region**: the record's ``region_code`` starts with a subscribed prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from rapidfuzz import fuzz

from core.normalise.names import parse_name
from core.normalise.regions import read_regions
from core.normalise.segment import cut, industry_words, org_forms, tokenizer
from core.normalise.text import fold, name_key
from core.registry import ListDef, load_registry

from .model import EventContext, Match, MatchedEvent
from .subscriptions import Subscription, keyword_tokens

TRADE_NAMES_APART = 50.0  # trade names less alike than this name different companies
_MAX_WORD = 16  # longest dictionary word tried when splitting a compound


def match(subscription: Subscription, context: EventContext) -> Match | None:
    """Why ``subscription`` wants ``context``'s event, or None when it does not."""
    if not _in_scope(subscription, context):
        return None
    if subscription.follows_lists:
        return Match(criterion="list", value=_list_id(context))
    record = context.record or {}
    return (
        _match_uscc(subscription, record)
        or _match_name(subscription, context)
        or _match_fuzzy(subscription, context)
        or _match_keyword(subscription, record)
        or _match_region(subscription, record)
    )


def match_all(
    subscriptions: Sequence[Subscription], contexts: Sequence[EventContext]
) -> list[tuple[Subscription, MatchedEvent]]:
    """Every (subscription, matched event) pair, grouped by subscription in the given order,
    events in the given order within each: deterministic, and ready for per-subscriber
    batching."""
    out: list[tuple[Subscription, MatchedEvent]] = []
    for sub in subscriptions:
        for ctx in contexts:
            found = match(sub, ctx)
            if found is not None:
                out.append((sub, MatchedEvent(context=ctx, match=found)))
    return out


# --- scope -------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _lists() -> dict[str, ListDef]:
    return {lst.id: lst for source in load_registry().values() for lst in source.lists}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _list_id(context: EventContext) -> str:
    return _text(context.event.get("list")) or _text((context.record or {}).get("list")) or ""


def _source_id(context: EventContext) -> str | None:
    source = _text(context.event.get("source")) or _text((context.record or {}).get("source"))
    if source:
        return source
    list_id = _list_id(context)
    return list_id.split(".", 1)[0] if "." in list_id else None


def _list_kind(context: EventContext) -> str | None:
    kind = _text((context.record or {}).get("list_kind"))
    if kind:
        return kind
    lst = _lists().get(_list_id(context))
    return lst.list_kind if lst else None


def _in_scope(sub: Subscription, context: EventContext) -> bool:
    event = context.event
    if event.get("baseline") and not sub.include_baseline:
        return False
    if event.get("event") not in sub.events:
        return False
    if sub.sources and _source_id(context) not in sub.sources:
        return False
    if sub.lists and _list_id(context) not in sub.lists:
        return False
    return not (sub.list_kinds and _list_kind(context) not in sub.list_kinds)


# --- entity criteria ---------------------------------------------------------------------


def _match_uscc(sub: Subscription, record: dict[str, Any]) -> Match | None:
    code = _text(record.get("uscc"))
    if code is None:
        return None
    code = code.upper()
    for wanted in sub.uscc:
        if wanted == code:
            return Match(criterion="uscc", value=wanted)
    return None


def _name_keys(context: EventContext) -> tuple[str, ...]:
    """The event's subject name as match keys, deduplicated in a fixed order."""
    record = context.record or {}
    keys: list[str] = []
    for raw in (context.event.get("entity_name"), record.get("entity_name")):
        key = name_key(raw) if isinstance(raw, str) else None
        if key and key not in keys:
            keys.append(key)
    stored = _text(record.get("entity_name_key"))
    if stored and stored not in keys:
        keys.append(stored)
    return tuple(keys)


def _match_name(sub: Subscription, context: EventContext) -> Match | None:
    if not sub.names:
        return None
    keys = set(_name_keys(context))
    for name in sub.names:
        if name_key(name) in keys:
            return Match(criterion="name", value=name)
    return None


@lru_cache(maxsize=1)
def _common_words() -> frozenset[str]:
    """Words that many unrelated names share wherever they stand: forms and industries."""
    return frozenset(org_forms()) | industry_words()


@lru_cache(maxsize=1 << 14)
def _name_profile(key: str) -> tuple[tuple[str, ...], frozenset[str], str]:
    """A folded name's words, its leading region words and its distinctive text.

    Region names count as generic only at the start of a name, where the naming rules put
    the registering region: ``厦门`` in ``厦门嘉禾酒店`` is generic, ``嘉禾`` (also a county's
    short name) after it is the trade name. The leading region is read as ``names.py``
    reads it (``regions.read_regions``: names that nest, county short forms only after their
    city).
    """
    _, region_chars = read_regions(key)
    leading: list[str] = []
    rest: list[str] = []
    pos = 0
    for tok in cut(key):
        pos += len(tok)
        if any(ch.isalnum() for ch in tok):
            (leading if pos <= region_chars else rest).append(tok)
    common = _common_words()
    distinctive = "".join(w for w in rest if w not in common)
    return (*leading, *rest), frozenset(leading), distinctive


@lru_cache(maxsize=1)
def _suffixes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    forms = org_forms().values()
    return (
        tuple(f.suffix for f in forms if f.role == "form"),
        tuple(f.suffix for f in forms if f.role == "branch"),
    )


def _is_branch_of(branch: str, parent: str) -> bool:
    """``branch`` is ``parent``'s full name (ending in an organisation form) followed by a
    branch name (``…分公司``, ``…营业部``): the naming rules' form of a branch."""
    forms, branches = _suffixes()
    return (
        len(branch) > len(parent)
        and branch.startswith(parent)
        and parent.endswith(forms)
        and branch.endswith(branches)
    )


def fuzzy_score(a: str, b: str) -> float:
    """Similarity 0-100 of two names (see the module docstring), rounded to 0.1."""
    ka, kb = name_key(a), name_key(b)
    if not ka or not kb:
        return 0.0
    if ka == kb:
        return 100.0
    if _is_branch_of(ka, kb) or _is_branch_of(kb, ka):
        return 100.0
    wa, lead_a, da = _name_profile(ka)
    wb, lead_b, db = _name_profile(kb)
    common = _common_words()
    shared = set(wa) & set(wb)
    if any(w not in common and not (w in lead_a and w in lead_b) for w in shared):
        score = fuzz.token_set_ratio(" ".join(wa), " ".join(wb), processor=None)
    else:
        # Both have a trade name and they differ: compare those. A name without one (all
        # region, industry and form words) can only be compared whole.
        score = fuzz.ratio(da, db, processor=None) if da and db else fuzz.ratio(ka, kb)
    return round(float(min(score, _trade_name_cap(ka, kb))), 1)


def _trade_name_cap(a: str, b: str) -> float:
    """Two companies whose trade names (字号) differ outright are different companies,
    however much else (region, industry, form) their names share: 厦门杏林观光旅游股份有限公司
    is not 厦门鹭江观光旅游股份有限公司. Their score is capped at the trade names' likeness."""
    pa, pb = parse_name(a), parse_name(b)
    ta = pa.trade_name if pa else None
    tb = pb.trade_name if pb else None
    if not ta or not tb or ta in tb or tb in ta:
        return 100.0
    likeness = fuzz.ratio(ta, tb, processor=None)
    return likeness if likeness < TRADE_NAMES_APART else 100.0


def _match_fuzzy(sub: Subscription, context: EventContext) -> Match | None:
    if not sub.fuzzy_names:
        return None
    keys = _name_keys(context)
    best: tuple[float, str] | None = None
    for wanted in sub.fuzzy_names:
        score = max((fuzzy_score(wanted, key) for key in keys), default=0.0)
        if best is None or score > best[0]:
            best = (score, wanted)
    if best is None or best[0] < sub.fuzzy_threshold:
        return None
    return Match(criterion="fuzzy_name", value=best[1], score=best[0])


def _split_compound(word: str) -> Iterable[str]:
    """Dictionary words a compound splits into at its own boundaries (forward maximum
    matching, the whole word excluded), so ``导游证`` → ``导游``, but never ``游行`` out of
    ``旅游行程``."""
    freq = tokenizer().FREQ
    i = 0
    while i < len(word):
        end = i + 1
        for j in range(min(len(word), i + _MAX_WORD), i + 1, -1):
            if (j - i) < len(word) and freq.get(word[i:j]):
                end = j
                break
        if end - i > 1:
            yield word[i:end]
        i = end


@lru_cache(maxsize=1 << 14)
def text_words(text: str) -> frozenset[str]:
    """The words a keyword may match in a reason or measure (already folded)."""
    words: set[str] = set()
    for tok in cut(text):
        if not any(ch.isalnum() for ch in tok):
            continue
        words.add(tok)
        if len(tok) > 2:
            words.update(_split_compound(tok))
    return frozenset(words)


def _match_keyword(sub: Subscription, record: dict[str, Any]) -> Match | None:
    if not sub.keywords:
        return None
    texts = [_text(record.get(field)) for field in ("reason", "measure")]
    word_sets = [text_words(fold(t)) for t in texts if t]
    if not word_sets:
        return None
    for keyword in sub.keywords:
        tokens = keyword_tokens(keyword)
        if any(all(tok in words for tok in tokens) for words in word_sets):
            return Match(criterion="keyword", value=keyword)
    return None


def _match_region(sub: Subscription, record: dict[str, Any]) -> Match | None:
    code = _text(record.get("region_code"))
    if code is None:
        return None
    for prefix in sub.regions:
        if code.startswith(prefix):
            return Match(criterion="region", value=prefix)
    return None
