"""Alerts end to end: the Xiamen days with three subscriptions, the outbox delivering exactly
once through a sender killed mid-delivery, digests that collapse reverted edits, health
alerts, and the commands (watch, alerts, feed) against receivers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from alerts.outbox import enqueue_run, window
from alerts.sender import send_pending
from pipeline.cli import app
from storage.engine import get_engine, upgrade
from storage.models import Alert
from storage.outbox import insert_alerts, save_subscription
from tests.alert_receivers import smtp_receiver, webhook_receiver
from tests.helpers import DAY1, DAY2, load_cassette, replay, save_cassette

ALERTS = Alert.__table__
SECRET = "s3cret-for-tests"
JIAHE_USCC = "91350213MA028DE74Q"  # 厦门嘉禾酒店有限公司: modified on day 2
EMAIL_TO = "desk@example.org"


def three_subscriptions(hook: str, language: str) -> list[dict[str, Any]]:
    """A USCC, a fuzzy name (the parent of a branch that is listed and delisted on day 2) and
    a keyword in a reason (导游证: one day-2 listing)."""
    webhook = f"webhook:{hook}"
    return [
        {"id": "by-uscc", "uscc": [JIAHE_USCC], "channels": [webhook, f"email:{EMAIL_TO}"]},
        {"id": "by-name", "fuzzy_names": ["厦门鹭江观光旅游股份有限公司"], "channels": [webhook]},
        {"id": "by-keyword", "keywords": ["导游证"], "channels": [webhook]},
    ]


EXPECTED = {
    ("by-uscc", "modified", "厦门嘉禾酒店有限公司", None),
    ("by-name", "listed", "厦门鹭江观光旅游股份有限公司湖里分公司", None),
    ("by-name", "delisted", "厦门鹭江观光旅游股份有限公司湖里分公司", "disappeared"),
    ("by-keyword", "listed", "厦门翔鹭观光旅游有限公司", None),
}


def subscribe(url: str, subscriptions: list[dict[str, Any]], language: str = "zh") -> None:
    upgrade(url)
    with get_engine(url).begin() as conn:
        for data in subscriptions:
            save_subscription(conn, {**data, "language": language}, "test", datetime.now(UTC))


@pytest.fixture
def channel_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with webhook_receiver(SECRET) as (hook, hooked), smtp_receiver() as (port, mailed):
        env = {
            "CREDITWATCH_WEBHOOK_SECRET": SECRET,
            "CREDITWATCH_SMTP_HOST": "127.0.0.1",
            "CREDITWATCH_SMTP_PORT": str(port),
            "CREDITWATCH_SMTP_STARTTLS": "0",
            "CREDITWATCH_SMTP_FROM": "creditwatch@example.org",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield {"hook": hook, "hooked": hooked, "mailed": mailed, "env": env}


def two_days(url: str) -> None:
    replay(url, DAY1, delist_after=1)
    replay(url, DAY2, delist_after=1)


def alert_rows(url: str) -> list[Any]:
    with get_engine(url).connect() as conn:
        return conn.execute(select(ALERTS).order_by(ALERTS.c.id)).all()


@pytest.mark.replay
@pytest.mark.parametrize("language", ["zh", "en"])
def test_three_subscriptions_get_exactly_the_day_two_alerts(
    language: str, sqlite_url: str, channel_env: dict[str, Any]
) -> None:
    subscribe(sqlite_url, three_subscriptions(channel_env["hook"], language), language)
    replay(sqlite_url, DAY1, delist_after=1)
    assert alert_rows(sqlite_url) == []  # the baseline alerts nobody who did not ask
    replay(sqlite_url, DAY2, delist_after=1)
    report = send_pending(get_engine(sqlite_url))
    assert report["delivered"] == len(EXPECTED) + 1 and not report["failed"]

    got = set()
    for body in channel_env["hooked"].applied.values():
        [event] = body["events"]
        assert event["baseline"] is False
        got.add((body["subscription"], event["event"], event["entity_name"], event["cause"]))
    assert got == EXPECTED
    [mail] = channel_env["mailed"].applied.values()
    subject = str(mail["Subject"])
    assert ("信息更正" if language == "zh" else "modified") in subject.lower()
    assert "厦门嘉禾酒店有限公司" in subject
    # A second pass finds nothing left to send.
    assert send_pending(get_engine(sqlite_url))["delivered"] == 0


@pytest.mark.replay
def test_enqueueing_a_run_twice_alerts_nobody_twice(db_url: str) -> None:
    subscribe(db_url, three_subscriptions("http://127.0.0.1:9/hook", "zh"))
    two_days(db_url)
    before = len(alert_rows(db_url))
    assert before == len(EXPECTED) + 1
    with get_engine(db_url).begin() as conn:
        enqueue_run(conn, "xmtravel:2")
    assert len(alert_rows(db_url)) == before


def creditwatch(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    script = "from pipeline.cli import app; app()"
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.replay
def test_a_sender_killed_between_delivery_and_acknowledgement_delivers_exactly_once(
    sqlite_url: str, channel_env: dict[str, Any]
) -> None:
    subscribe(sqlite_url, three_subscriptions(channel_env["hook"], "zh"))
    two_days(sqlite_url)
    env = {**channel_env["env"], "DATABASE_URL": sqlite_url}
    sender: dict[str, subprocess.Popen[bytes]] = {}
    killed: list[str] = []

    def kill_once(receiver: str) -> Any:
        def hook(key: str) -> None:
            if receiver not in [k.split(":", 1)[0] for k in killed]:
                killed.append(f"{receiver}:{key}")
                os.kill(sender["process"].pid, signal.SIGKILL)  # before the receiver answers

        return hook

    channel_env["hooked"].on_delivery = kill_once("webhook")
    channel_env["mailed"].on_delivery = kill_once("smtp")
    codes = []
    for _ in range(4):
        sender["process"] = creditwatch("alerts", "send", env=env)
        codes.append(sender["process"].wait(timeout=120))
        if codes[-1] == 0:
            break
    assert codes == [-signal.SIGKILL, -signal.SIGKILL, 0], sender["process"].stdout
    assert sorted(k.split(":", 1)[0] for k in killed) == ["smtp", "webhook"]

    rows = alert_rows(sqlite_url)
    assert {r.status for r in rows} == {"delivered"}
    webhook_keys = {r.alert_key for r in rows if r.channel.startswith("webhook:")}
    email_ids = {f"<{r.alert_key}@creditwatch>" for r in rows if r.channel.startswith("email:")}
    hooked, mailed = channel_env["hooked"], channel_env["mailed"]
    # Nothing lost, each applied once; the interrupted deliveries arrived twice. Channels
    # deliver in threads of their own, so a delivery another channel had in flight when the
    # process died is sent again too: it may arrive twice, and is still applied once.
    assert set(hooked.applied) == webhook_keys and set(mailed.applied) == email_ids
    interrupted = {k.split(":", 1)[1] for k in killed}
    received = {**hooked.received, **mailed.received}
    assert all(received[k] == 2 for k in interrupted)
    assert all(received[k] in (1, 2) for k in webhook_keys | email_ids)


def digest_item(key: str, event: dict[str, Any], at: datetime, hook: str) -> dict[str, Any]:
    start, end = window(at, "daily", "Asia/Shanghai")
    context = {"event": event, "record": {}, "run_health": "healthy", "fetched_at": None}
    return {
        "alert_key": key, "subscription": "daily", "channel": f"webhook:{hook}",
        "kind": "digest_item", "status": "queued", "run_id": event["run_id"],
        "event_ids": [event["event_id"]], "match": {"criterion": "list", "value": event["list"]},
        "payload": {"context": context, "match": {"criterion": "list", "value": event["list"]},
                    "language": "en"},
        "window_start": start, "due_at": end, "next_attempt_at": end, "attempts": 0,
        "created_at": at,
    }  # fmt: skip


def event(event_id: str, kind: str, key: str, changes: dict[str, Any] | None = None) -> dict:
    return {
        "event_id": event_id, "event": kind, "source": "xmtravel", "list": "xmtravel.warning",
        "record_key": key, "entity_id": key, "entity_name": f"公司{key}", "case_number": key,
        "title": None, "cause": None, "changes": changes, "baseline": False,
        "run_id": f"xmtravel:{event_id}", "at": "2025-11-22T02:00:00+00:00",
        "evidence": {"source_url": "http://example.test/x", "raw_sha256": "0" * 64},
    }  # fmt: skip


def test_a_daily_digest_collapses_an_edit_reverted_inside_its_window(
    sqlite_url: str, channel_env: dict[str, Any]
) -> None:
    upgrade(sqlite_url)
    at = datetime(2025, 11, 22, 2, tzinfo=UTC)
    hook = channel_env["hook"]
    with get_engine(sqlite_url).begin() as conn:
        insert_alerts(
            conn,
            [
                digest_item("a1", event("1", "modified", "A", {"fine_yuan": [1, 5]}), at, hook),
                digest_item("a2", event("2", "modified", "A", {"fine_yuan": [5, 1]}), at, hook),
                digest_item("b1", event("3", "listed", "B"), at, hook),
                digest_item("c1", event("4", "modified", "C", {"fine_yuan": [1, 2]}), at, hook),
            ],
        )
    engine = get_engine(sqlite_url)
    assert send_pending(engine, now=at + timedelta(hours=1))["delivered"] == 0  # window open
    report = send_pending(engine, now=at + timedelta(days=1))
    assert report["digests"] == 1 and report["delivered"] == 1
    [body] = channel_env["hooked"].applied.values()
    assert sorted((e["event"], e["record_key"]) for e in body["events"]) == [
        ("listed", "B"),
        ("modified", "C"),
    ]
    statuses = {r.alert_key: r.status for r in alert_rows(sqlite_url)}
    assert statuses["a1"] == statuses["a2"] == "collapsed"


@pytest.mark.replay
def test_layout_drift_alerts_the_maintainers_only(
    sqlite_url: str, channel_env: dict[str, Any], tmp_path: Path
) -> None:
    hook = channel_env["hook"]
    subscribe(
        sqlite_url,
        [
            {"id": "maintainers", "channels": [f"webhook:{hook}"], "health": True,
             "sources": ["xmtravel"], "events": []},
            {"id": "caac-maintainers", "channels": [f"webhook:{hook}"], "health": True,
             "sources": ["caac"], "events": []},
            {"id": "watchdog", "channels": [f"webhook:{hook}"], "include_baseline": True},
        ],
        "en",
    )  # fmt: skip
    data = load_cassette(DAY1)
    for item in data["interactions"]:
        if item["request"]["uri"].endswith("xygs-main.html"):
            html = item["response"]["body"]["string"].decode("gbk")
            item["response"]["body"]["string"] = html.replace("list_table", "grid").encode("gbk")
    replay(sqlite_url, save_cassette(data, tmp_path / "drift.yaml"))
    health = [r for r in alert_rows(sqlite_url) if r.kind == "health"]
    assert [(r.subscription, r.payload["problem"]) for r in health] == [
        ("maintainers", "layout_drift")
    ]
    send_pending(get_engine(sqlite_url))
    bodies = list(channel_env["hooked"].applied.values())
    assert any("layout_drift" in json.dumps(b, ensure_ascii=False) for b in bodies)

    # Still drifting: the third unhealthy run in a row makes the source failing, said once.
    for _ in range(3):
        replay(sqlite_url, tmp_path / "drift.yaml")
    health = [r for r in alert_rows(sqlite_url) if r.kind == "health"]
    problems = [r.payload["problem"] for r in health]
    assert problems.count("layout_drift") == 4 and problems.count("failing") == 1
    failing = next(r for r in health if r.payload["problem"] == "failing")
    assert failing.run_id == "xmtravel:3" and failing.subscription == "maintainers"


runner = CliRunner()


@pytest.mark.replay
def test_watch_alerts_and_feed_commands(
    tmp_path: Path, channel_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"CREDITWATCH_DATA_DIR": str(tmp_path), "DATABASE_URL": ""}
    monkeypatch.setenv("CREDITWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "")

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, result.output
        return result.output

    hook = f"webhook:{channel_env['hook']}"
    cli("watch", "add", "by-uscc", "--uscc", JIAHE_USCC, "--channel", hook, "--language", "en")
    file = tmp_path / "subs.yml"
    file.write_text(
        f"subscriptions:\n  - id: by-keyword\n    keywords: [导游证]\n    channels: ['{hook}']\n",
        encoding="utf-8",
    )
    cli("watch", "import", str(file))
    cli("watch", "add", "bad", "--uscc", "91350213MA028DE74X", "--channel", hook, code=2)
    listed = cli("watch", "list")
    assert "by-uscc" in listed and "by-keyword" in listed and "bad" not in listed
    url = f"sqlite:///{tmp_path / 'creditwatch.sqlite'}"
    two_days(url)
    assert "delivered 2" in cli("alerts", "send")
    log = cli("alerts", "log")
    assert log.count("delivered") >= 2
    assert "modified 厦门嘉禾酒店有限公司" in log and "listed 厦门翔鹭观光旅游有限公司" in log
    feed_file = tmp_path / "by-uscc.atom"
    cli("feed", "by-uscc", "--out", str(feed_file))
    parsed = feedparser.parse(feed_file.read_bytes())
    assert not parsed.bozo and len(parsed.entries) == 1
    assert "厦门嘉禾酒店有限公司" in parsed.entries[0].title
    assert "sent" in cli("alerts", "test", hook)
    cli("watch", "remove", "by-keyword")
    assert "by-keyword" not in cli("watch", "list")
    with get_engine(url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(ALERTS)).scalar_one() == 2
