"""List pages with substance (web/routes/lists.py, storage.browse), on SQLite and PostgreSQL:
each list's own columns (a Beijing penalties list with fines and authorities, the Xiamen
warning and honours lists), none empty on every row; sorting by a column, in bounded memory,
the same in pages, HTML and JSON; the CSV download of the filtered and sorted view (BOM,
headers in the reader's language with their keys, formulas neutralised, redacted when the
server redacts); and a past date's counts."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.registry import get_source
from storage.asof import records_as_of, run_date
from storage.browse import COLUMNS, EntryQuery, column_value, list_entries, sort_key
from storage.engine import get_engine
from storage.models import Record
from tests.helpers import FIXTURES, rewrite_record, run_row
from tests.replay_cache import Replay, Replayed
from web.app import create_app
from web.i18n import FIELDS

pytestmark = pytest.mark.replay

WARNING = "xmtravel.warning"
GOOD = "xmtravel.good"
PUNISH = "beijing_punish.penalties"
FORMULA = '=HYPERLINK("http://example.org/","click")'
FORMULA_CASE = "厦文旅罚〔2025〕300号"  # the entry whose reason the fixture poisons
STEPS = (
    Replay(FIXTURES / "xmtravel" / "xmtravel-day1.yaml", delist_after=1),
    Replay(FIXTURES / "xmtravel" / "xmtravel-day2.yaml", delist_after=1),
    Replay(FIXTURES / "beijing_punish" / "beijing_punish-day1.yaml", "beijing_punish", 1),
    Replay(FIXTURES / "beijing_punish" / "beijing_punish-day2.yaml", "beijing_punish", 1),
)


@pytest.fixture
def store(db_url: str, replayed: Replayed) -> dict[str, Any]:
    """Two days of Xiamen and of Beijing's penalties; one Xiamen reason is a formula, as a
    compromised portal could publish it."""
    runs = replayed(db_url, *STEPS)
    records = Record.__table__
    with get_engine(db_url).begin() as conn:
        rows = conn.execute(
            select(records.c.id, records.c.data).where(
                records.c.list == WARNING, records.c.case_number == FORMULA_CASE
            )
        ).all()
        assert len(rows) == 1
        for row in rows:
            rewrite_record(conn, row.id, {"reason": FORMULA})
    days = [run_date(run_row(db_url, run).started_at) for run in runs]
    return {"url": db_url, "xm_days": days[:2], "bj_days": days[2:]}


def api(client: TestClient, list_id: str, **params: Any) -> dict[str, Any]:
    answer = client.get(f"/api/lists/{list_id}/entries", params={"per_page": 500, **params})
    assert answer.status_code == 200, answer.text
    return answer.json()


def cells(page: str) -> dict[str, list[str]]:
    """The body cells of a page's entries table by column (``col-<field>`` classes)."""
    start = page.index('id="entries"')
    table = page[start : page.index("</table>", start)]
    out: dict[str, list[str]] = {}
    for column, text in re.findall(r'<td class="col-([a-z_]+)[^"]*"[^>]*>(.*?)</td>', table, re.S):
        out.setdefault(column, []).append(re.sub(r"<[^>]+>", "", text).strip())
    return out


def header(page: str) -> list[str]:
    return re.findall(r'<th scope="col" class="col-([a-z_]+)', page)


def expected_columns(entries: list[dict[str, Any]]) -> list[str]:
    return [
        c
        for c in COLUMNS
        if c in ("entity_name", "status") or any(column_value(e, c) is not None for e in entries)
    ]


# -- storage, both databases ------------------------------------------------------------------


def test_columns_are_those_the_list_fills_and_sorting_is_a_total_order(store: dict) -> None:
    url = store["url"]
    with get_engine(url).connect() as conn:
        for source, list_id in (("xmtravel", WARNING), ("beijing_punish", PUNISH)):
            lst = get_source(source).list(list_id)
            every, _, _ = records_as_of(conn, source, [list_id], include_removed=True)
            query = EntryQuery(status="all")
            whole = list_entries(conn, source, lst, query=query, limit=1000)
            assert whole.columns == expected_columns(every)
            for column, descending in (("fine_yuan", True), ("decided_on", False), ("uscc", True)):
                present = [e for e in every if column_value(e, column) is not None]
                empty = [e for e in every if column_value(e, column) is None]
                by_key = sorted(present, key=lambda e: e["record_key"])
                expected = sorted(by_key, key=sort_key(column), reverse=descending)
                if descending:  # ties keep ascending record_key
                    expected = sorted(by_key, key=lambda e: sort_key(column)(e)[1], reverse=True)
                expected += sorted(empty, key=lambda e: e["record_key"])
                keys = [e["record_key"] for e in expected]
                pages = [
                    list_entries(
                        conn,
                        source,
                        lst,
                        query=query,
                        offset=offset,
                        limit=3,
                        sort=column,
                        descending=descending,
                    )
                    for offset in range(0, len(every) + 3, 3)
                ]
                shown = [e["record_key"] for p in pages for e in p.entries]
                assert shown == keys, (list_id, column, descending)
                assert all(p.total == len(every) for p in pages)
        with pytest.raises(ValueError):
            list_entries(conn, "xmtravel", get_source("xmtravel").list(WARNING), sort="nope")
        with pytest.raises(ValueError):
            list_entries(
                conn,
                "xmtravel",
                get_source("xmtravel").list(WARNING),
                sort="reason",
                offset=10_000,
            )


# -- the pages ----------------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
def test_each_list_shows_its_own_columns_and_none_empty_on_every_row(store: dict) -> None:
    client = TestClient(create_app(database_url=store["url"]))
    for list_id in (PUNISH, WARNING, GOOD):
        entries = api(client, list_id)["entries"]
        page = client.get(f"/lists/{list_id}", params={"lang": "en"}).text
        columns = header(page)
        assert columns == expected_columns(entries), list_id
        shown = cells(page)
        for column in columns:
            if column != "entity_name":
                assert len(shown[column]) == len(entries), (list_id, column)
                assert set(shown[column]) != {"—"}, (list_id, column)  # never empty throughout
        for column in set(COLUMNS) - set(columns):
            assert all(column_value(e, column) is None for e in entries), (list_id, column)
    punish = header(client.get(f"/lists/{PUNISH}").text)
    assert {"reason", "measure", "fine_yuan", "authority", "decided_on", "case_number"} <= set(
        punish
    )
    assert not {"title", "valid_until", "registration_no"} & set(punish)
    good = header(client.get(f"/lists/{GOOD}").text)
    assert {"title", "registration_no", "authority"} <= set(good)
    assert not {"fine_yuan", "case_number", "reason"} & set(good)


def test_fines_read_as_a_reader_writes_them(store: dict) -> None:
    client = TestClient(create_app(database_url=store["url"]))
    entries = api(client, PUNISH, sort="fine_yuan", dir="desc")["entries"]
    fines = [e["fine_yuan"] for e in entries]
    assert fines[0] == 200000 and fines == sorted(fines, reverse=True)
    zh = cells(client.get(f"/lists/{PUNISH}", params={"sort": "fine_yuan", "dir": "desc"}).text)
    en = cells(
        client.get(
            f"/lists/{PUNISH}", params={"sort": "fine_yuan", "dir": "desc", "lang": "en"}
        ).text
    )
    assert zh["fine_yuan"][0] == "20万元" and en["fine_yuan"][0] == "200,000 yuan"
    small = fines.index(3000)
    assert zh["fine_yuan"][small] == "3,000元" and en["fine_yuan"][small] == "3,000 yuan"


def test_column_headers_sort_and_keep_the_filters(store: dict) -> None:
    client = TestClient(create_app(database_url=store["url"]))
    params = {"q": "厦门", "status": "all"}
    expected = api(client, WARNING, **params, sort="decided_on")["entries"]
    decided = [e["decided_on"] for e in expected]
    assert decided == sorted(decided) and len(set(decided)) > 3
    page = client.get(f"/lists/{WARNING}", params={**params, "sort": "decided_on"})
    shown = re.findall(r'class="entity" href="/entities/([^"]+)"', page.text)
    assert shown == [e["entity_id"] for e in expected]
    th = re.search(r'<th scope="col" class="col-decided_on"[^>]*>.*?</th>', page.text, re.S)
    assert th and 'aria-sort="ascending"' in th.group()
    toggle = re.search(r'href="([^"]+)"', th.group()).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert "sort=decided_on" in toggle and "dir=desc" in toggle
    assert "status=all" in toggle and "q=%E5%8E%A6%E9%97%A8" in toggle
    descending = client.get(toggle)
    shown = re.findall(r'class="entity" href="/entities/([^"]+)"', descending.text)
    assert [
        e["entity_id"]
        for e in api(client, WARNING, **params, sort="decided_on", dir="desc")["entries"]
    ] == shown
    assert shown != [e["entity_id"] for e in expected]
    assert 'aria-sort="descending"' in descending.text
    # the filter form keeps the order
    assert '<input type="hidden" name="sort" value="decided_on">' in descending.text
    for bad in ({"sort": "nope"}, {"dir": "up"}, {"sort": "reason", "page": "400"}):
        assert client.get(f"/lists/{WARNING}", params=bad).status_code == 422, bad
        assert client.get(f"/api/lists/{WARNING}/entries", params=bad).status_code == 422, bad


def test_the_csv_is_the_filtered_sorted_view_and_safe_in_a_spreadsheet(store: dict) -> None:
    client = TestClient(create_app(database_url=store["url"]))
    params = {"q": "厦文旅罚", "status": "all", "sort": "fine_yuan", "dir": "desc"}
    page = client.get(f"/lists/{WARNING}", params={**params, "lang": "en"}).text
    link = re.search(r'<a id="csv" href="([^"]+)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert link.startswith(f"/lists/{WARNING}.csv?") and "sort=fine_yuan" in link
    answer = client.get(link + "&lang=en")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == f'attachment; filename="{WARNING}.csv"'
    assert "sandbox" in answer.headers["content-security-policy"]
    assert answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    head, body = rows[0], rows[1:]
    expected = api(client, WARNING, **params)
    columns = header(page)
    keys = [k for c in columns for k in (("uscc", "uscc_raw") if c == "uscc" else (c,))]
    keys += ["record_key", "entity_id"]
    assert head == [f"{FIELDS['en'][k]} ({k})" for k in keys]
    assert len(body) == expected["total"] < len(api(client, WARNING, status="all")["entries"])
    assert [r[keys.index("record_key")] for r in body] == [
        e["record_key"] for e in expected["entries"]
    ]
    reasons = [r[keys.index("reason")] for r in body]
    assert "'" + FORMULA in reasons and FORMULA not in reasons  # neutralised, as snapshots do
    fines = [r[keys.index("fine_yuan")] for r in body]
    assert fines[0] == str(expected["entries"][0]["fine_yuan"])
    # Chinese headers for a Chinese reader; an unsorted download is the whole list in order.
    chinese = client.get(f"/lists/{PUNISH}.csv", params={"lang": "zh", "status": "all"})
    rows = list(csv.reader(io.StringIO(chinese.content.decode("utf-8-sig"))))
    assert rows[0][0] == f"{FIELDS['zh']['entity_name']} (entity_name)"
    assert [r[-2] for r in rows[1:]] == [
        e["record_key"] for e in api(client, PUNISH, status="all")["entries"]
    ]
    for bad in ({"sort": "nope"}, {"as_of": "yesterday"}, {"status": "gone"}):
        assert client.get(f"/lists/{WARNING}.csv", params=bad).status_code == 422, bad
    assert client.get("/lists/xmtravel.nosuch.csv").status_code == 404


def test_a_redacting_server_redacts_the_csv(store: dict) -> None:
    plain = TestClient(create_app(database_url=store["url"]))
    redacting = TestClient(create_app(database_url=store["url"], redact=True))
    people = [
        e for e in api(plain, WARNING, status="all")["entries"] if e["entity_type"] == "person"
    ]
    assert people
    text = redacting.get(f"/lists/{WARNING}.csv", params={"status": "all"}).content.decode(
        "utf-8-sig"
    )
    for person in people:
        assert person["entity_name"] not in text and person["id_number_masked"] not in text
        assert person["entity_id"] not in text
    rows = list(csv.DictReader(io.StringIO(text)))
    assert not any("(id_number_masked)" in k for k in rows[0])  # dropped by redaction
    ids = {r[f"{FIELDS['zh']['entity_id']} (entity_id)"] for r in rows}
    assert {p["entity_id"] for p in people} & ids == set()
    assert any(i.startswith("redacted:") for i in ids)
    shown = plain.get(f"/lists/{WARNING}.csv", params={"status": "all"}).content.decode("utf-8-sig")
    assert all(p["entity_name"] in shown for p in people)  # the unredacted server shows them


def test_a_past_date_shows_that_dates_counts(store: dict) -> None:
    client = TestClient(create_app(database_url=store["url"]))
    day1, day2 = store["xm_days"]
    with get_engine(store["url"]).connect() as conn:

        def counts(as_of: date | None) -> dict[str, int]:
            rows, _, _ = records_as_of(conn, "xmtravel", [WARNING], as_of, include_removed=True)
            return {
                s: sum(1 for r in rows if r["status"] == s)
                for s in ("active", "expired", "removed")
            }

        then, now = counts(day1), counts(None)
    assert then != now and now["removed"] > then["removed"] == 0
    past = api(client, WARNING, as_of=day1.isoformat())
    assert past["list"]["counts"] == then
    assert past["list"]["last_healthy_run"]["run_id"] == past["run"]["run_id"]
    assert api(client, WARNING)["list"]["counts"] == now
    page = client.get(f"/lists/{WARNING}", params={"as_of": day1.isoformat(), "lang": "en"}).text
    meta = page[page.index('<p class="meta">') : page.index("</p>", page.index('<p class="meta">'))]
    assert f"on {day1.isoformat()}:" in meta
    assert f"Active {then['active']} · Expired {then['expired']} · Removed 0" in " ".join(
        meta.split()
    )
    assert day2 > day1
