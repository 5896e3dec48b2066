"""Alerts people can act on: messages in words (labels, 万元, local time, list names, causes),
Atom entries linking to the web app's page, feeds titled after their subscription and
published world-readable.

Golden files: ``tests/golden/alerts/<case>.<lang>.txt`` hold the subject, link and plain text
of each message, ``feed.<lang>.xml`` a whole Atom feed, all rendered from the fixed inputs
below (fixed times, registry names). After a deliberate change of wording, rewrite them with
``UPDATE_GOLDEN=1 .venv/bin/python -m pytest -p no:cacheprovider -q tests/test_alert_actionable.py``
and review the diff.
"""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import feedparser
import pytest
from fastapi.testclient import TestClient

from alerts.channels import write_atom
from alerts.feed import feed_document
from alerts.links import DEFAULT_BASE_URL, base_url, check_base_url
from alerts.messages import digest_message, event_message, health_message
from alerts.model import AlertMessage, Match, MatchedEvent
from alerts.outbox import alert_key, frozen, thawed, to_context
from alerts.sender import registry_names, send_pending
from alerts.subscriptions import Subscription, SubscriptionError
from alerts.wording import local_time, money
from core.catalogue import Texts
from core.redact import pseudonym
from storage.engine import get_engine, upgrade
from storage.outbox import insert_alerts, save_subscription
from web.app import create_app

GOLDEN = Path(__file__).parent / "golden" / "alerts"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"
BASE = "https://creditwatch.example.org"
AT = datetime(2025, 11, 22, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
USCC = "91350200MA31K8W2P4"
URL = "https://lyj.xm.gov.cn/xypt/detail?id=42"
SHA = "ab" * 32
HOSTILE = "<script>alert(1)</script>旅行社\x07\r\nBcc: x@example.org\u202e&amp;"


def context(
    kind: str,
    *,
    name: str = "厦门某某旅行社有限公司",
    entity_id: str = f"uscc-{USCC}",
    list_id: str = "xmtravel.warning",
    cause: str | None = None,
    changes: dict[str, list[Any]] | None = None,
    record: dict[str, Any] | None = None,
    at: datetime = AT,
) -> dict[str, Any]:
    """An event as ``storage.outbox.run_event_context`` hands it over (and the outbox keeps)."""
    event = {
        "event_id": f"ev-{kind}-{entity_id[-6:]}",
        "event": kind,
        "source": list_id.split(".")[0],
        "list": list_id,
        "record_key": f"厦文旅罚(2025)12号|{entity_id}",
        "entity_id": entity_id,
        "entity_name": name,
        "case_number": "厦文旅罚〔2025〕12号",
        "title": None,
        "cause": cause,
        "changes": changes,
        "baseline": False,
        "run_id": "xmtravel:3",
        "at": at.isoformat(),
        "evidence": {"source_url": URL, "raw_sha256": SHA},
    }
    rec = {
        "source": "xmtravel",
        "list": list_id,
        "list_kind": "warning",
        "entity_id": entity_id,
        "entity_name": name,
        "entity_type": "company",
        "uscc": USCC if entity_id.startswith("uscc-") else None,
        "reason": "未与旅游者签订旅游合同",
        "measure": "警告，罚款人民币伍万元",
        "fine_yuan": 50000,
        "authority": "厦门市文化和旅游局",
        "decided_on": "2025-11-20",
    }
    return {
        "event": event,
        "record": record if record is not None else rec,
        "run_health": "healthy",
        "fetched_at": (at + timedelta(seconds=5)).isoformat(),
    }


def item(ctx: dict[str, Any], match: Match | None = None) -> MatchedEvent:
    return MatchedEvent(to_context(ctx), match or Match("uscc", USCC))


LISTED = context("listed")
DELISTED = context("delisted", cause="disappeared", at=AT + timedelta(hours=3))
MODIFIED = context(
    "modified",
    changes={
        "fine_yuan": [10000, 50000],
        "measure": ["警告，罚款人民币壹万元", "警告，罚款人民币伍万元"],
        "penalty_types": [["warning"], ["warning", "fine"]],
        "valid_until": [None, "2026-11-20"],
    },
    at=AT + timedelta(hours=5),
)


def messages(language: str) -> dict[str, AlertMessage]:
    """Every golden case, from the fixed inputs."""

    def one(ctx: dict[str, Any], key: str) -> AlertMessage:
        return event_message(
            item(ctx), subscription_id="xm-desk", language=language, key=key, base_url=BASE
        )

    start = datetime(2025, 11, 21, 16, tzinfo=UTC)  # a Beijing calendar day
    source_name, list_names = registry_names("xmtravel", language)
    health_runs = [
        {
            "run_id": "xmtravel:7",
            "state": "degraded",
            "started_at": "2025-11-23T02:00:00+00:00",
            "ended_at": "2025-11-23T02:04:10+00:00",
            "findings": [
                {
                    "list": "xmtravel.warning",
                    "url": "https://lyj.xm.gov.cn/xypt/list?page=1",
                    "detail": "no row has case_number",
                }
            ],
        }
    ]
    return {
        "listed": one(LISTED, "k-listed"),
        "delisted": one(DELISTED, "k-delisted"),
        "modified": one(MODIFIED, "k-modified"),
        "health": health_message(
            source="xmtravel",
            problem="layout_drift",
            detail="1 page(s): https://lyj.xm.gov.cn/xypt/list?page=1",
            runs=health_runs,
            language=language,
            key="k-health",
            base_url=BASE,
            source_name=source_name,
            list_names=list_names,
        ),
        "digest": digest_message(
            [
                item(LISTED),
                item(context("listed", name="厦门乙旅行社有限公司", entity_id="xmtravel-nabc123")),
                item(MODIFIED),
                item(DELISTED),
            ],
            subscription_id="xm-desk",
            language=language,
            key="k-digest",
            window=(start, start + timedelta(days=1)),
            base_url=BASE,
        ),
    }


def golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1"
    assert actual == path.read_text(encoding="utf-8"), f"{name} differs from its golden file"


@pytest.mark.parametrize("language", ["zh", "en"])
@pytest.mark.parametrize("case", ["listed", "delisted", "modified", "health", "digest"])
def test_messages_match_their_golden_files(case: str, language: str) -> None:
    msg = messages(language)[case]
    golden(f"{case}.{language}.txt", f"Subject: {msg.subject}\nLink: {msg.link}\n\n{msg.text}")


@pytest.mark.parametrize("language", ["zh", "en"])
def test_feed_matches_its_golden_file(language: str) -> None:
    built = messages(language)
    raw = write_atom(
        [built[k] for k in ("modified", "delisted", "listed")],
        feed_id="urn:creditwatch:subscription:xm-desk",
        title="厦门旅行社" if language == "zh" else "Xiamen travel agencies",
        updated=AT + timedelta(days=1),
        links=[("alternate", f"{BASE}/")],
    )
    golden(f"feed.{language}.xml", raw.decode("utf-8"))


def test_messages_say_values_in_words() -> None:
    zh, en = messages("zh"), messages("en")
    assert "罚款金额: 1万元 → 5万元" in zh["modified"].text
    assert "Fine: ¥10,000 → ¥50,000" in en["modified"].text
    assert "处罚种类: 警告 → 警告、罚款" in zh["modified"].text
    assert "公示截止: （空） → 2026-11-20" in zh["modified"].text
    for msg in (*zh.values(), *en.values()):  # machine names never reach the reader
        for code in ("fine_yuan", "penalty_types", "disappeared", "xmtravel.warning:"):
            assert code not in msg.text, (msg.key, code)
    assert "移出原因: 在该名单连续多次健康的抓取中均未再出现" in zh["delisted"].text
    assert "Cause: absent from consecutive healthy runs of the list" in en["delisted"].text
    # the event's time in Beijing, the zone named
    assert "事件时间: 2025-11-22 13:00（北京时间）" in zh["delisted"].text
    assert "Event time: 2025-11-22 13:00 (UTC+8)" in en["delisted"].text
    # lists and sources by their registry names, in the message's language
    assert "名单: 信用公示（警示信息）" in zh["listed"].text
    assert "数据源: 厦门市旅游行业信用信息平台" in zh["listed"].text
    assert "List: Warnings (administrative penalties)" in en["listed"].text
    assert "Source: Xiamen Tourism Credit Information Platform" in en["listed"].text
    assert en["health"].subject == (
        "[creditwatch] source health: Xiamen Tourism Credit Information Platform: "
        "page layout changed"
    )
    # machine fields stay for webhook receivers, with the link and text added
    data = en["modified"].data
    assert data["events"][0]["changes"]["fine_yuan"] == [10000, 50000]
    assert data["link"] == f"{BASE}/entities/uscc-{USCC}" and data["text"] == en["modified"].text


@pytest.mark.parametrize(
    ("amount", "zh", "en"),
    [
        (10000, "1万元", "¥10,000"),
        (50000.0, "5万元", "¥50,000"),
        (25000, "2.5万元", "¥25,000"),
        (8000, "8000元", "¥8,000"),
        (1234.5, "1234.5元", "¥1,234.50"),
        (1200000, "120万元", "¥1,200,000"),
        ("?", "?", "?"),
    ],
)
def test_money_is_said_as_people_say_it(amount: Any, zh: str, en: str) -> None:
    assert money(amount, Texts("alerts", "zh")) == zh
    assert money(amount, Texts("alerts", "en")) == en


def test_local_time_names_its_zone() -> None:
    zh, en = Texts("alerts", "zh"), Texts("alerts", "en")
    assert local_time("2025-11-22T02:00:00+00:00", zh) == "2025-11-22 10:00（北京时间）"
    assert local_time(AT, en) == "2025-11-22 10:00 (UTC+8)"
    assert local_time("2025-11-22T02:00:00", en) == "2025-11-22 10:00 (UTC+8)"  # naive: UTC
    assert local_time(AT, en, "Europe/Berlin") == "2025-11-22 03:00 (UTC+1 Europe/Berlin)"
    assert local_time(AT, en, "Asia/Kolkata") == "2025-11-22 07:30 (UTC+5:30 Asia/Kolkata)"
    assert local_time("not a time", en) == "not a time"


def test_base_url_is_the_subscriptions_then_the_environments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CREDITWATCH_BASE_URL", raising=False)
    assert base_url() == DEFAULT_BASE_URL == "http://127.0.0.1:8000"
    monkeypatch.setenv("CREDITWATCH_BASE_URL", "https://cw.example.org/watch/")
    assert base_url() == "https://cw.example.org/watch"
    assert base_url("https://mirror.example.org") == "https://mirror.example.org"
    monkeypatch.setenv("CREDITWATCH_BASE_URL", "javascript:alert(1)")
    assert base_url() == DEFAULT_BASE_URL  # a broken setting does not stop alerts
    for bad in ("ftp://x.org", "https://", "https://x.org/?a=1", "https://x.org/#f", "http://a b"):
        with pytest.raises(ValueError):
            check_base_url(bad)


def test_subscription_title_and_base_url_are_validated() -> None:
    sub = Subscription(
        id="xm", channels=("feed:/tmp/x.xml",), title="  厦门旅行社 ", base_url="https://x.org/"
    )
    assert sub.title == "厦门旅行社" and sub.base_url == "https://x.org"
    assert Subscription.from_dict(sub.as_dict()) == sub
    assert sub.feed_title == "厦门旅行社"
    assert Subscription(id="xm", channels=("x",)).feed_title == "creditwatch 告警：xm"
    plain = Subscription(id="xm", channels=("x",), language="en", title="  ")
    assert plain.title is None and plain.feed_title == "creditwatch alerts: xm"
    for bad in ({"title": "a\nb"}, {"title": "长" * 121}, {"title": 5}, {"base_url": "x.org"}):
        with pytest.raises(SubscriptionError, match=r"subscription 'xm': (title|base URL)"):
            Subscription.from_dict({"id": "xm", "channels": ["x"], **bad})


# -- feeds over a database -----------------------------------------------------------------------

PERSON_ID = "xmtravel-pdeadbeef"


def outbox_rows(
    subscription: str, channel: str, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "alert_key": alert_key(subscription, channel, ctx["event"]["event_id"]),
            "subscription": subscription,
            "channel": channel,
            "kind": "event",
            "status": "pending",
            "run_id": "xmtravel:3",
            "event_ids": [ctx["event"]["event_id"]],
            "match": {"criterion": "list", "value": "xmtravel.warning", "score": None},
            "payload": frozen(ctx, Match("list", "xmtravel.warning"), "zh"),
            "attempts": 0,
            "created_at": now,
            "due_at": now,
            "next_attempt_at": now,
        }
        for ctx in items
    ]


def feed_items() -> list[dict[str, Any]]:
    """Several events: companies, a person (whose page is pseudonymous while redacting) and a
    hostile name with control characters and markup."""
    person = context(
        "listed",
        name="王立新",
        entity_id=PERSON_ID,
        record={"entity_name": "王立新", "entity_type": "person", "entity_id": PERSON_ID},
        at=AT + timedelta(hours=1),
    )
    hostile = context(
        "listed", name=HOSTILE, entity_id="xmtravel-n0bad", at=AT + timedelta(hours=2)
    )
    return [LISTED, person, hostile, MODIFIED, DELISTED]


def stored_feed(url: str, channel: str) -> Subscription:
    upgrade(url)
    sub = Subscription(
        id="xm-desk",
        channels=(channel,),
        title="厦门旅行社 <监测>",
        base_url="https://mirror.example.org/cw",
        lists=("xmtravel.warning",),
    )
    with get_engine(url).begin() as conn:
        save_subscription(conn, sub.as_dict(), "test", datetime.now(UTC))
        insert_alerts(conn, outbox_rows(sub.id, channel, feed_items()))
    return sub


def entity_href(base: str, entity_id: str) -> str:
    return f"{base}/entities/{quote(entity_id, safe='')}"


def check_feed(raw: bytes, base: str, *, redact: bool = False) -> Any:
    parsed = feedparser.parse(raw)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.feed.title == "厦门旅行社 <监测>"
    items = feed_items()
    assert len(parsed.entries) == len(items)
    wanted = [ctx["event"]["entity_id"] for ctx in reversed(items)]  # newest first
    if redact:
        wanted = [pseudonym(e) if e == PERSON_ID else e for e in wanted]
    for entry, entity_id in zip(parsed.entries, wanted, strict=True):
        links = {link.rel: link.href for link in entry.links}
        assert links["alternate"] == entity_href(base, entity_id), entry.title
        assert links["alternate"].startswith(("http://", "https://"))
        assert links["related"] == URL
    assert b"<script" not in raw and b"\x07" not in raw  # escaped, and XML-valid
    hostile = next(e for e in parsed.entries if "script" in e.title)
    assert hostile.title.endswith("<script>alert(1)</script>旅行社 Bcc: x@example.org &amp;")
    assert "&lt;script&gt;" in hostile.content[0].value  # shown as text, never markup
    assert "\\u0007" in hostile.content[0].value and "\\u202e" in hostile.content[0].value
    return parsed


def test_feed_document_links_every_entry_to_its_entity(db_url: str) -> None:
    sub = stored_feed(db_url, "feed:/dev/null")
    with get_engine(db_url).connect() as conn:
        check_feed(feed_document(conn, sub), "https://mirror.example.org/cw")
        redacted = feed_document(conn, sub, redact=True, base_url=BASE)
    parsed = check_feed(redacted, BASE, redact=True)
    assert b"\xe7\x8e\x8b\xe7\xab\x8b\xe6\x96\xb0" not in redacted  # 王立新
    assert any(e.title.endswith("王**") for e in parsed.entries)


def test_web_feed_links_to_the_configured_or_the_asked_address(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored_feed(db_url, "feed:/dev/null")
    monkeypatch.delenv("CREDITWATCH_BASE_URL", raising=False)
    with TestClient(create_app(database_url=db_url)) as client:
        answer = client.get("/feeds/xm-desk.atom")
        assert answer.status_code == 200
        parsed = check_feed(answer.content, "http://testserver")
        assert {link.rel: link.href for link in parsed.feed.links}["self"] == (
            "http://testserver/feeds/xm-desk.atom"
        )
        monkeypatch.setenv("CREDITWATCH_BASE_URL", "https://public.example.org/")
        check_feed(client.get("/feeds/xm-desk.atom").content, "https://public.example.org")
    with TestClient(create_app(database_url=db_url, redact=True)) as client:
        answer = client.get("/feeds/xm-desk.atom")
        check_feed(answer.content, "https://public.example.org", redact=True)
        # the pseudonymous link is the page a redacting server answers for that person
        assert client.get("/feeds/other.atom").status_code == 404


def test_feed_channel_is_titled_linked_and_world_readable(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "public" / "alerts.xml"
    stored_feed(db_url, f"feed:{path}")
    old = os.umask(0o077)  # a cron job's tight umask must not hide the published file
    try:
        report = send_pending(get_engine(db_url))
    finally:
        os.umask(old)
    assert report["delivered"] == len(feed_items()) and not report["failed"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".alerts.xml.")]
    check_feed(path.read_bytes(), "https://mirror.example.org/cw")


def test_health_alert_links_to_the_list_page() -> None:
    msg = messages("en")["health"]
    assert msg.link == f"{BASE}/lists/xmtravel.warning"
    parsed = feedparser.parse(write_atom([msg], feed_id="urn:x", title="ops", updated=AT, links=[]))
    assert parsed.bozo == 0 and parsed.entries[0].link == f"{BASE}/lists/xmtravel.warning"
    bare = health_message(
        source="xmtravel", problem="failing", detail="3 runs", runs=[], language="zh", key="h"
    )
    assert bare.link == f"{DEFAULT_BASE_URL}/#source-xmtravel"  # no list named: the source


def test_thawed_payload_says_the_same() -> None:
    """What the outbox keeps reads back to the message the golden files hold."""
    rows = outbox_rows("xm-desk", "feed:/dev/null", [MODIFIED])
    again = thawed(rows[0]["payload"])
    msg = event_message(again, subscription_id="xm-desk", language="zh", key="k", base_url=BASE)
    assert "罚款金额: 1万元 → 5万元" in msg.text
