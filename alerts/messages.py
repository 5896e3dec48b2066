"""Alert messages: one event, a digest or a source's health, in Chinese or English, in every medium.

Pure functions, no I/O. Each builder lays a message out once, as headings and labelled
fields, and three renderers write that layout as plain text, Markdown and HTML; ``data`` is
the JSON body of webhooks. Why each medium is escaped the way it is:

* Scraped text (names, reasons, case numbers, URLs) comes from public portals that anyone
  can get published on, so it is shown, never interpreted. In HTML it goes through
  ``html.escape``, and a URL becomes a link only when it is ``http(s)``. In Markdown every
  ASCII punctuation character gets a backslash: CommonMark makes any escaped punctuation
  literal, so no emphasis, link, autolink, HTML tag or table cell can start inside a value.
* In every rendered medium, control and format characters (NUL, CR/LF, U+2028, bidi
  overrides such as U+202E, lone surrogates) are shown as their ``\\uXXXX`` code: a name can
  neither forge a line of the message nor reorder what the reader sees. Values longer than
  300 characters are cut, saying how much was left out.
* The subject is one line: those characters become spaces and a long name is cut.
* ``data`` keeps every value exactly as stored (JSON does the escaping), so a webhook
  consumer receives the stored text, byte for byte.

``data`` of an event message::

    {"kind": "event", "subscription": ..., "key": ..., "language": ..., "subject": ...,
     "at": <the event's "at">,
     "events": [<SCHEMA.md event object, datetimes in ISO form>],
     "records": [<the record it is about, as stored>],
     "evidence": {"source_url", "raw_sha256", "run_id", "run_health", "fetched_at"},
     "match": {"criterion", "value", "score"},
     "link": <the web app's page of the entity>, "text": <the message as plain text>}

A digest (``"kind": "digest"``) has the same keys with ``evidence`` and ``match`` as lists
parallel to ``events``, plus ``"window": [start, end]``, ``"counts"`` per event kind and
``"links"`` per event. A health message (``"kind": "health"``) has ``source``, ``problem``,
``detail``, ``runs``, ``link`` and ``text``.

Bodies are written for people: fields under their catalogue labels, values in words
(``alerts.wording``: 罚款金额 1万元 → 5万元, local times with their zone, causes and
enumeration codes worded), lists and sources by name, and links into the web app
(``alerts.links``). Machine values stay in ``data``.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from alerts.links import DEFAULT_BASE_URL, event_link, list_link, source_link
from alerts.model import AlertMessage, EventContext, Evidence, Match, MatchedEvent
from alerts.wording import cause_text, health_text, label, local_time, value_text
from core.catalogue import LANGUAGES, Texts, check_language
from core.clock import TIMEZONE_NAME
from core.schema import EVENT_KINDS

SECTION = "alerts"  # this module's texts in core/catalogue.yml
MAX_VALUE = 300  # characters of one scraped value in a body
MAX_SUBJECT_NAME = 60  # characters of the entity name in a subject

# Characters that could forge a line, hide text or reorder it: C0/C1 controls, zero-width
# and direction marks, line/paragraph separators, bidi embeddings/overrides/isolates, BOM,
# interlinear annotations, and lone surrogates (which no UTF-8 encoder accepts).
# ZWNJ/ZWJ (U+200C/D) are kept: emoji sequences need them.
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")  # every ASCII punctuation character
_SAFE_URL = re.compile(r"^https?://[^\s<>\"'`\\]+$")


# -- text cleaning -----------------------------------------------------------------------------


def shown(value: str, limit: int = MAX_VALUE) -> str:
    """Scraped text made visible: hidden characters as ``\\uXXXX``, cut at ``limit``."""
    text = _HIDDEN.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    if len(text) > limit:
        text = f"{text[:limit]}… (+{len(text) - limit})"
    return text


def one_line(value: str, limit: int | None = None) -> str:
    """Text fit for a header: hidden characters become spaces, whitespace collapses."""
    text = " ".join(_HIDDEN.sub(" ", value).split())
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def md_escape(value: str) -> str:
    """Markdown-inert text: a backslash before every ASCII punctuation character."""
    return _MD_SPECIAL.sub(r"\\\1", value)


def web_url(value: str | None) -> str | None:
    """``value`` when it is a plain http(s) URL that is safe to link, else None."""
    if not value or not _SAFE_URL.match(value) or _HIDDEN.search(value):
        return None
    parts = urlsplit(value)
    return value if parts.scheme in ("http", "https") and parts.netloc else None


def jsonable(value: Any) -> Any:
    """A JSON-safe copy: datetimes and dates in ISO form, tuples as lists, strings verbatim."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, datetime | date) else str(value)


# -- the layout --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """One labelled value; ``link`` makes an http(s) value a link, ``code`` sets it in mono."""

    label: str
    value: str
    link: bool = False
    code: bool = False


@dataclass(frozen=True)
class Block:
    """A heading (level 1-3), a paragraph (level 0) or a list of fields."""

    level: int = 0
    text: str = ""
    fields: tuple[Field, ...] = ()


def _render_text(blocks: Sequence[Block]) -> str:
    lines: list[str] = []
    after_fields = False
    for block in blocks:
        if block.fields:
            if after_fields:
                lines.append("")
            after_fields = True
            lines.extend(f"  {shown(f.label)}: {shown(f.value)}" for f in block.fields)
            continue
        after_fields = False
        if block.level and lines:
            lines.append("")
        lines.append(shown(block.text, 4 * MAX_VALUE))
        if block.level == 1:
            lines.append("=" * min(60, max(10, len(lines[-1]))))
    return "\n".join(lines) + "\n"


def _md_value(f: Field) -> str:
    url = web_url(f.value) if f.link else None
    if url:
        return "<" + url + ">"
    if f.code and "`" not in f.value:
        return f"`{shown(f.value)}`"  # a code span is literal: no escapes needed, none read
    return md_escape(shown(f.value))


def _render_markdown(blocks: Sequence[Block]) -> str:
    parts: list[str] = []
    for block in blocks:
        if block.fields:
            parts.append(
                "\n".join(
                    f"- **{md_escape(shown(f.label))}:** {_md_value(f)}" for f in block.fields
                )
            )
        elif block.level:
            parts.append("#" * block.level + " " + md_escape(shown(block.text)))
        else:
            parts.append(md_escape(shown(block.text, 4 * MAX_VALUE)))
    return "\n\n".join(parts) + "\n"


def _html_value(f: Field) -> str:
    url = web_url(f.value) if f.link else None
    text = html.escape(shown(f.value), quote=True)
    if url:
        return f'<a href="{html.escape(url, quote=True)}">{text}</a>'
    return f"<code>{text}</code>" if f.code else text


def _render_html(blocks: Sequence[Block], language: str) -> str:
    out = [f'<div lang="{"zh-CN" if language == "zh" else "en"}" dir="ltr">']
    for block in blocks:
        if block.fields:
            out.append('<table cellpadding="3">')
            out.extend(
                f'<tr><th align="left" valign="top">{html.escape(shown(f.label))}</th>'
                f"<td>{_html_value(f)}</td></tr>"
                for f in block.fields
            )
            out.append("</table>")
        elif block.level:
            tag = f"h{block.level + 1}"
            out.append(f"<{tag}>{html.escape(shown(block.text), quote=True)}</{tag}>")
        else:
            out.append(f"<p>{html.escape(shown(block.text, 4 * MAX_VALUE), quote=True)}</p>")
    out.append("</div>")
    return "\n".join(out) + "\n"


def _message(
    blocks: Sequence[Block],
    *,
    key: str,
    subject: str,
    language: str,
    data: dict[str, Any],
    link: str,
) -> AlertMessage:
    text = _render_text(blocks)
    return AlertMessage(
        key=key,
        subject=one_line(subject),
        text=text,
        html=_render_html(blocks, language),
        markdown=_render_markdown(blocks),
        data={**data, "link": link, "text": text},
        language=language,
        link=link,
    )


# -- events ------------------------------------------------------------------------------------


def _texts(language: str) -> Texts:
    """The alert texts of ``language`` (ValueError if the catalogue lacks it)."""
    return Texts(SECTION, check_language(language))


def _kind_label(kind: str, t: Texts) -> str:
    """An event kind as a heading word: the shared word, capitalised ("Listed")."""
    word = t.word("event", kind)
    return word[:1].upper() + word[1:] if word else kind


def _baseline_suffix(t: Texts) -> str:
    return t["baseline_suffix"].format(baseline=t.field("baseline"))


def _entity_name(ctx: EventContext) -> str:
    return ctx.event.get("entity_name") or ctx.record.get("entity_name") or "?"


def _kind(ctx: EventContext) -> str:
    return str(ctx.event.get("event") or "?")


def _list_id(ctx: EventContext) -> str:
    return str(ctx.event.get("list") or ctx.record.get("list") or "?")


def _list_label(ctx: EventContext, language: str) -> str:
    """The list's name in the reader's language (its id only when the registry lost it)."""
    name = ctx.list_name_zh if language == "zh" else (ctx.list_name_en or ctx.list_name_zh)
    return name or _list_id(ctx)


def _source_label(ctx: EventContext, language: str) -> str:
    source = str(ctx.event.get("source") or ctx.record.get("source") or "?")
    zh, en = ctx.source_name_zh, ctx.source_name_en
    return (zh if language == "zh" else (en or zh)) or source


def _evidence(ctx: EventContext) -> dict[str, Any]:
    """The context's evidence, completed from the event's own evidence object where empty."""
    own = ctx.event.get("evidence") or {}
    ev = asdict(ctx.evidence)
    for name in ("source_url", "raw_sha256"):
        if not ev[name] and isinstance(own, Mapping):
            ev[name] = own.get(name)
    ev["run_id"] = ev["run_id"] or ctx.event.get("run_id")
    return ev


def _match_text(match: Match, t: Texts) -> str:
    """Why the subscription matched; a whole list is named above, so not repeated here."""
    criterion = t.group("criterion").get(match.criterion, match.criterion)
    if match.criterion == "list":
        return criterion
    text = f"{criterion}: {match.value}"
    if match.score is not None:
        text += f" ({t['score']} {match.score:g})"
    return text


# Record fields an alert shows under the entity, in this order, when they have a value.
_RECORD_FIELDS = ("reason", "measure", "fine_yuan", "confiscated_yuan", "authority")
_DATE_FIELDS = ("decided_on", "valid_until")


def _event_fields(item: MatchedEvent, t: Texts, language: str, base: str, tz: str) -> list[Block]:
    """The body of one event: who, which list, what changed, why it matched, where to look
    in the web app, evidence."""
    ctx, event, record = item.context, item.context.event, item.context.record
    kind = _kind(ctx)
    who = [Field(t["entity"], _entity_name(ctx))]
    if record.get("uscc"):
        who.append(Field(t["uscc"], record["uscc"], code=True))
    elif record.get("uscc_raw"):
        who.append(Field(t["uscc_raw_invalid"], record["uscc_raw"], code=True))
    if record.get("id_number_masked"):
        who.append(Field(t.field("id_number_masked"), record["id_number_masked"], code=True))
    who.append(Field(t["list"], _list_label(ctx, language)))
    who.append(Field(t["source"], _source_label(ctx, language)))
    for name in ("case_number", "title"):
        value = event.get(name) or record.get(name)
        if value:
            who.append(Field(t[name], value_text(name, value, t, tz)))
    for name in (*_RECORD_FIELDS, *_DATE_FIELDS):
        if record.get(name) not in (None, ""):
            who.append(Field(label(name, t), value_text(name, record[name], t, tz)))
    if kind == "delisted":
        who.append(Field(t.field("cause"), cause_text(event.get("cause"), t)))
    who.append(Field(t["match"], _match_text(item.match, t)))
    who.append(Field(t["at"], local_time(event.get("at"), t, tz) or t["unknown"]))
    blocks = [Block(fields=tuple(who))]
    if event.get("baseline"):
        blocks.append(Block(text=t["baseline_note"]))
    changes = event.get("changes")
    if kind == "modified" and isinstance(changes, Mapping) and changes:
        rows = []
        for name, pair in changes.items():
            old, new = pair if isinstance(pair, list | tuple) and len(pair) == 2 else (None, pair)
            before, after = value_text(name, old, t, tz), value_text(name, new, t, tz)
            rows.append(Field(label(str(name), t), f"{before} → {after}"))
        blocks.append(Block(level=3, text=t["changes"]))
        blocks.append(Block(fields=tuple(rows)))
    blocks.append(
        Block(
            fields=(
                Field(t["human_view_entity"], event_link(base, event), link=True),
                Field(t["human_view_list"], list_link(base, _list_id(ctx)), link=True),
            )
        )
    )
    ev = _evidence(ctx)
    blocks.append(Block(level=3, text=t["evidence"]))
    blocks.append(
        Block(
            fields=(
                Field(t["source_url"], ev["source_url"] or t["unknown"], link=True),
                Field(t.field("raw_sha256"), ev["raw_sha256"] or t["unknown"], code=True),
                Field(t.field("run_id"), str(ev["run_id"] or t["unknown"]), code=True),
                Field(t["run_health"], health_text(ev["run_health"], t)),
                Field(t["fetched_at"], local_time(ev["fetched_at"], t, tz) or t["unknown"]),
                Field(t["event_id"], str(event.get("event_id") or t["unknown"]), code=True),
            )
        )
    )
    return blocks


def _headline(item: MatchedEvent, t: Texts) -> str:
    kind = _kind(item.context)
    label = _kind_label(kind, t)
    if item.context.event.get("baseline"):
        label += _baseline_suffix(t)
    return str(t["headline"].format(kind=label, name=_entity_name(item.context)))


def _footer(t: Texts, subscription_id: str | None, key: str) -> Block:
    fields = [Field(t["key"], key, code=True)]
    if subscription_id is not None:
        fields.insert(0, Field(t["subscription"], subscription_id))
    return Block(fields=tuple(fields))


def _event_data(items: Sequence[MatchedEvent]) -> dict[str, Any]:
    return {
        "events": [jsonable(i.context.event) for i in items],
        "records": [jsonable(i.context.record) for i in items],
    }


def event_message(
    item: MatchedEvent,
    *,
    subscription_id: str,
    language: str,
    key: str,
    base_url: str = DEFAULT_BASE_URL,
    timezone: str = TIMEZONE_NAME,
) -> AlertMessage:
    """One event for one subscription: the alert of an ``immediate`` subscription. Links
    point into the web app at ``base_url``; times are told in ``timezone``."""
    t = _texts(language)
    ctx = item.context
    kind = _kind(ctx)
    verb = t.group("subject_kind").get(kind, kind)
    if ctx.event.get("baseline"):
        verb += _baseline_suffix(t)
    name = one_line(_entity_name(ctx), MAX_SUBJECT_NAME)
    subject = f"[creditwatch] {verb} {one_line(_list_label(ctx, language), 80)}: {name}"
    blocks = [
        Block(level=1, text=_headline(item, t)),
        *_event_fields(item, t, language, base_url, timezone),
    ]
    blocks.append(_footer(t, subscription_id, key))
    data = {
        "kind": "event",
        "subscription": subscription_id,
        "key": key,
        "language": language,
        "subject": one_line(subject),
        "at": _iso(ctx.event.get("at")),
        **_event_data([item]),
        "evidence": jsonable(_evidence(ctx)),
        "match": jsonable(asdict(item.match)),
    }
    link = event_link(base_url, ctx.event)
    return _message(blocks, key=key, subject=subject, language=language, data=data, link=link)


def _counts_text(counts: Counter[str], t: Texts) -> str:
    if not counts:
        return str(t["no_events"])
    order = [k for k in EVENT_KINDS if counts[k]] + sorted(
        k for k in counts if k not in EVENT_KINDS
    )
    parts = [t["count"].format(kind=(t.word("event", k) or k).lower(), n=counts[k]) for k in order]
    return " · ".join(parts) + f" ({t['total'].format(n=sum(counts.values()))})"


def _digest_link(items: Sequence[MatchedEvent], base: str) -> str:
    """One entity's page, else one list's, else the start page: the narrowest that shows all."""
    entities = {str(i.context.event.get("entity_id") or "") for i in items}
    if len(entities) == 1 and "" not in entities:
        return event_link(base, items[0].context.event)
    lists = {_list_id(i.context) for i in items}
    if len(lists) == 1:
        return list_link(base, lists.pop())
    return f"{base}/"


def digest_message(
    items: Sequence[MatchedEvent],
    *,
    subscription_id: str,
    language: str,
    key: str,
    window: tuple[datetime, datetime],
    base_url: str = DEFAULT_BASE_URL,
    timezone: str = TIMEZONE_NAME,
) -> AlertMessage:
    """Every event of a window in one message, grouped by list, counted per kind."""
    t = _texts(language)
    counts = Counter(_kind(i.context) for i in items)
    subject = (
        f"[creditwatch] {t['digest']} {one_line(subscription_id, 40)}: {_counts_text(counts, t)}"
    )
    span = f"{local_time(window[0], t, timezone)} – {local_time(window[1], t, timezone)}"
    blocks = [
        Block(level=1, text=f"creditwatch {t['digest']}: {_counts_text(counts, t)}"),
        Block(fields=(Field(t["window"], span),)),
    ]
    groups: dict[str, list[MatchedEvent]] = {}
    for item in items:
        groups.setdefault(_list_id(item.context), []).append(item)
    for list_id in sorted(groups):
        group = groups[list_id]
        label = _list_label(group[0].context, language)
        group_counts = Counter(_kind(i.context) for i in group)
        blocks.append(Block(level=2, text=f"{label}: {_counts_text(group_counts, t)}"))
        for item in group:
            blocks.append(Block(level=3, text=_headline(item, t)))
            blocks.extend(
                b for b in _event_fields(item, t, language, base_url, timezone) if not b.level
            )
    blocks.append(_footer(t, subscription_id, key))
    data = {
        "kind": "digest",
        "subscription": subscription_id,
        "key": key,
        "language": language,
        "subject": one_line(subject),
        "at": window[1].isoformat(),
        "window": [window[0].isoformat(), window[1].isoformat()],
        "counts": dict(sorted(counts.items())),
        **_event_data(items),
        "evidence": [jsonable(_evidence(i.context)) for i in items],
        "match": [jsonable(asdict(i.match)) for i in items],
        "links": [event_link(base_url, i.context.event) for i in items],
    }
    link = _digest_link(items, base_url)
    return _message(blocks, key=key, subject=subject, language=language, data=data, link=link)


# -- health ------------------------------------------------------------------------------------

_RUN_ORDER = ("run_id", "state", "started_at", "ended_at", "error")
_FINDING_ORDER = ("list", "url", "detail", "held", "active")


def _run_fields(run: Mapping[str, Any], t: Texts, tz: str) -> tuple[Field, ...]:
    """A run's own fields, labelled in words; its findings are shown apart."""
    keys = [k for k in _RUN_ORDER if k in run] + [
        k for k in run if k not in _RUN_ORDER and k != "findings"
    ]
    labels = t.group("human_run")
    out = []
    for k in keys:
        value = run[k]
        if k == "state" and isinstance(value, str):
            text = health_text(value, t)
        else:
            text = value_text(k, value, t, tz)
        out.append(Field(labels.get(k, k), text, code=k == "run_id"))
    return tuple(out)


def _finding_fields(
    finding: Mapping[str, Any], t: Texts, list_names: Mapping[str, str]
) -> tuple[Field, ...]:
    labels = t.group("human_finding")
    out = []
    for k in _FINDING_ORDER:
        value = finding.get(k)
        if value in (None, ""):
            continue
        if k == "list":
            out.append(Field(labels[k], list_names.get(str(value)) or str(value)))
        else:
            out.append(Field(labels[k], value_text(k, value, t), link=k == "url"))
    return tuple(out)


def _latest(runs: Iterable[Mapping[str, Any]]) -> str | None:
    times = [_iso(r.get(k)) for r in runs for k in ("ended_at", "started_at") if r.get(k)]
    return max((x for x in times if x), default=None)


def _health_link(source: str, runs: Sequence[Mapping[str, Any]], base: str) -> str:
    """The page of the first list a finding names, else the source's part of the start page."""
    for run in runs:
        for finding in run.get("findings") or ():
            if isinstance(finding, Mapping) and isinstance(finding.get("list"), str):
                return list_link(base, finding["list"])
    return source_link(base, source)


def health_message(
    *,
    source: str,
    problem: str,
    detail: str,
    runs: Sequence[dict[str, Any]],
    language: str,
    key: str,
    base_url: str = DEFAULT_BASE_URL,
    timezone: str = TIMEZONE_NAME,
    source_name: str = "",
    list_names: Mapping[str, str] | None = None,
) -> AlertMessage:
    """A source's health went wrong (failing, aborted ...): for maintainers, with its runs,
    what each found and the page to look at. ``source_name`` and ``list_names`` (id → name)
    are the registry's names in ``language``."""
    t = _texts(language)
    names = list_names or {}
    what = t.group("problem").get(problem) or problem
    called = source_name or source
    subject = f"[creditwatch] {t['health_subject']}: {one_line(called, 60)}: {one_line(what, 80)}"
    link = _health_link(source, runs, base_url)
    blocks = [
        Block(level=1, text=f"{t['health_subject']}: {called}: {what}"),
        Block(
            fields=(
                Field(t["source"], f"{source_name} ({source})" if source_name else source),
                Field(t["detail"], detail or t["none"]),
                Field(t["human_view"], link, link=True),
            )
        ),
    ]
    hint = t.group("problem_hint").get(problem)
    if hint:
        run_ids = sorted({str(r["run_id"]) for r in runs if r.get("run_id")}) or ["RUN"]
        blocks.append(
            Block(
                text=hint.format(
                    release=" / ".join(f"creditwatch pending release --run {r}" for r in run_ids),
                    discard=" / ".join(f"creditwatch pending discard --run {r}" for r in run_ids),
                )
            )
        )
    if runs:
        blocks.append(Block(level=2, text=t["runs"]))
        for run in runs:
            blocks.append(Block(fields=_run_fields(run, t, timezone)))
            findings = [f for f in run.get("findings") or () if isinstance(f, Mapping)]
            if "findings" in run:
                blocks.append(Block(level=3, text=t["human_findings"]))
                if not findings:
                    blocks.append(Block(text=t["human_no_findings"]))
            for finding in findings:
                blocks.append(Block(fields=_finding_fields(finding, t, names)))
    blocks.append(_footer(t, None, key))
    data = {
        "kind": "health",
        "subscription": None,
        "key": key,
        "language": language,
        "subject": one_line(subject),
        "at": _latest(runs),
        "source": source,
        "problem": problem,
        "detail": detail,
        "runs": [jsonable(r) for r in runs],
    }
    return _message(blocks, key=key, subject=subject, language=language, data=data, link=link)


# -- a fixed, invented event for `creditwatch alerts test CHANNEL` ---------------------------------

SAMPLE_RECORD: dict[str, Any] = {
    "source": "xmtravel",
    "list": "xmtravel.warning",
    "list_kind": "warning",
    "record_key": "厦文旅罚(2099)1号",
    "entity_id": "uscc-91350200MA31K8W2P4",
    "entity_name": "厦门某某旅行社有限公司",
    "uscc": "91350200MA31K8W2P4",
    "case_number": "厦文旅罚〔2099〕1号",
    "reason": "未与旅游者签订旅游合同（测试数据，虚构）",
    "measure": "警告，罚款人民币贰万元",
    "fine_yuan": 20000,
    "authority": "厦门市文化和旅游局",
    "decided_on": "2099-01-01",
}


def sample_message(language: str, *, base_url: str = DEFAULT_BASE_URL) -> AlertMessage:
    """A fixed invented ``listed`` event, so a channel can be tried without real data.

    Its key is fixed (``sample-<language>``): receivers that deduplicate by key apply it
    once; a caller that wants each test to arrive should give the copy a fresh key.
    """
    t = _texts(language)
    event = {
        "event_id": "sample",
        "event": "listed",
        "source": "xmtravel",
        "list": "xmtravel.warning",
        "record_key": SAMPLE_RECORD["record_key"],
        "entity_id": SAMPLE_RECORD["entity_id"],
        "entity_name": SAMPLE_RECORD["entity_name"],
        "case_number": SAMPLE_RECORD["case_number"],
        "title": None,
        "cause": None,
        "changes": None,
        "baseline": False,
        "run_id": "xmtravel:0",
        "at": "2099-01-02T02:00:00+00:00",
        "evidence": {"source_url": "https://example.org/creditwatch/sample", "raw_sha256": None},
    }
    ctx = EventContext(
        event=event,
        record=dict(SAMPLE_RECORD),
        evidence=Evidence(
            source_url="https://example.org/creditwatch/sample",
            raw_sha256="0" * 64,
            run_id="xmtravel:0",
            run_health="healthy",
            fetched_at="2099-01-02T02:00:00+00:00",
        ),
        list_name_zh="信用公示（警示信息）",
        list_name_en="Warnings (administrative penalties)",
        source_name_zh="厦门市旅游行业信用信息平台",
        source_name_en="Xiamen Tourism Credit Information Platform",
    )
    item = MatchedEvent(context=ctx, match=Match("list", "xmtravel.warning"))
    message = event_message(
        item,
        subscription_id="sample",
        language=language,
        key=f"sample-{language}",
        base_url=base_url,
    )
    note = t["sample_note"]
    return AlertMessage(
        key=message.key,
        subject=f"{message.subject} [test]",
        text=f"{note}\n\n{message.text}",
        html=f"<p><strong>{html.escape(note)}</strong></p>\n{message.html}",
        markdown=f"**{md_escape(note)}**\n\n{message.markdown}",
        data={**message.data, "kind": "sample", "subject": f"{message.subject} [test]"},
        language=language,
        link=message.link,
    )


__all__: list[str] = [
    "LANGUAGES",
    "digest_message",
    "event_message",
    "health_message",
    "jsonable",
    "md_escape",
    "one_line",
    "sample_message",
    "shown",
    "web_url",
]
