"""The global search (storage.search, /search, /api/search), on SQLite and PostgreSQL: a name
in simplified or traditional characters, a USCC in any case and spacing (landing on the
entity page that lists every source), a case number in other brackets, the cap, short
queries, and a redacting server that neither matches nor shows a person's full name.

The data is the demo's: both Xiamen days, plus a second source (CCGP, built as in
tests/test_entities.py) that names a Xiamen company by USCC under another spelling and a
company without a USCC in Xiamen and in Beijing."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.normalise.text import fold
from core.redact import pseudonym, redact_record, short_name
from storage.engine import get_engine
from storage.entities import by_name, of_entity_id
from storage.models import Record
from storage.search import QueryError, search, terms
from tests.replay_cache import Replay, Replayed
from tests.test_entities import (
    CCGP,
    CCGP_AT,
    CCGP_ENTRIES,
    DAY1,
    DAY2,
    HULI_NAME,
    HULI_USCC,
    YEFENG,
    YEFENG_TRADITIONAL,
    ccgp_run,
)
from web.app import create_app

pytestmark = pytest.mark.replay

WARNING = "xmtravel.warning"
HULI_CASE = "厦文旅罚〔2025〕300号"  # listed on day 2 for the Huli branch


@pytest.fixture
def store(db_url: str, replayed: Replayed) -> str:
    replayed(db_url, Replay(DAY1, delist_after=1), Replay(DAY2, delist_after=1))
    ccgp_run(db_url, CCGP_ENTRIES, CCGP_AT)
    return db_url


def records(url: str) -> list[dict[str, Any]]:
    with get_engine(url).connect() as conn:
        return list(conn.execute(select(Record.__table__.c.data)).scalars())


def entity_keys(url: str, entity_ids: set[str]) -> set[str]:
    """The cross-source entities these stored entity ids belong to, as storage.entities
    groups them."""
    with get_engine(url).connect() as conn:
        return {e.key for eid in entity_ids for e in of_entity_id(conn, eid)}


# -- storage, both databases ------------------------------------------------------------------


def test_a_name_in_either_script_finds_every_entity_that_bears_it(store: str) -> None:
    with get_engine(store).connect() as conn:
        simplified = search(conn, terms("椰风观光旅游"))
        traditional = search(conn, terms("椰風觀光旅遊"))
        whole = search(conn, terms(YEFENG_TRADITIONAL))
        expected = {e.key for e in by_name(conn, YEFENG)}
    # the same company without a USCC in Xiamen (two sources) and in Beijing: two entities
    assert len(expected) == 2
    assert {h.entity.key for h in simplified.hits} == expected
    assert [h.entity.key for h in traditional.hits] == [h.entity.key for h in simplified.hits]
    assert all(h.matched == ["entity_name"] and not h.exact for h in simplified.hits)
    assert {h.entity.key for h in whole.hits} == expected and all(h.exact for h in whole.hits)
    xiamen = next(h for h in whole.hits if h.entity.jurisdiction == "3502")
    assert set(xiamen.entity.sources) == {"ccgp", "xmtravel"}
    assert not simplified.more


def test_a_uscc_in_any_case_and_spacing_is_its_entity_in_every_source(store: str) -> None:
    query = " ".join([HULI_USCC[:4].lower(), HULI_USCC[4:10], HULI_USCC[10:].lower()])
    with get_engine(store).connect() as conn:
        found = search(conn, terms(query))
    [hit] = found.hits
    assert hit.entity.uscc == HULI_USCC and hit.exact and hit.matched == ["uscc"]
    assert set(hit.entity.sources) == {"ccgp", "xmtravel"}
    assert HULI_NAME in hit.entity.names  # CCGP's spelling, found by the code
    stored = [r for r in records(store) if r.get("uscc") == HULI_USCC]
    assert {(r["list"], r["record_key"]) for r in stored} == {
        (r["list"], r["record_key"]) for r in hit.entity.records
    }
    assert CCGP in {r["list"] for r in hit.entity.records}


def test_a_case_number_in_other_brackets_and_script_finds_its_entity(store: str) -> None:
    with get_engine(store).connect() as conn:
        found = search(conn, terms("厦文旅罚[2025]300號"))
    [hit] = found.hits
    assert hit.entity.uscc == HULI_USCC and hit.matched == ["case_number"]
    assert HULI_CASE in {r["case_number"] for r in hit.entity.records}


def test_the_cap_says_more_and_short_queries_are_refused(store: str) -> None:
    with get_engine(store).connect() as conn:
        every = search(conn, terms("厦门"), cap=1000)
        capped = search(conn, terms("厦门"), cap=3)
    named = {r["entity_id"] for r in records(store) if "厦门" in fold(r["entity_name"] or "")}
    assert {h.entity.key for h in every.hits} == entity_keys(store, named)
    assert len(every.hits) > 3 and not every.more
    assert len(capped.hits) == 3 and capped.more
    for query, reason in (
        ("", "empty"),
        ("  ", "empty"),
        ("厦", "too_short"),
        ("x" * 101, "too_long"),
    ):
        with pytest.raises(QueryError) as refused:
            terms(query)
        assert refused.value.reason == reason, query


def test_redacted_search_never_matches_a_persons_full_name(store: str) -> None:
    people = [r for r in records(store) if r["list"] == WARNING and r["entity_type"] == "person"]
    assert people
    with get_engine(store).connect() as conn:
        for person in people:
            plain = search(conn, terms(person["entity_name"]))
            assert person["entity_id"] in {i for h in plain.hits for i in h.entity.entity_ids}
            hidden = search(conn, terms(person["entity_name"]), transform=redact_record)
            assert hidden.hits == [], person["entity_name"]
            # found by the case number, which is no secret
            by_case = search(conn, terms(person["case_number"]), transform=redact_record)
            assert person["entity_id"] in {i for h in by_case.hits for i in h.entity.entity_ids}


# -- the web app ----------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_a_uscc_lands_on_the_entity_page_that_lists_every_source(store: str) -> None:
    client = TestClient(create_app(database_url=store), follow_redirects=False)
    landed = client.get("/search", params={"q": f" {HULI_USCC.lower()} ", "lang": "en"})
    assert landed.status_code == 303
    assert landed.headers["location"] == f"/entities/uscc-{HULI_USCC}"
    page = client.get(landed.headers["location"], params={"lang": "en"})
    assert page.status_code == 200
    for list_id in (WARNING, CCGP):
        assert f'href="/lists/{list_id}"' in page.text
    assert HULI_NAME in page.text
    api = client.get("/api/search", params={"q": HULI_USCC}).json()
    assert api["total"] == 1 and api["results"][0]["url"] == landed.headers["location"]
    assert {x["source"] for x in api["results"][0]["listings"]} == {"ccgp", "xmtravel"}


def test_search_pages_list_entities_and_say_what_they_could_not_do(
    store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(create_app(database_url=store), follow_redirects=False)
    # Two entities bear the whole name (Xiamen, Beijing): no landing, both listed.
    both = client.get("/search", params={"q": YEFENG_TRADITIONAL, "lang": "en"})
    assert both.status_code == 200 and "2 entities found" in both.text
    links = re.findall(r'class="entity" href="([^"]+)"', both.text)
    api = client.get("/api/search", params={"q": YEFENG_TRADITIONAL}).json()
    assert links == [r["url"] for r in api["results"]] and len(links) == 2
    for link in links:
        assert client.get(link).status_code == 200
    assert 'value="廈門椰風觀光旅遊有限公司"' in both.text  # the form keeps the query
    # One entity with that whole name, nothing else: landing.
    one = client.get("/search", params={"q": "厦门嘉禾酒店有限公司"})
    assert one.status_code == 303 and one.headers["location"] == "/entities/uscc-91350213MA028DE74Q"

    short = client.get("/search", params={"q": "厦", "lang": "en"})
    assert short.status_code == 200 and "type at least 2 characters" in short.text
    assert client.get("/api/search", params={"q": "厦"}).json()["problem"] == "too_short"
    assert "Type a name" in client.get("/search", params={"lang": "en"}).text
    assert client.get("/api/search", params={"q": "x" * 4000}).json()["problem"] == "too_long"

    monkeypatch.setattr("web.routes.search.CAP", 2)
    capped = client.get("/search", params={"q": "厦门", "lang": "en"})
    assert "More than 2 entities match" in capped.text
    assert len(re.findall(r'class="entity"', capped.text)) == 2
    answer = client.get("/api/search", params={"q": "厦门"}).json()
    assert answer["more"] and answer["total"] == 2 and answer["cap"] == 2


def test_a_redacting_server_shows_persons_only_by_pseudonym(store: str) -> None:
    people = [r for r in records(store) if r["list"] == WARNING and r["entity_type"] == "person"]
    client = TestClient(create_app(database_url=store, redact=True), follow_redirects=False)
    for person in people:
        name, masked = person["entity_name"], person["id_number_masked"]
        for path in ("/search", "/api/search"):
            answer = client.get(path, params={"q": name})
            assert answer.status_code == 200 and "redacted:" not in answer.text, path
            echoes = 1 if path == "/search" else 0  # the form keeps the query
            shown = answer.text.replace(f'"q":"{name}"', "")  # the API echoes it
            assert shown.count(name) == echoes, path
        assert client.get("/api/search", params={"q": name}).json()["total"] == 0
        by_case = client.get("/api/search", params={"q": person["case_number"]})
        shown = by_case.text
        assert name not in shown and masked not in shown and person["entity_id"] not in shown
        [hit] = by_case.json()["results"]
        assert hit["entity_id"] == pseudonym(person["entity_id"])
        assert hit["entity_name"] == short_name(name) and hit["entity_type"] == "person"
        assert all(x["record_key"].startswith("redacted:") for x in hit["listings"])
        page = client.get("/search", params={"q": person["case_number"]})
        assert page.status_code == 200 and name not in page.text
        assert client.get(hit["url"]).status_code == 200  # the pseudonym's entity page


def test_time_of_a_search(store: str) -> None:
    """Not a benchmark: that every kind of query stays well under a second on the demo data
    (the report quotes these numbers)."""
    with get_engine(store).connect() as conn:
        for query in ("厦门", YEFENG_TRADITIONAL, HULI_USCC, HULI_CASE):
            search(conn, terms(query))  # warm (OpenCC's dictionaries, the driver)
            start = time.perf_counter()
            search(conn, terms(query))
            took = time.perf_counter() - start
            print(f"{store.split(':')[0]} {query}: {took * 1000:.1f} ms")
            assert took < 1.0, query
