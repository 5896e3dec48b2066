"""One organisation across sources (storage.entities, `creditwatch entity`, the web app's entity
page, alert subscriptions by USCC), on SQLite and PostgreSQL.

No two shipped fixtures share a subject, so the cross-source case is built: the Xiamen
cassettes are replayed (day 1, day 2), then a second source (CCGP's serious-violations list)
gets two runs through the normal path: entries normalised by ``core.normalise`` from the
portal's labels, staged by ``RunWriter``, merged by change detection. Its first run lists a
Xiamen company by USCC, and a company without a USCC (also on the Xiamen warning list) under
the same name twice: once in Xiamen, once in Beijing. Its second run no longer shows the
USCC company, so that entry is delisted (``disappeared``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from alerts.matching import match_all
from alerts.outbox import to_context
from alerts.subscriptions import Subscription
from core.items import RawEntry
from core.normalise import content_hash
from core.normalise.record import normalise_entry
from core.registry import get_source
from pipeline.cli import app as cli_app
from storage.engine import get_engine
from storage.entities import by_name, by_uscc, find, jurisdiction, of_entity_id
from storage.lifecycle import RunDetection, apply_run
from storage.outbox import run_event_context
from storage.runlog import RunWriter
from storage.runs import create_run, get_run
from tests.helpers import FIXTURES
from tests.replay_cache import Replay, Replayed
from web.app import create_app

pytestmark = pytest.mark.replay

DAY1 = FIXTURES / "xmtravel" / "xmtravel-day1.yaml"
DAY2 = FIXTURES / "xmtravel" / "xmtravel-day2.yaml"
CCGP = "ccgp.serious_violations"
HULI_USCC = "91350203MA116W7K8T"  # on Xiamen's lists: one entry delisted on day 2
HULI_NAME = "厦门某某旅行社有限公司湖里分公司"  # as CCGP spells it (names differ by portal)
YEFENG = "厦门椰风观光旅游有限公司"  # on Xiamen's warning list without a USCC
YEFENG_TRADITIONAL = "廈門椰風觀光旅遊有限公司"
LIST_URL = "http://www.ccgp.gov.cn/cr/list?page=1"
CCGP_AT = datetime(2026, 1, 5, 2, 0, tzinfo=UTC)


def ccgp_entry(name: str, *, uscc: str | None, address: str, decided_on: str, n: int) -> dict:
    lst = get_source("ccgp").list(CCGP)
    fields = {
        "企业名称": name,
        "企业地址": address,
        "处罚日期": decided_on,
        "处罚依据": "《中华人民共和国政府采购法》第七十七条",
        "严重违法失信行为的具体情形": "提供虚假材料谋取中标",
    }
    if uscc:
        fields["统一社会信用代码"] = uscc
    entry = RawEntry(
        source="ccgp",
        list=CCGP,
        source_url=f"http://www.ccgp.gov.cn/cr/list?page={n}",
        raw_sha256=f"{n:064x}",
        fields=fields,
    )
    return normalise_entry(entry, list_kind=lst.list_kind, record_key_rule=lst.record_key)


CCGP_ENTRIES = [
    ccgp_entry(HULI_NAME, uscc=HULI_USCC, address="厦门市湖里区", decided_on="2025-12-01", n=1),
    ccgp_entry(YEFENG, uscc=None, address="福建省厦门市思明区", decided_on="2025-12-02", n=2),
    ccgp_entry(YEFENG, uscc=None, address="北京市朝阳区", decided_on="2025-12-03", n=3),
]


def ccgp_run(url: str, entries: list[dict[str, Any]], at: datetime) -> str:
    """One run of the CCGP list through staging and change detection."""
    engine = get_engine(url)
    run_id = create_run(engine, get_source("ccgp"), mode="replay", cassette=None, delist_after=1)
    writer = RunWriter(engine, run_id)
    for entry in entries:
        writer.add_record(entry, content_hash(entry))
    writer.flush()
    with engine.begin() as conn:
        apply_run(
            conn,
            RunDetection(
                run_id=run_id,
                source="ccgp",
                seq=get_run(conn, run_id).seq,
                at=at,
                run_date=(at + timedelta(hours=8)).date(),
                lists=[CCGP],
                healthy={CCGP},
                delist_after=1,
                absence_evidence={
                    CCGP: {"list_pages": [{"url": LIST_URL, "raw_sha256": "f" * 64}]}
                },
            ),
        )
    return run_id


@pytest.fixture
def store(db_url: str, replayed: Replayed) -> dict[str, Any]:
    xm1, xm2 = replayed(db_url, Replay(DAY1, delist_after=1), Replay(DAY2, delist_after=1))
    cc1 = ccgp_run(db_url, CCGP_ENTRIES, CCGP_AT)
    cc2 = ccgp_run(db_url, CCGP_ENTRIES[1:], CCGP_AT + timedelta(days=1))
    return {"url": db_url, "runs": {"xm1": xm1, "xm2": xm2, "cc1": cc1, "cc2": cc2}}


def test_the_jurisdiction_of_a_record() -> None:
    assert jurisdiction("350203") == jurisdiction(None, "350200") == "3502"
    assert jurisdiction("350000") == "35"
    assert jurisdiction(None, "100000") == jurisdiction("100000") == ""
    assert jurisdiction("110105", "350200") == "1101"


def test_a_uscc_is_one_entity_in_every_source_with_its_delistings(store: dict) -> None:
    with get_engine(store["url"]).connect() as conn:
        entity = by_uscc(conn, HULI_USCC.lower())
        assert find(conn, f" {HULI_USCC} ".strip()) == [entity]
    assert entity is not None and entity.kind == "uscc" and entity.uscc == HULI_USCC
    assert entity.sources == ["ccgp", "xmtravel"]
    assert HULI_NAME in entity.names and len(entity.names) >= 2  # spelled differently
    summaries = {(s["list"], s["record_key"]): s for s in (li.summary for li in entity.listings)}
    (ccgp,) = [s for (lst, _), s in summaries.items() if lst == CCGP]
    assert ccgp["status"] == "removed" and ccgp["delisted_cause"] == "disappeared"
    assert ccgp["listed_at"].startswith("2026-01-05") and ccgp["delisted_at"].startswith(
        "2026-01-06"
    )
    assert ccgp["source_url"] == "http://www.ccgp.gov.cn/cr/list?page=1"
    assert ccgp["raw_sha256"] == f"{1:064x}"
    assert ccgp["delisting_evidence"]["list_pages"] == [{"url": LIST_URL, "raw_sha256": "f" * 64}]
    # The Xiamen entry delisted on day 2 is still there, with its date and cause.
    xm_removed = [
        s for (lst, _), s in summaries.items() if lst != CCGP and s["status"] == "removed"
    ]
    assert xm_removed and all(s["delisted_at"] and s["delisted_cause"] for s in xm_removed)
    assert all(s["source_url"] and s["raw_sha256"] for s in summaries.values())
    for listing in entity.listings:
        assert [e["at"] for e in listing.events] == sorted(e["at"] for e in listing.events)
        assert {(e["list"], e["record_key"]) for e in listing.events} <= {
            (listing.record["list"], listing.record["record_key"])
        }


def test_a_name_without_a_uscc_is_one_entity_per_jurisdiction(store: dict) -> None:
    with get_engine(store["url"]).connect() as conn:
        both = by_name(conn, YEFENG)
        folded = by_name(conn, f" {YEFENG_TRADITIONAL} ")
        xiamen = by_name(conn, YEFENG, region="3502")
        beijing = by_name(conn, YEFENG, region="110000")
        nowhere = by_name(conn, YEFENG, region="44")
        # The Xiamen entity is the same from either source's entity id.
        via_ccgp = of_entity_id(conn, xiamen[0].entity_ids[0])
        via_xm = of_entity_id(conn, xiamen[0].entity_ids[-1])
        unknown = find(conn, "没有这家公司")
    assert [e.key for e in both] == [e.key for e in folded]
    assert sorted(e.jurisdiction or "" for e in both) == ["1101", "3502"]
    (xm,) = xiamen
    assert xm.kind == "name" and xm.sources == ["ccgp", "xmtravel"]
    assert len(xm.entity_ids) == 2  # a source-scoped id per source, one entity
    assert {r["region_code"][:4] for r in xm.records if r["source"] == "ccgp"} == {"3502"}
    (bj,) = beijing
    assert bj.sources == ["ccgp"] and len(bj.listings) == 1
    assert nowhere == [] and unknown == []
    assert xm.key in {e.key for e in via_ccgp} and xm.key in {e.key for e in via_xm}
    assert all(e.key != bj.key for e in via_xm)


def test_a_name_finds_the_uscc_entity_that_carries_it(store: dict) -> None:
    with get_engine(store["url"]).connect() as conn:
        (entity,) = by_name(conn, HULI_NAME)
    assert entity.uscc == HULI_USCC and entity.sources == ["ccgp", "xmtravel"]


def test_cli_lists_the_entity_and_asks_to_narrow_a_shared_name(
    store: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", store["url"])
    runner = CliRunner()
    table = runner.invoke(cli_app, ["entity", HULI_USCC])
    assert table.exit_code == 0, table.output
    assert CCGP in table.output and "disappeared" in table.output and HULI_USCC in table.output

    lines = runner.invoke(cli_app, ["entity", HULI_USCC, "--format", "jsonl"])
    assert lines.exit_code == 0, lines.output
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert {r["source"] for r in rows} == {"ccgp", "xmtravel"}
    assert all(r["entity"] == f"uscc:{HULI_USCC}" for r in rows)
    # Every entry, even one never announced by an event (already expired at the baseline).
    assert len(rows) == len({(r["list"], r["record_key"]) for r in rows}) >= 4
    assert any(r["events"] for r in rows if r["source"] == "ccgp")
    assert any(r["status"] == "removed" and r["delisted_cause"] for r in rows)

    shared = runner.invoke(cli_app, ["entity", YEFENG])
    assert shared.exit_code == 1
    assert "2 entities" in shared.output and "--region" in shared.output
    assert "3502" in shared.output and "1101" in shared.output
    narrowed = runner.invoke(cli_app, ["entity", YEFENG, "--region", "3502", "--format", "jsonl"])
    assert narrowed.exit_code == 0, narrowed.output
    assert {json.loads(x)["source"] for x in narrowed.stdout.splitlines()} == {"ccgp", "xmtravel"}

    missing = runner.invoke(cli_app, ["entity", "没有这家公司"])
    assert missing.exit_code == 1 and "no entity matches" in missing.output
    bad = runner.invoke(cli_app, ["entity", YEFENG, "--region", "xm"])
    assert bad.exit_code == 2


def test_web_entity_page_lists_every_source_and_stays_redacted(store: dict, tmp_path: Path) -> None:
    client = TestClient(create_app(database_url=store["url"], snapshots_dir=tmp_path))
    answer = client.get(f"/api/entities/uscc-{HULI_USCC}").json()
    assert {s["source"] for s in answer["listings"]} == {"ccgp", "xmtravel"}
    assert {r["source"] for r in answer["records"]} == {"ccgp", "xmtravel"}
    assert any(e["source"] == "ccgp" and e["event"] == "delisted" for e in answer["events"])
    page = client.get(f"/entities/uscc-{HULI_USCC}", params={"lang": "en"}).text
    assert 'id="listings"' in page and f'href="/lists/{CCGP}"' in page
    assert page.count('class="listing ') == len(answer["listings"])
    assert "absent from consecutive healthy runs" in page and "/raw/" in page

    with get_engine(store["url"]).connect() as conn:
        (xm,) = by_name(conn, YEFENG, region="3502")
    xm_id = next(r["entity_id"] for r in xm.records if r["source"] == "xmtravel")
    yefeng = client.get(f"/api/entities/{xm_id}").json()
    assert yefeng["entity_id"] == xm_id
    assert {s["source"] for s in yefeng["listings"]} == {"ccgp", "xmtravel"}
    assert all(s["region_code"] is None or s["region_code"].startswith("3502")
               for s in yefeng["listings"])  # fmt: skip

    redacting = TestClient(
        create_app(database_url=store["url"], snapshots_dir=tmp_path, redact=True)
    )
    shown = redacting.get(f"/api/entities/uscc-{HULI_USCC}").json()
    assert shown["redacted"] and {s["source"] for s in shown["listings"]} == {"ccgp", "xmtravel"}
    for record, listing in zip(shown["records"], shown["listings"], strict=True):
        assert listing["entity_name"] == record["entity_name"]  # as redacted
    assert "/raw/" not in redacting.get(f"/entities/uscc-{HULI_USCC}").text


def test_a_subscription_by_uscc_hears_every_source(store: dict) -> None:
    sub = Subscription(id="huli", channels=("atom",), uscc=(HULI_USCC,))
    with get_engine(store["url"]).connect() as conn:
        contexts = [
            to_context(item)
            for run in ("xm2", "cc2")
            for item in run_event_context(conn, store["runs"][run])
        ]
    matched = match_all([sub], contexts)
    sources = {m.context.event["source"] for _, m in matched}
    assert sources == {"xmtravel", "ccgp"}
    assert all(m.match.criterion == "uscc" for _, m in matched)
    assert all(m.context.record.get("uscc") == HULI_USCC for _, m in matched)
