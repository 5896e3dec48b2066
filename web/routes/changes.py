"""Changes across every list: the ``/changes`` page, ``/api/events`` and ``/changes.atom``.

The three answer the same filters (source, list, event kind, delisting cause, Beijing dates,
baseline) over the event log, newest first. Filter values must be known ones: a typo in a
link answers 422, not an empty page that reads as "nothing happened". Baseline listings (a
list's first run) are hidden unless asked for, as ``creditwatch changes`` hides them: they
say what was already there, not what changed. A redacting server redacts each event with its
entity's records, as the entity page does, and links persons by their pseudonym.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from core.clock import SHANGHAI
from core.redact import PERSON, redact_entity
from core.registry import ListDef, SourceDef
from core.schema import EVENT_KINDS
from storage.changes import DELISTING_CAUSES, EventFilter, event_page, records_of_entities
from web.i18n import Translator
from web.site import (
    MAX_PER_PAGE,
    PER_PAGE,
    Site,
    SiteDep,
    cell,
    http_url,
    language,
    parse_date,
    public_base,
    registry,
    visible,
)

router = APIRouter()

FEED_MAX_ENTRIES = 200
# Far enough for any history; bounded so that page × per_page stays a valid SQL offset.
MAX_PAGE = 100_000
ATOM_NS = "http://www.w3.org/2005/Atom"
ATOM_TYPE = "application/atom+xml; charset=utf-8"
# What XML 1.0 cannot hold (C0 controls but tab and newlines, surrogates, U+FFFE/F), and the
# C1 controls a reader would show as boxes or act on: stripped from every text of the feed.
XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
TRUE = ("1", "true", "on", "yes")
FALSE = ("", "0", "false", "off", "no")


class EventFilters(BaseModel):
    """The filters as understood; ``from`` and ``to`` are Asia/Shanghai dates, inclusive."""

    model_config = ConfigDict(populate_by_name=True)

    source: str | None = None
    list: str | None = None
    event: str | None = None
    cause: str | None = None
    since: date | None = Field(None, alias="from")
    until: date | None = Field(None, alias="to")
    baseline: bool = Field(False, description="whether baseline listings are included")


class EventsPage(BaseModel):
    filters: EventFilters
    total: int = Field(description="events matching, on every page")
    page: int
    per_page: int
    pages: int
    baseline_hidden: int = Field(
        description="baseline listings left out that baseline=1 would add (0 when included)"
    )
    redacted: bool
    events: list[dict[str, Any]] = Field(description="events in the shape of SCHEMA.md")


# -- filters ------------------------------------------------------------------------------------


def known(value: str | None, choices: tuple[str, ...] | list[str], name: str) -> str | None:
    """An optional filter value (empty is none, as GET forms send it); unknown ones are 422."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    if value not in choices:
        raise HTTPException(422, f"{name} must be one of {', '.join(choices)} (got {value!r})")
    return value


def truth(value: str | None, name: str) -> bool:
    if value is None or value.strip().lower() in FALSE:
        return False
    if value.strip().lower() in TRUE:
        return True
    raise HTTPException(422, f"{name} is 1 or 0 (got {value!r})")


def all_lists(sources: dict[str, SourceDef]) -> dict[str, ListDef]:
    return {lst.id: lst for src in sources.values() for lst in src.lists}


def event_filters(
    source: str | None = Query(None, description="a source id, e.g. xmtravel"),
    list_id: str | None = Query(
        None, alias="list", description="a full list id, e.g. xmtravel.warning"
    ),
    event: str | None = Query(None, description=f"one of {', '.join(EVENT_KINDS)}"),
    cause: str | None = Query(None, description=f"one of {', '.join(DELISTING_CAUSES)}"),
    since: str | None = Query(None, alias="from", description="on or after, YYYY-MM-DD (Beijing)"),
    until: str | None = Query(None, alias="to", description="on or before, YYYY-MM-DD (Beijing)"),
    baseline: str | None = Query(None, description="1: include baseline listings"),
) -> EventFilters:
    """The filters the three routes share (a FastAPI dependency): each value checked."""
    sources = registry()
    filters = EventFilters(
        source=known(source, sorted(sources), "source"),
        list=known(list_id, sorted(all_lists(sources)), "list"),
        event=known(event, EVENT_KINDS, "event"),
        cause=known(cause, DELISTING_CAUSES, "cause"),
        since=parse_date(since, "from"),
        until=parse_date(until, "to"),
        baseline=truth(baseline, "baseline"),
    )
    if filters.since and filters.until and filters.since > filters.until:
        raise HTTPException(422, f"from ({filters.since}) is after to ({filters.until})")
    return filters


Filters = Annotated[EventFilters, Depends(event_filters)]


def storage_filter(filters: EventFilters) -> EventFilter:
    return EventFilter(
        source=filters.source,
        list_id=filters.list,
        event=filters.event,
        cause=filters.cause,
        since=filters.since,
        until=filters.until,
        baseline=filters.baseline,
    )


def filter_params(filters: EventFilters) -> dict[str, str]:
    """The filters as query parameters, the ones set only: for links to the same changes."""
    params = {
        "source": filters.source,
        "list": filters.list,
        "event": filters.event,
        "cause": filters.cause,
        "from": filters.since.isoformat() if filters.since else None,
        "to": filters.until.isoformat() if filters.until else None,
        "baseline": "1" if filters.baseline else None,
    }
    return {key: value for key, value in params.items() if value}


# -- the events ---------------------------------------------------------------------------------


def shown(conn: Connection, events: list[dict[str, Any]], redact: bool) -> list[dict[str, Any]]:
    """The events as this server shows them: redacted with their entity's records when it
    redacts (an event whose entity has no record left is taken for a person's: the safe
    reading), else as stored."""
    if not redact:
        return events
    records = records_of_entities(conn, (e["entity_id"] for e in events))
    out = []
    for event in events:
        own = records.get(event["entity_id"]) or [
            {"entity_type": PERSON, "entity_name": event.get("entity_name")}
        ]
        _, [redacted] = redact_entity(own, [event])
        out.append(redacted)
    return out


def changes(site: Site, filters: EventFilters, page: int, per_page: int) -> EventsPage:
    with site.engine.connect() as conn:
        found = event_page(
            conn, storage_filter(filters), offset=(page - 1) * per_page, limit=per_page
        )
        events = shown(conn, found.events, site.redact)
    return EventsPage(
        filters=filters,
        total=found.total,
        page=page,
        per_page=per_page,
        pages=max(1, math.ceil(found.total / per_page)),
        baseline_hidden=found.baseline_hidden,
        redacted=site.redact,
        events=events,
    )


def entity_path(entity_id: str) -> str:
    return f"/entities/{quote(entity_id, safe=':')}"


# -- routes -------------------------------------------------------------------------------------


@router.get("/changes", response_class=HTMLResponse, include_in_schema=False)
def changes_page(
    request: Request,
    site: SiteDep,
    filters: Filters,
    page: int = Query(1, ge=1, le=MAX_PAGE),
) -> HTMLResponse:
    sources = registry()
    answer = changes(site, filters, page, PER_PAGE)
    params = filter_params(filters)
    query = f"?{urlencode(params)}" if params else ""
    return site.render(
        request,
        "changes.html",
        answer=answer,
        sources=sources,
        lists=all_lists(sources),
        event_kinds=EVENT_KINDS,
        causes=DELISTING_CAUSES,
        form={
            "source": filters.source or "",
            "list": filters.list or "",
            "event": filters.event or "",
            "cause": filters.cause or "",
            "from": filters.since.isoformat() if filters.since else "",
            "to": filters.until.isoformat() if filters.until else "",
        },
        feed_url=f"/changes.atom?{urlencode({**params, 'lang': language(request)})}",
        json_url=f"/api/events{query}",
        entity_path=entity_path,
    )


@router.get(
    "/api/events",
    tags=["api"],
    summary="Change events on every list, newest first: filtered and paged",
    response_model=EventsPage,
)
def api_events(
    site: SiteDep,
    filters: Filters,
    page: int = Query(1, ge=1, le=MAX_PAGE),
    per_page: int = Query(PER_PAGE, ge=1, le=MAX_PER_PAGE),
) -> EventsPage:
    return changes(site, filters, page, per_page)


@router.get(
    "/changes.atom",
    tags=["files"],
    summary="The same changes as an Atom feed (newest 200), titles in the reader's language",
    response_class=Response,
    responses={200: {"content": {"application/atom+xml": {}}}},
)
def changes_feed(request: Request, site: SiteDep, filters: Filters) -> Response:
    sources = registry()
    answer = changes(site, filters, 1, FEED_MAX_ENTRIES)
    lang = language(request)
    document = atom_feed(
        answer,
        t=Translator(lang),
        lists=all_lists(sources),
        base=public_base(request),
        params={**filter_params(filters), "lang": lang},
    )
    return Response(document, media_type=ATOM_TYPE)


# -- the feed -----------------------------------------------------------------------------------


def xml_text(value: Any) -> str:
    """Text the feed can hold and a reader cannot be fooled by: no control characters, bidi
    controls written as their code (as on the pages)."""
    return visible(XML_UNSAFE.sub("", str(value)))


def _sub(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(
        parent, f"{{{ATOM_NS}}}{name}", {k: xml_text(v) for k, v in attrs.items()}
    )
    if text is not None:
        element.text = xml_text(text)
    return element


def atom_time(value: str | datetime) -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def beijing(value: str | datetime) -> str:
    """An instant as Beijing time with its offset, as feed readers show text as it is."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M +08:00")


def summary(event: dict[str, Any], t: Translator) -> str:
    """What the entry says beyond its title: the case, the cause or the changes, when."""
    lines = []
    if event.get("case_number") or event.get("title"):
        lines.append(f"{t.field('case_number')}: {event.get('case_number') or event.get('title')}")
    if event.get("cause"):
        lines.append(f"{t('cause')}: {t.value('cause', event['cause'])}")
    for name, pair in (event.get("changes") or {}).items():
        old, new = [*pair, None, None][:2] if isinstance(pair, list) else (None, pair)
        lines.append(f"{t.field(name)}: {cell(old)} → {cell(new)}")
    if event.get("baseline"):
        lines.append(t("baseline"))
    lines.append(f"{t.field('at')}: {beijing(event['at'])}")
    return "\n".join(lines)


def atom_feed(
    answer: EventsPage,
    *,
    t: Translator,
    lists: dict[str, ListDef],
    base: str,
    params: dict[str, str],
) -> bytes:
    """The events as an Atom 1.0 document: one entry per event, its id the event's stable
    id, its link the entity's page (absolute, under ``base``)."""
    query = f"?{urlencode(params)}" if params else ""
    filters = {k: v for k, v in params.items() if k != "lang"}
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _sub(
        feed,
        "id",
        f"urn:creditwatch:changes{'?' + urlencode(sorted(filters.items())) if filters else ''}",
    )
    _sub(feed, "title", t("changes_feed_title"))
    newest = answer.events[0]["at"] if answer.events else datetime.now(UTC)
    _sub(feed, "updated", atom_time(newest))
    _sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/changes.atom{query}")
    _sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/changes{query}")
    _sub(_sub(feed, "author"), "name", "creditwatch")
    _sub(feed, "generator", "creditwatch")
    for event in answer.events:
        entry = _sub(feed, "entry")
        _sub(entry, "id", f"urn:creditwatch:event:{quote(str(event['event_id']), safe='')}")
        lst = lists.get(event["list"])
        title = t(
            "changes_feed_entry",
            kind=t.value("event", event["event"]),
            name=event.get("entity_name") or event["entity_id"],
            list=t.name(lst) if lst else event["list"],
        )
        _sub(entry, "title", title)
        _sub(entry, "updated", atom_time(event["at"]))
        _sub(
            entry,
            "link",
            rel="alternate",
            type="text/html",
            href=base + entity_path(event["entity_id"]),
        )
        evidence = event.get("evidence") or {}
        portal = http_url(evidence.get("source_url")) if isinstance(evidence, dict) else None
        if portal:
            _sub(entry, "link", rel="related", href=portal)
        _sub(entry, "category", term=event["event"], label=t.value("event", event["event"]))
        _sub(entry, "summary", summary(event, t), type="text")
    ET.indent(feed)
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True) + b"\n"
