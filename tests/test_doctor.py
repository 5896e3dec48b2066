"""`creditwatch doctor` (issue 20, item 4): each check on a healthy database (Xiamen day 1
replayed) and on each broken state, and the command's exit status and ``--json``."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from core.registry import SOURCES_DIR_ENV, get_source
from pipeline.cli import app
from pipeline.doctor import (
    FAIL,
    OK,
    WARN,
    Finding,
    check_browser,
    check_data_dir,
    check_database,
    check_disk_space,
    check_registry,
    check_sources,
    check_subscriptions,
    diagnose,
    failed,
    stale_since,
)
from storage.engine import get_engine, upgrade
from tests.helpers import DAY1, SHIPPED_SOURCES
from tests.replay_cache import Replay

pytestmark = pytest.mark.replay

runner = CliRunner()


def statuses(findings: list[Finding], check: str) -> list[str]:
    return [f.status for f in findings if f.check == check]


@pytest.fixture
def healthy(tmp_path: Path, replayed) -> str:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'data' / 'creditwatch.sqlite'}"
    (tmp_path / "data").mkdir()
    replayed(url, Replay(DAY1, delist_after=1))
    return url


def _run_started(url: str) -> datetime:
    with get_engine(url).connect() as conn:
        started = conn.execute(text("select max(started_at) from runs")).scalar_one()
    value = datetime.fromisoformat(started) if isinstance(started, str) else started
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def test_a_healthy_database_passes_every_check(healthy: str) -> None:
    now = _run_started(healthy) + timedelta(hours=1)
    findings = diagnose(healthy, now=now, launch_browser=False)
    assert not failed(findings), [f for f in findings if f.status == FAIL]
    assert statuses(findings, "data dir") == [OK]
    assert statuses(findings, "database") == [OK]
    assert statuses(findings, "migrations") == [OK]
    assert statuses(findings, "registry") == [OK]
    assert statuses(findings, "subscriptions") == [OK]
    xm = [f for f in findings if f.subject == "xmtravel"]
    assert [f.status for f in xm] == [OK] and "healthy" in xm[0].problem
    never = [f for f in findings if f.check == "source" and f.problem == "never run"]
    assert never and all(f.status == WARN and f.fix.startswith("creditwatch crawl") for f in never)


def test_replayed_runs_are_never_stale(healthy: str) -> None:
    """A replay carries its cassette's dates: only live runs say whether the schedule runs."""
    started = _run_started(healthy)
    with get_engine(healthy).connect() as conn:
        years_on = check_sources(conn, [get_source("xmtravel")], started + timedelta(days=900))
    assert [f.status for f in years_on] == [OK] and "replayed" in years_on[0].problem


def test_a_source_not_run_for_two_scheduled_times_is_stale(healthy: str) -> None:
    started = _run_started(healthy)
    with get_engine(healthy).begin() as conn:
        conn.execute(text("update runs set mode = 'live' where source = 'xmtravel'"))
    with get_engine(healthy).connect() as conn:
        soon = check_sources(conn, [get_source("xmtravel")], started + timedelta(hours=20))
        late = check_sources(conn, [get_source("xmtravel")], started + timedelta(days=3))
    assert [f.status for f in soon] == [OK]
    assert [f.status for f in late] == [WARN] and "stale" in late[0].problem
    assert "creditwatch crawl xmtravel" in late[0].fix


def test_stale_since_follows_the_cron() -> None:
    source = get_source("xmtravel")  # 0 10 * * * Asia/Shanghai, jitter 900 s
    last = datetime(2025, 11, 21, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    assert stale_since(source, last, datetime(2025, 11, 22, 3, 0, tzinfo=UTC)) is None
    missed = stale_since(source, last, datetime(2025, 11, 24, tzinfo=UTC))
    assert missed == datetime(2025, 11, 23, 2, 0, tzinfo=UTC) + timedelta(seconds=source.jitter)


def test_a_failing_and_an_unhealthy_source(healthy: str) -> None:
    with get_engine(healthy).begin() as conn:
        conn.execute(text("update runs set state = 'failed' where source = 'xmtravel'"))
    source = get_source("xmtravel")
    with get_engine(healthy).connect() as conn:
        findings = check_sources(conn, [source], datetime.now(UTC))
    expected = FAIL if source.failing_after <= 1 else WARN
    assert [f.status for f in findings] == [expected]
    assert findings[0].fix == "creditwatch health xmtravel"


def test_damaged_databases_fail(tmp_path: Path, healthy: str) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x13" * 8192)
    findings, readable = check_database(f"sqlite:///{garbage}")
    assert [f.status for f in findings] == [FAIL] and not readable
    assert "damaged" in findings[0].problem
    path = Path(healthy.removeprefix("sqlite:///"))
    get_engine(healthy).dispose()
    truncated = tmp_path / "truncated.sqlite"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    findings, readable = check_database(f"sqlite:///{truncated}")
    assert [f.status for f in findings] == [FAIL] and not readable


def test_foreign_and_future_databases_fail(tmp_path: Path, healthy: str) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("create table runs (what text)")
    findings, _ = check_database(f"sqlite:///{other}")
    assert [f.status for f in findings] == [FAIL]
    assert "not a creditwatch database" in findings[0].problem
    with get_engine(healthy).begin() as conn:
        conn.execute(text("update alembic_version set version_num = 'zzz9'"))
    findings, readable = check_database(healthy)
    assert [f.status for f in findings] == [FAIL] and not readable
    assert "newer creditwatch" in findings[0].problem


def test_pending_migrations_warn_with_the_upgrade_command(healthy: str) -> None:
    from alembic import command

    from storage.engine import alembic_config

    command.downgrade(alembic_config(healthy), "-1")
    findings, readable = check_database(healthy)
    assert statuses(findings, "migrations") == [WARN] and not readable
    assert [f.fix for f in findings if f.check == "migrations"] == ["creditwatch db upgrade"]
    upgrade(healthy)
    findings, readable = check_database(healthy)
    assert statuses(findings, "migrations") == [OK] and readable


def test_a_server_that_does_not_answer_fails() -> None:
    findings, readable = check_database("postgresql+psycopg://cw@127.0.0.1:9/cw")
    assert [f.status for f in findings] == [FAIL] and not readable
    assert "cannot connect" in findings[0].problem


def test_data_dir_states(tmp_path: Path) -> None:
    missing = check_data_dir(f"sqlite:///{tmp_path / 'none' / 'creditwatch.sqlite'}")
    assert [f.status for f in missing] == [WARN]
    (tmp_path / "file").write_text("x")
    not_dir = check_data_dir(f"sqlite:///{tmp_path / 'file' / 'creditwatch.sqlite'}")
    assert [f.status for f in not_dir] == [FAIL] and "not a directory" in not_dir[0].problem
    fine = check_data_dir(f"sqlite:///{tmp_path / 'creditwatch.sqlite'}")
    assert [f.status for f in fine] == [OK]


def test_disk_space_thresholds(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'creditwatch.sqlite'}"
    assert [f.status for f in check_disk_space(url)] in ([OK], [WARN], [FAIL])
    huge = 2**62
    assert [f.status for f in check_disk_space(url, fail_below=huge, warn_below=huge)] == [FAIL]
    assert [f.status for f in check_disk_space(url, fail_below=0, warn_below=huge)] == [WARN]
    assert [f.status for f in check_disk_space(url, fail_below=0, warn_below=0)] == [OK]


def test_browser_missing_is_a_warning(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CREDITWATCH_CHROMIUM", str(tmp_path / "no-chromium"))
    findings = check_browser(launch=True)
    assert [f.status for f in findings] == [WARN] and "apt-get install" in findings[0].fix


def test_broken_registry_fails_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = tmp_path / "sources"
    (sources / "xmtravel").mkdir(parents=True)
    text_ = (SHIPPED_SOURCES / "xmtravel" / "source.yml").read_text(encoding="utf-8")
    (sources / "xmtravel" / "source.yml").write_text(text_ + "colour: blue\n", encoding="utf-8")
    (sources / "empty_room").mkdir()
    monkeypatch.setenv(SOURCES_DIR_ENV, str(sources))
    findings, loaded = check_registry()
    assert [f.status for f in findings] == [FAIL, FAIL] and loaded == []
    assert {f.subject for f in findings} == {"xmtravel", "empty_room"}
    assert any("colour" in f.problem for f in findings)


def test_a_stored_subscription_that_no_longer_reads_fails(healthy: str) -> None:
    with get_engine(healthy).begin() as conn:
        conn.execute(
            text(
                "insert into subscriptions (id, data, origin, updated_at) values "
                "('bad', :data, 'test', '2025-01-01 00:00:00')"
            ),
            {"data": json.dumps({"id": "bad", "channels": ["pigeon:coop"], "names": ["x"]})},
        )
    with get_engine(healthy).connect() as conn:
        findings = check_subscriptions(conn)
    assert [(f.status, f.subject) for f in findings] == [(FAIL, "bad")]
    assert findings[0].fix.startswith("creditwatch watch remove bad")


def test_the_command_exit_status_and_json(
    healthy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("CREDITWATCH_DATA_DIR", str(tmp_path / "data"))
    good = runner.invoke(app, ["doctor", "--json", "--no-launch"])
    document = json.loads(good.stdout)
    assert good.exit_code == (1 if not document["ok"] else 0)
    assert {"check", "status", "problem", "fix", "subject"} <= set(document["findings"][0])
    assert not [f for f in document["findings"] if f["status"] == FAIL], document
    get_engine(healthy).dispose()
    Path(healthy.removeprefix("sqlite:///")).write_bytes(b"garbage" * 1000)
    bad = runner.invoke(app, ["doctor", "--no-launch", "--quiet"])
    assert bad.exit_code == 1
    assert "FAIL" in bad.stdout and "damaged" in bad.stdout
