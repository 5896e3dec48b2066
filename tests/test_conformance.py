"""Conformance: every ``fixtures/<source>/`` replays to the values and events it expects.

Sources are found by walking ``fixtures/``, so a new source that follows the conventions is
covered without editing this file. A folder takes part when it holds

* two day cassettes, ``<source>-day1.yaml`` and ``<source>-day2.yaml``, and
* its expected values, either ``expected.json`` (``records`` by day, ``"1"`` or ``"day1"``,
  and ``events_day2``: a list, or one list per ``delist_after_<n>``) or the three files
  ``truth-day1.json``, ``truth-day2.json`` and ``events-day2.json``;
* optionally ``watchlist.txt``, replayed as the run's watchlist.

Each case replays day 1 then day 2 into a fresh SQLite database (``--delist-after 1`` unless
the events are given per ``delist_after_<n>``). An expected record names the fields it fixes
(a name that is not a schema field is looked up in ``extra``); after each day the stored
entries of the lists that day's run found healthy (their current values, provenance and
status) must match the expected ones one to one, removed entries included when the expected
ones list any. An
expected event names its own fields, fields of the record it is about (``uscc``), and
``changes_include`` (fields its changes must name) and ``evidence_url``; one without ``cause``
has none. Day 2 must raise exactly the
expected events. What is particular to one source (faults, health details, provenance) stays
in that source's own tests.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.registry import get_source, load_registry
from core.schema import RECORD_FIELDS
from pipeline.run import CrawlSpec, crawl
from storage.engine import get_engine
from storage.models import Record
from tests.cassette_support import playwright_browser_available
from tests.helpers import FIXTURES, events, list_health, run_row

SOURCES_DIR = Path(__file__).resolve().parent.parent / "crawlers" / "sources"
DEFAULT_DELIST_AFTER = 1


@dataclass(frozen=True)
class Case:
    """One fixture folder replayed with one ``delist_after``, and what it must give."""

    source: str
    folder: Path
    delist_after: int
    records: Mapping[int, Sequence[dict[str, Any]]]  # by day
    baseline_day1: Sequence[str] | None  # key values of day 1's baseline listings, if given
    events_day2: Sequence[dict[str, Any]]

    @property
    def id(self) -> str:
        return f"{self.source}-delist_after_{self.delist_after}"

    def cassette(self, day: int) -> Path:
        return self.folder / f"{self.source}-day{day}.yaml"

    @property
    def watchlist(self) -> Path | None:
        path = self.folder / "watchlist.txt"
        return path if path.is_file() else None


def _read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _by_day(records: Mapping[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """``{"1": …}`` or ``{"day1": …}`` → ``{1: …}``."""
    return {int(key.removeprefix("day")): value for key, value in records.items()}


def _cases_of(folder: Path) -> Iterator[Case]:
    source = folder.name
    if not all((folder / f"{source}-day{day}.yaml").is_file() for day in (1, 2)):
        return
    truth = [folder / name for name in ("truth-day1.json", "truth-day2.json", "events-day2.json")]
    if (folder / "expected.json").is_file():
        expected = _read(folder / "expected.json")
        records = _by_day(expected["records"])
        baseline = expected.get("baseline_listed_day1")
        events_day2 = expected["events_day2"]
        if isinstance(events_day2, dict):
            for key, wanted in sorted(events_day2.items()):
                after = int(key.removeprefix("delist_after_"))
                yield Case(source, folder, after, records, baseline, wanted)
            return
        yield Case(source, folder, DEFAULT_DELIST_AFTER, records, baseline, events_day2)
    elif all(path.is_file() for path in truth):
        records = {1: _read(truth[0]), 2: _read(truth[1])}
        yield Case(source, folder, DEFAULT_DELIST_AFTER, records, None, _read(truth[2]))


def discover() -> list[Case]:
    """Every case of every fixture folder that follows the conventions."""
    return [
        case
        for folder in sorted(FIXTURES.iterdir())
        if folder.is_dir()
        for case in _cases_of(folder)
    ]


CASES = discover()
_BROWSER, _NO_BROWSER = playwright_browser_available()


# The families whose sources replay through Chromium, as a declared session (Credit China) does.
BROWSER_FAMILIES = ("creditsearch",)


def _marks(case: Case) -> list[pytest.MarkDecorator]:
    source = load_registry().get(case.source)
    in_browser = source is not None and (
        "session" in source.raw or source.spider in BROWSER_FAMILIES
    )
    if in_browser and not _BROWSER:
        return [pytest.mark.skip(reason=_NO_BROWSER)]
    return []


# --- matching ------------------------------------------------------------------------------

_MISSING = object()


def _record_value(record: Mapping[str, Any], name: str) -> Any:
    if name in RECORD_FIELDS:
        return record.get(name, _MISSING)
    return (record.get("extra") or {}).get(name)


def record_matches(want: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    return all(_record_value(got, name) == value for name, value in want.items())


def event_matches(want: Mapping[str, Any], got: Mapping[str, Any]) -> bool:
    for name, value in want.items():
        if name == "changes_include":
            if not set(value) <= set(got.get("changes") or {}):
                return False
        elif name == "evidence_url":
            if (got.get("evidence") or {}).get("source_url") != value:
                return False
        elif name in got:
            if got[name] != value:
                return False
        elif _record_value(got.get("subject") or {}, name) != value:
            return False
    return "cause" in want or got.get("cause") is None


def pair_up(
    wanted: Sequence[Mapping[str, Any]],
    got: Sequence[Mapping[str, Any]],
    matches: Callable[[Mapping[str, Any], Mapping[str, Any]], bool],
) -> tuple[list[int], list[int]]:
    """A one-to-one matching of ``wanted`` to ``got`` as large as possible (augmenting
    paths): the indexes of the wanted items left unmatched, and of the got items."""
    candidates = [[j for j, item in enumerate(got) if matches(want, item)] for want in wanted]
    owner: dict[int, int] = {}  # got index → wanted index

    def assign(i: int, seen: set[int]) -> bool:
        for j in candidates[i]:
            if j not in seen:
                seen.add(j)
                if j not in owner or assign(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    unmatched = [i for i in range(len(wanted)) if not assign(i, set())]
    return unmatched, [j for j in range(len(got)) if j not in owner]


def _nearest(want: Mapping[str, Any], got: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The fields in which the closest stored record differs, for the failure message."""
    if not got:
        return {}

    def differing(item: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: (value, _record_value(item, name))
            for name, value in want.items()
            if _record_value(item, name) != value
        }

    return min((differing(item) for item in got), key=len)


def assert_records(day: int, wanted: Sequence[Mapping[str, Any]], got: list[dict]) -> None:
    missing, extra = pair_up(wanted, got, record_matches)
    problems = [
        f"day {day}: expected {wanted[i]} not stored; the nearest stored record differs in "
        f"(expected, stored) {_nearest(wanted[i], got)}"
        for i in missing
    ]
    problems += [
        f"day {day}: stored {got[j].get('list')} {got[j].get('entity_name')!r} not expected"
        for j in extra
    ]
    assert problems == []


def assert_events(
    wanted: Sequence[Mapping[str, Any]], got: list[dict], records: list[dict]
) -> None:
    """``records``: every stored entry, for the fields an event names of its subject."""
    by_key = {(r["list"], r["record_key"]): r for r in records}
    got = [{**e, "subject": by_key.get((e["list"], e["record_key"]))} for e in got]
    missing, extra = pair_up(wanted, got, event_matches)
    assert ([wanted[i] for i in missing], [_event_view(got[j]) for j in extra]) == ([], [])


def _event_view(event: Mapping[str, Any]) -> dict[str, Any]:
    view = ("event", "list", "record_key", "case_number", "entity_name", "cause", "baseline")
    return {name: event.get(name) for name in view}


def stored(url: str, run_id: str, include_removed: bool) -> list[dict[str, Any]]:
    """The entries of every list ``run_id`` found healthy (an unhealthy list vouches for
    nothing), as the store holds them after it: current values, provenance and status;
    removed ones only when asked. An entry a database list no longer shows but has not yet
    delisted (``absent_runs``) is not on the list."""
    healthy = [name for name, row in list_health(url, run_id).items() if row.health == "healthy"]
    table = Record.__table__
    query = select(table.c.data, table.c.status).where(
        table.c.list.in_(healthy), table.c.absent_runs == 0
    )
    if not include_removed:
        query = query.where(table.c.status != "removed")
    with get_engine(url).connect() as conn:
        return [{**row.data, "status": row.status} for row in conn.execute(query)]


def everything(url: str, source: str) -> list[dict[str, Any]]:
    """Every stored entry of the source, whatever its list's health or status."""
    table = Record.__table__
    query = select(table.c.data).where(table.c.source == source)
    with get_engine(url).connect() as conn:
        return [row.data for row in conn.execute(query)]


# --- the tests -----------------------------------------------------------------------------


def test_fixture_folders_are_found_and_name_registered_sources() -> None:
    """Discovery finds the shipped fixtures, and each folder is named after a source."""
    assert CASES, "no fixture folder follows the conventions"
    registered = set(load_registry())
    assert {case.source for case in CASES} <= registered
    assert len({case.id for case in CASES}) == len(CASES)


# The families a city or provincial portal is declared in, with no Python of its own.
CITY_FAMILIES = ("json_api", "html_list", "creditsearch")


def _family(case: Case) -> bool:
    return get_source(case.source).spider in CITY_FAMILIES


@pytest.mark.replay
@pytest.mark.parametrize(
    "case", [pytest.param(case, id=case.id, marks=_marks(case)) for case in CASES]
)
def test_two_replayed_days_give_the_expected_records_and_events(
    case: Case, sqlite_url: str, netguard: Path
) -> None:
    check_two_days(case, sqlite_url, netguard)


@pytest.mark.replay
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.id, marks=_marks(case)) for case in CASES if _family(case)],
)
def test_a_family_source_gives_the_same_on_postgresql(
    case: Case, db_url: str, netguard: Path
) -> None:
    """Sources declared in a city family (no code of their own) also run on PostgreSQL; the
    others have PostgreSQL replay tests of their own."""
    check_two_days(case, db_url, netguard)


def check_two_days(case: Case, url: str, netguard: Path) -> None:
    watchlist = str(case.watchlist) if case.watchlist else None
    days: dict[int, str] = {}
    for day in (1, 2):
        days[day] = replay_day(url, case, day, watchlist)
        assert run_row(url, days[day]).state != "failed"
        wanted = case.records[day]
        removed = any(record.get("status") == "removed" for record in wanted)
        assert_records(day, wanted, stored(url, days[day], removed))
        if day == 1:
            first = events(url, days[1])
            assert all(e["event"] == "listed" and e["baseline"] for e in first)
            if case.baseline_day1 is not None:
                assert len(first) == len(case.baseline_day1)
                for key in case.baseline_day1:
                    assert any(key in e.values() for e in first), key
    assert_events(case.events_day2, events(url, days[2]), everything(url, case.source))
    assert netguard.read_text() == "", "a replayed run reached for the network"


def replay_day(url: str, case: Case, day: int, watchlist: str | None) -> str:
    spec = CrawlSpec(
        source=case.source,
        mode="replay",
        cassette=case.cassette(day),
        delist_after=case.delist_after,
        watchlist=watchlist,
    )
    return crawl(spec, url=url)


def test_every_source_without_its_own_spider_is_served_by_a_family() -> None:
    """A room holds a ``spider.py`` or its declaration names a family spider; no spider module
    exists only to name a source (the loader builds those)."""
    from crawlers.loader import FAMILIES, SourceSpiderLoader, room_spider_path
    from crawlers.spiders.base import PortalSpider

    loader = SourceSpiderLoader()
    rooms = sorted(path.parent.name for path in SOURCES_DIR.glob("*/source.yml"))
    assert rooms == sorted(load_registry()) == loader.list()
    for sid in rooms:
        source = get_source(sid)
        spider = loader.load(sid)
        assert issubclass(spider, PortalSpider)
        assert (spider.name, spider.source_id) == (sid, sid)
        if room_spider_path(source) is None:
            assert source.spider in FAMILIES, f"{sid}: no spider.py and no family"
            family = loader.load(sid).__mro__[1]
            assert f"{family.__module__}:{family.__name__}" == FAMILIES[source.spider]
    assert name_only_spiders() == []


def name_only_spiders() -> list[str]:
    """Spider classes anywhere under ``crawlers/`` that add nothing but a name and a source:
    the loader builds those from the registry."""
    from crawlers.spiders.base import PortalSpider

    package_root = SOURCES_DIR.parent.parent
    found = []
    for path in sorted(SOURCES_DIR.parent.rglob("*.py")):
        parts = path.relative_to(package_root).with_suffix("").parts
        module = importlib.import_module(".".join(p for p in parts if p != "__init__"))
        for cls in vars(module).values():
            if not (
                inspect.isclass(cls)
                and issubclass(cls, PortalSpider)
                and cls.__module__ == module.__name__
            ):
                continue
            own = {name for name in vars(cls) if not name.startswith("__")}
            if own <= {"name", "source_id"}:
                found.append(f"{path}: {cls.__name__}")
    return found
