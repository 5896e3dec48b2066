"""An entity across sources: its entries in every list and its events, as a page and JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse

from core.redact import PERSON, redact_entity
from storage.browse import entity_for_pseudonym, entity_records, is_person
from storage.entities import listing_summary, of_entity_id
from web.chartviews import entity_view
from web.models import EntityAnswer
from web.site import Site, SiteDep, registry

router = APIRouter()


def entity(site: Site, entity_id: str) -> EntityAnswer:
    with site.engine.connect() as conn:
        real = entity_id
        if site.redact and entity_id.startswith("redacted:"):
            real = entity_for_pseudonym(conn, entity_id) or ""
        own = entity_records(conn, real) if real else []
        if not own or (site.redact and is_person(own) and real == entity_id):
            # A person's entity answers only at its pseudonym while redacting.
            raise HTTPException(404, "no such entity")
        # The same organisation in every source: same USCC, else name + jurisdiction.
        found = of_entity_id(conn, real)
        records = [r for e in found for r in e.records]
        events = sorted(
            (ev for e in found for ev in e.events), key=lambda ev: (ev["at"], ev["event_id"])
        )
    person = is_person(records)
    # The entity is named by the entry asked for: its newest record.
    newest = max(
        (i for i, r in enumerate(records) if r["entity_id"] == real),
        key=lambda i: (records[i].get("last_seen") or "", records[i].get("list") or ""),
    )
    if site.redact:  # a company's too: its legal representatives are persons
        records, events = redact_entity(records, events)
    latest = records[newest]
    by_entry: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for ev in events:
        by_entry.setdefault((ev.get("list"), ev.get("record_key")), []).append(ev)
    listings = [
        listing_summary(r, by_entry.get((r.get("list"), r.get("record_key")), [])) for r in records
    ]
    return EntityAnswer(
        entity_id=latest["entity_id"],
        entity_name=latest.get("entity_name"),
        entity_type=PERSON if person else latest.get("entity_type"),
        redacted=site.redact,
        records=records,
        events=events,
        listings=listings,
    )


@router.get("/entities/{entity_id}", response_class=HTMLResponse, include_in_schema=False)
def entity_page(request: Request, site: SiteDep, entity_id: str) -> HTMLResponse:
    answer = entity(site, entity_id)
    lists = {lst.id: lst for src in registry().values() for lst in src.lists}
    timeline = entity_view(request, answer)
    return site.render(request, "entity.html", answer=answer, lists=lists, timeline=timeline)


@router.get(
    "/api/entities/{entity_id}",
    tags=["api"],
    summary="An entity's entries in every list and its events over time",
    response_model=EntityAnswer,
)
def api_entity(site: SiteDep, entity_id: str) -> EntityAnswer:
    return entity(site, entity_id)
