"""Charts: a list's size and changes per run, an entity's timeline, as SVG images.

The pages embed them with ``<img>`` and, for readers without images, the same numbers as a
table (``_list_charts.html``, ``_entity_timeline.html``, fed by ``web.chartviews``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from storage.history import (
    MAX_RUNS,
    entity_timeline,
    instant,
)
from web.charts import MAX_ROWS, ListLabels, TimelineLabels, list_chart, timeline_chart
from web.chartviews import PAGE_RUNS, points_of
from web.i18n import Translator
from web.models import EntityAnswer
from web.routes.entities import entity
from web.site import SiteDep, find_list, language, registry

# An image: nothing to run, fetch or style from outside; never framed.
SVG_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
SVG_TYPE = "image/svg+xml"


def list_names(t: Translator) -> dict[str, str]:
    return {lst.id: t.name(lst) for src in registry().values() for lst in src.lists}


def newest_known(answer: EntityAnswer) -> datetime:
    """The newest time the entity's data holds: the right edge of its timeline (the chart
    draws what was seen, not the wall clock)."""
    moments = [instant(r.get("last_seen")) for r in answer.records]
    moments += [instant(e.get("at")) for e in answer.events]
    return max((m for m in moments if m is not None), default=datetime.now(UTC))


router = APIRouter()


def svg(body: str) -> Response:
    return Response(body, media_type=SVG_TYPE, headers={"Content-Security-Policy": SVG_CSP})


@router.get("/charts/lists/{list_id}.svg", include_in_schema=False, name="charts_list")
def list_svg(
    request: Request,
    site: SiteDep,
    list_id: str,
    runs: int = Query(PAGE_RUNS, ge=1, le=MAX_RUNS),
) -> Response:
    """A list's size and its listings and delistings, per run (the newest ``runs``)."""
    src, lst = find_list(list_id)
    t = Translator(language(request))
    labels = ListLabels(
        title=f"{t.name(lst)} · {t('charts_list_title')}",
        size=t("charts_size"),
        added=t("charts_added"),
        removed=t("charts_removed"),
        unhealthy=t("charts_unhealthy"),
        empty=t("charts_no_runs"),
    )
    return svg(list_chart(points_of(site, src, lst, runs), labels))


@router.get("/charts/entities/{entity_id}.svg", include_in_schema=False, name="charts_entity")
def entity_svg(request: Request, site: SiteDep, entity_id: str) -> Response:
    """An entity's entries over time; resolved and redacted as its page is."""
    answer = entity(site, entity_id)
    t = Translator(language(request))
    rows = entity_timeline(answer.records, answer.events)
    labels = TimelineLabels(
        title=t("charts_timeline_title"),
        listed=t("charts_on_list"),
        delisted=t.value("event", "delisted"),
        relisted=t.value("event", "relisted"),
        modified=t.value("event", "modified"),
        more=t("charts_more", n=max(0, len(rows) - MAX_ROWS)),
        empty=t("charts_timeline_empty"),
    )
    return svg(timeline_chart(rows, list_names(t), newest_known(answer), labels))
