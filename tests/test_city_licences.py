"""The city licence lists (双公示 行政许可) of the ``json_api`` family: 信用上海 and 信用深圳.

信用上海 serves penalties and licences from one endpoint, told apart by ``type=oc|ox``, and
which value is which is not known (portals.md §4.1): the shipped sources read penalties from
``ox`` and licences from ``oc``. The rows themselves say what they are (a licence is dated by
``billDate``, a penalty by ``punishedAt``), and each source's ``key_fields`` demand its own
date key, so were the meaning swapped, the run is ``layout_drift``: nothing is stored as a
licence that is a penalty, and nothing is delisted. The same holds for 信用深圳's two
endpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from sqlalchemy import select

from core.registry import get_source
from fixtures.json_api_model import Decision, JsonPortal, day_interactions
from fixtures.portal_model import dump_yaml
from fixtures.shanghai_doublepublic import build as shanghai_penalties
from fixtures.shanghai_license import build as shanghai_licences
from fixtures.shenzhen_license import build as shenzhen_licences
from fixtures.shenzhen_punish import build as shenzhen_penalties
from pipeline.run import CrawlSpec, crawl
from storage.engine import get_engine
from storage.models import Record
from tests.helpers import events, list_health, run_row

# city → (licence model, penalty model)
CITIES: dict[str, tuple[ModuleType, ModuleType]] = {
    "shanghai": (shanghai_licences, shanghai_penalties),
    "shenzhen": (shenzhen_licences, shenzhen_penalties),
}


def answered_with(asked: JsonPortal, shown: JsonPortal) -> JsonPortal:
    """``asked``'s endpoint answering with rows shaped as ``shown`` publishes them: the
    portal's ``type`` meaning swapped (信用上海), or one endpoint serving the other's list."""
    return dataclasses.replace(asked, keys=shown.keys, row_extra=shown.row_extra)


def replay(tmp_path: Path, url: str, portal: JsonPortal, rows: Sequence[Decision], day: int) -> str:
    source = portal.source
    cassette = tmp_path / f"{source}-{day}.yaml"
    interactions = day_interactions(portal, rows, day)
    cassette.write_text(dump_yaml({"interactions": interactions, "version": 1}), "utf-8")
    return crawl(
        CrawlSpec(source=source, mode="replay", cassette=cassette, delist_after=1), url=url
    )


def stored(url: str, source: str) -> dict[str, tuple[str, int]]:
    """Every stored entry of the source: case number → (status, absent runs)."""
    table = Record.__table__
    query = select(table.c.data, table.c.status, table.c.absent_runs).where(
        table.c.source == source
    )
    with get_engine(url).connect() as conn:
        rows = conn.execute(query).all()
    return {row.data["case_number"]: (row.status, row.absent_runs) for row in rows}


def lacking(health: Any) -> str:
    """What the list's ``layout_drift`` fetch findings say its rows lack (the spider's
    ``key_fields`` check: "a row lacks K, … (its keys: …)")."""
    details = [
        f.get("detail") or ""
        for f in health.findings
        if f.get("check") == "fetch" and f.get("outcome") == "layout_drift"
    ]
    return " | ".join(d.split("(its keys")[0] for d in details if "a row lacks" in d)


def date_key(model: ModuleType) -> str:
    """The JSON key dating a row of the model's list (``billDate``, ``punishedAt``, …)."""
    return str(model.PORTAL.keys["decided_on"])


@pytest.mark.replay
@pytest.mark.parametrize("city", sorted(CITIES))
def test_penalty_rows_where_licences_are_expected_are_layout_drift_and_delist_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path, city: str
) -> None:
    licences, penalties = CITIES[city]
    portal = licences.PORTAL
    day1 = replay(tmp_path, sqlite_url, portal, licences.DAYS.day1, 1)
    assert list_health(sqlite_url, day1)[portal.list_id].health == "healthy"
    before = stored(sqlite_url, portal.source)
    assert set(before) == {d.case_number for d in licences.DAYS.day1}

    # Day 2: the licence endpoint answers with the penalty list, as the penalties publish it.
    swapped = answered_with(portal, penalties.PORTAL)
    day2 = replay(tmp_path, sqlite_url, swapped, penalties.DAYS.day1, 2)
    health = list_health(sqlite_url, day2)[portal.list_id]
    assert health.health != "healthy"
    # The spider's key_fields check names it (the rows lack the licence's date key), before
    # any row is read; the required decided_on would only catch it row by row.
    assert date_key(licences) in lacking(health), health.findings
    assert run_row(sqlite_url, day2).state != "succeeded"
    assert [e for e in events(sqlite_url, day2) if e["event"] == "delisted"] == []
    # No penalty was taken for a licence, and every licence stands as day 1 left it.
    assert stored(sqlite_url, portal.source) == before
    assert netguard.read_text() == ""


@pytest.mark.replay
@pytest.mark.parametrize(
    ("city", "side"), [(city, side) for city in sorted(CITIES) for side in ("licence", "penalty")]
)
def test_a_first_run_fed_the_other_lists_rows_stores_nothing(
    tmp_path: Path, sqlite_url: str, netguard: Path, city: str, side: str
) -> None:
    """Either way round: a licence source fed penalty rows, or a penalty source fed licence
    rows, is ``layout_drift`` and takes nothing for its baseline."""
    licences, penalties = CITIES[city]
    asked, shown = (licences, penalties) if side == "licence" else (penalties, licences)
    portal = answered_with(asked.PORTAL, shown.PORTAL)
    run = replay(tmp_path, sqlite_url, portal, shown.DAYS.day1, 1)
    health = list_health(sqlite_url, run)[asked.PORTAL.list_id]
    assert health.health != "healthy"
    assert date_key(asked) in lacking(health), health.findings
    assert events(sqlite_url, run) == []
    assert stored(sqlite_url, asked.PORTAL.source) == {}
    assert netguard.read_text() == ""


def test_the_shanghai_lists_ask_different_types_and_demand_their_own_date_key() -> None:
    """The two 信用上海 sources read one endpoint with the two ``type`` values; each list's
    ``key_fields`` hold its own row date key and not the other's."""
    licence = get_source("shanghai_license").lists[0]
    penalty = get_source("shanghai_doublepublic").lists[0]
    assert licence.json_api is not None and penalty.json_api is not None
    assert licence.json_api.url == penalty.json_api.url
    types = {licence.json_api.params["type"], penalty.json_api.params["type"]}
    assert types == {"oc", "ox"}
    assert "billDate" in licence.json_api.key_fields
    assert "punishedAt" not in licence.json_api.key_fields
    assert "punishedAt" in penalty.json_api.key_fields
    assert "billDate" not in penalty.json_api.key_fields
    assert (licence.list_kind, penalty.list_kind) == ("license", "penalty")
    platforms = {get_source(s).platform for s in ("shanghai_license", "shanghai_doublepublic")}
    assert platforms == {"xyfw_sh"}


@pytest.mark.parametrize(("city", "sibling"), [("shanghai", "shanghai_doublepublic"),
                                               ("shenzhen", "shenzhen_punish")])  # fmt: skip
def test_a_city_licence_source_is_its_siblings_platform_and_jurisdiction(
    city: str, sibling: str
) -> None:
    licences, _ = CITIES[city]
    source, other = get_source(licences.PORTAL.source), get_source(sibling)
    assert source.spider == other.spider == "json_api"
    assert source.platform == other.platform is not None
    assert (source.jurisdiction, source.region_code) == (other.jurisdiction, other.region_code)
    assert source.base_url == other.base_url
    assert [lst.list_kind for lst in source.lists] == ["license"]
