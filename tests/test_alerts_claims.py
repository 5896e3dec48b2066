"""Senders that overlap, hang or meet a configuration slip: two ``alerts send`` at once post
each alert once, a dead sender's claim is taken over, a hanging webhook does not hold up the
other channels, and a missing secret, a redirect or a missing SMTP host keeps alerts queued
until the configuration is fixed (``alerts retry`` revives alerts that failed for good)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from alerts.sender import send_pending
from pipeline.cli import app
from storage.engine import get_engine, upgrade
from storage.models import Alert
from storage.outbox import alert_log, claim_next, insert_alerts
from storage.runs import this_host
from tests.alert_receivers import Applied, smtp_receiver, webhook_receiver

ALERTS = Alert.__table__
SECRET = "s3cret-for-claims"
runner = CliRunner()


def health_alert(n: int, channel: str, subscription: str = "maintainers", **extra: Any) -> dict:
    """An immediate health alert: the smallest row the sender composes a real message from."""
    now = datetime.now(UTC)
    return {
        "alert_key": f"{subscription}-{n:03d}-{hashlib.sha256(channel.encode()).hexdigest()[:8]}",
        "subscription": subscription, "channel": channel, "kind": "health", "status": "pending",
        "run_id": f"xmtravel:{n}",
        "payload": {"source": "xmtravel", "problem": "layout_drift", "detail": f"page {n}",
                    "findings": [], "language": "en"},
        "attempts": 0, "created_at": now, "due_at": now, "next_attempt_at": now, **extra,
    }  # fmt: skip


def enqueue(url: str, rows: list[dict[str, Any]]) -> list[str]:
    upgrade(url)
    with get_engine(url).begin() as conn:
        insert_alerts(conn, rows)
    return [row["alert_key"] for row in rows]


def rows_by_key(url: str) -> dict[str, Any]:
    with get_engine(url).connect() as conn:
        return {r.alert_key: r for r in conn.execute(select(ALERTS).order_by(ALERTS.c.id))}


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Applied]]:
    monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", SECRET)
    with webhook_receiver(SECRET) as receiver:
        yield receiver


def creditwatch(*args: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "from pipeline.cli import app; app()", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


# -- two senders at once -------------------------------------------------------------------


def test_two_senders_in_threads_post_each_alert_once(
    db_url: str, hook: tuple[str, Applied]
) -> None:
    url, hooked = hook
    keys = enqueue(db_url, [health_alert(n, f"webhook:{url}") for n in range(14)])
    hooked.on_delivery = lambda key: time.sleep(0.05)  # both senders are still at work
    engine = get_engine(db_url)
    start = threading.Barrier(2)
    reports: list[Any] = []

    def sender() -> None:
        start.wait()
        reports.append(send_pending(engine))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sum(report["delivered"] for report in reports) == 14
    assert dict(hooked.received) == dict.fromkeys(keys, 1)
    rows = rows_by_key(db_url).values()
    assert {(r.status, r.attempts, r.claimed_by) for r in rows} == {("delivered", 1, None)}


def test_two_alerts_send_processes_at_once_post_each_alert_once(
    db_url: str, hook: tuple[str, Applied]
) -> None:
    url, hooked = hook
    keys = enqueue(db_url, [health_alert(n, f"webhook:{url}") for n in range(14)])
    hooked.on_delivery = lambda key: time.sleep(0.2)  # the second starts before the first ends
    env = {"DATABASE_URL": db_url, "CREDITWATCH_WEBHOOK_SECRET": SECRET}
    senders = [creditwatch("alerts", "send", env=env) for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0].decode() for p in senders]
    assert [p.returncode for p in senders] == [0, 0], outputs
    assert dict(hooked.received) == dict.fromkeys(keys, 1)
    assert {r.status for r in rows_by_key(db_url).values()} == {"delivered"}


# -- claims of senders that died -----------------------------------------------------------


def test_a_dead_senders_claim_is_taken_over_once_its_lease_runs_out(
    db_url: str, hook: tuple[str, Applied]
) -> None:
    url, hooked = hook
    channel = f"webhook:{url}"
    first, *others = enqueue(db_url, [health_alert(n, channel) for n in range(3)])
    now = datetime.now(UTC)
    lease_end = now + timedelta(seconds=2)
    with get_engine(db_url).begin() as conn:  # a sender on another host claims, then dies
        claimed = claim_next(
            conn, channel, "elsewhere:4242:dead", due_by=now, at=now, until=lease_end
        )
    assert claimed is not None and claimed.alert_key == first

    assert send_pending(get_engine(db_url))["delivered"] == 2
    assert set(hooked.received) == set(others)  # the claimed alert waits for its lease
    time.sleep(max(0.0, (lease_end - datetime.now(UTC)).total_seconds()) + 0.2)
    assert send_pending(get_engine(db_url))["delivered"] == 1
    assert dict(hooked.received) == {first: 1, **dict.fromkeys(others, 1)}


def test_a_claim_of_a_sender_process_that_is_gone_is_taken_over_at_once(
    db_url: str, hook: tuple[str, Applied]
) -> None:
    url, hooked = hook
    channel = f"webhook:{url}"
    [key] = enqueue(db_url, [health_alert(1, channel)])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    now = datetime.now(UTC)
    with get_engine(db_url).begin() as conn:
        owner = f"{this_host()}:{gone.pid}:0"
        assert claim_next(conn, channel, owner, due_by=now, at=now, until=now + timedelta(hours=1))
    assert send_pending(get_engine(db_url))["delivered"] == 1
    assert dict(hooked.received) == {key: 1}


# -- one channel hanging -------------------------------------------------------------------


def test_a_hanging_webhook_does_not_hold_up_email_and_feed_alerts(
    db_url: str,
    hook: tuple[str, Applied],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, hooked = hook
    feed_file = tmp_path / "alerts.atom"
    with smtp_receiver() as (port, mailed):
        for name, value in {
            "CREDITWATCH_SMTP_HOST": "127.0.0.1",
            "CREDITWATCH_SMTP_PORT": str(port),
            "CREDITWATCH_SMTP_STARTTLS": "0",
            "CREDITWATCH_WEBHOOK_TIMEOUT": "60",
        }.items():
            monkeypatch.setenv(name, value)
        channels = [f"webhook:{url}", "email:desk@example.org", f"feed:{feed_file}"]
        # The webhook's alerts come first: a sender taking them in turn waits on it.
        keys = enqueue(db_url, [health_alert(n, channels[n % 3]) for n in range(6)])
        release = threading.Event()
        times: dict[str, list[float]] = {"answered": [], "mailed": [], "fed": []}

        def hang(key: str) -> None:
            release.wait(timeout=30)
            times["answered"].append(time.monotonic())

        hooked.on_delivery = hang
        mailed.on_delivery = lambda key: times["mailed"].append(time.monotonic())
        reports: list[Any] = []
        sender = threading.Thread(target=lambda: reports.append(send_pending(get_engine(db_url))))
        sender.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (len(times["mailed"]) == 2 and fed(feed_file)):
            time.sleep(0.05)
        times["fed"].append(time.monotonic())
        done_while_hanging = (len(times["mailed"]), len(fed(feed_file)), len(times["answered"]))
        release.set()
        sender.join(timeout=120)

    assert done_while_hanging == (2, 2, 0)  # e-mail and feed went out while the webhook hung
    assert max(times["mailed"] + times["fed"]) < min(times["answered"])
    assert reports[0]["delivered"] == 6
    assert list(hooked.received) == [keys[0], keys[3]]  # each channel's alerts in order
    assert dict(hooked.received) == {keys[0]: 1, keys[3]: 1}


def fed(path: Path) -> list[Any]:
    """The feed's entries once both are written (an unfinished file reads as none)."""
    if not path.exists():
        return []
    entries = feedparser.parse(path.read_bytes()).entries
    return entries if len(entries) == 2 else []


# -- configuration slips -------------------------------------------------------------------


@dataclass
class Redirecting:
    """A webhook receiver that answers 301 until its operator fixes it, then applies each
    signed delivery once."""

    redirect: bool = True
    applied: Applied = field(default_factory=Applied)


@contextmanager
def redirecting_receiver(secret: str) -> Iterator[tuple[str, Redirecting]]:
    state = Redirecting()
    with webhook_receiver(secret, redirect_while=lambda: state.redirect) as (url, applied):
        state.applied = applied
        yield url, state


@dataclass
class Slip:
    channel: str
    received: Applied
    reason: str
    fix: Callable[[], None]
    delivered_key: Callable[[str], str] = lambda key: key


@pytest.fixture(params=["webhook_secret", "wrong_secret", "redirect", "smtp_host"])
def slip(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Slip]:
    """A channel whose configuration is wrong, and how to put it right."""
    with (
        webhook_receiver(SECRET) as (hook_url, hooked),
        redirecting_receiver(SECRET) as (moved_url, moved),
        smtp_receiver() as (port, mailed),
    ):
        env = {
            "CREDITWATCH_WEBHOOK_SECRET": SECRET,
            "CREDITWATCH_SMTP_HOST": "127.0.0.1",
            "CREDITWATCH_SMTP_PORT": str(port),
            "CREDITWATCH_SMTP_STARTTLS": "0",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        restore = lambda name: lambda: monkeypatch.setenv(name, env[name])  # noqa: E731
        if request.param == "webhook_secret":
            monkeypatch.delenv("CREDITWATCH_WEBHOOK_SECRET")
            yield Slip(
                f"webhook:{hook_url}",
                hooked,
                "CREDITWATCH_WEBHOOK_SECRET is not set",
                restore("CREDITWATCH_WEBHOOK_SECRET"),
            )
        elif request.param == "wrong_secret":  # the receiver answers 401
            monkeypatch.setenv("CREDITWATCH_WEBHOOK_SECRET", "not-the-receivers-secret")
            yield Slip(
                f"webhook:{hook_url}",
                hooked,
                "HTTP 401",
                restore("CREDITWATCH_WEBHOOK_SECRET"),
            )
        elif request.param == "redirect":
            yield Slip(
                f"webhook:{moved_url}",
                moved.applied,
                "redirected to https://hooks.example.org/new-place",
                lambda: setattr(moved, "redirect", False),
            )
        else:
            monkeypatch.delenv("CREDITWATCH_SMTP_HOST")
            yield Slip(
                "email:desk@example.org",
                mailed,
                "CREDITWATCH_SMTP_HOST is not set",
                restore("CREDITWATCH_SMTP_HOST"),
                lambda key: f"<{key}@creditwatch>",
            )


def cli(*args: str, url: str, code: int = 0) -> str:
    result = runner.invoke(app, list(args), env={"DATABASE_URL": url})
    assert result.exit_code == code, result.output
    return result.output


def test_a_configuration_slip_keeps_the_alerts_queued_until_it_is_fixed(
    db_url: str, slip: Slip, tmp_path: Path
) -> None:
    keys = enqueue(db_url, [health_alert(n, slip.channel) for n in range(3)])
    [fine] = enqueue(db_url, [health_alert(9, f"feed:{tmp_path / 'fine.atom'}")])

    for delivered in (1, 0):  # the feed's alert goes out; a slip is no attempt, however often
        said = cli("alerts", "send", url=db_url, code=1)
        assert f"delivered {delivered}," in said and "failed 0" in said
        assert "blocked 3" in said and slip.reason in said
        rows = rows_by_key(db_url)
        assert [(rows[k].status, rows[k].attempts) for k in keys] == [("blocked", 0)] * 3
        assert rows[fine].status == "delivered"
        with get_engine(db_url).connect() as conn:
            logged = {r.alert_key: r.last_error for r in alert_log(conn, "maintainers")}
        assert all(slip.reason in logged[k] for k in keys)
        assert not slip.received.received

    slip.fix()
    assert "delivered 3" in cli("alerts", "send", url=db_url)
    assert "delivered 0" in cli("alerts", "send", url=db_url)
    assert dict(slip.received.received) == {slip.delivered_key(k): 1 for k in keys}
    rows = rows_by_key(db_url)
    assert {(rows[k].status, rows[k].attempts, rows[k].last_error) for k in keys} == {
        ("delivered", 1, None)
    }


def test_alerts_retry_revives_failed_alerts_of_one_subscription(
    db_url: str, hook: tuple[str, Applied]
) -> None:
    url, hooked = hook
    channel = f"webhook:{url}"
    gave_up = {"status": "failed", "attempts": 8, "last_error": "ChannelError: HTTP 503"}
    failed_a = enqueue(db_url, [health_alert(n, channel, "a", **gave_up) for n in range(2)])
    failed_b = enqueue(db_url, [health_alert(n, channel, "b", **gave_up) for n in range(2)])
    [blocked_a] = enqueue(db_url, [health_alert(5, channel, "a", status="blocked")])

    assert "1 alert(s) back to pending" in cli("alerts", "retry", "--subscription", "a", url=db_url)
    rows = rows_by_key(db_url)
    assert rows[blocked_a].status == "pending"
    assert {rows[k].status for k in failed_a + failed_b} == {"failed"}  # only with --failed

    said = cli("alerts", "retry", "--failed", "--subscription", "a", url=db_url)
    assert "2 alert(s) back to pending" in said
    rows = rows_by_key(db_url)
    assert [(rows[k].status, rows[k].attempts) for k in failed_a] == [("pending", 0)] * 2
    assert {rows[k].status for k in failed_b} == {"failed"}

    assert "delivered 3" in cli("alerts", "send", url=db_url)
    assert dict(hooked.received) == dict.fromkeys([*failed_a, blocked_a], 1)
    assert "delivered 0" in cli("alerts", "send", url=db_url)
