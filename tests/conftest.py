"""Shared fixtures: a fresh database per test on SQLite and, where it answers, PostgreSQL;
crawls in replay mode with the network guarded in every process."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
NETGUARD = Path(__file__).resolve().parent / "netguard"
sys.path.insert(0, str(NETGUARD))

import guard  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "CREDITWATCH_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any reason it does not answer is a reason to skip
        return f"PostgreSQL at {PG_ADMIN_URL} does not answer: {type(exc).__name__}: {exc}"
    return None


PG_PROBLEM = _postgres_problem()


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [f"postgresql: {PG_PROBLEM or 'answering at ' + PG_ADMIN_URL}"]


def pytest_terminal_summary(terminalreporter: object) -> None:
    if PG_PROBLEM:
        terminalreporter.write_line(f"PostgreSQL tests skipped: {PG_PROBLEM}")  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'creditwatch.sqlite'}"
        return
    if PG_PROBLEM:
        pytest.skip(PG_PROBLEM)
    schema = f"cw_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    sep = "&" if "?" in PG_ADMIN_URL else "?"
    url = f"{PG_ADMIN_URL}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        from storage.engine import get_engine

        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'creditwatch.sqlite'}"


@pytest.fixture
def netguard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Guard this process and every child: non-loopback network use is refused and logged."""
    log = tmp_path / "network-attempts.log"
    log.touch()
    monkeypatch.setenv("CW_NETGUARD_LOG", str(log))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(NETGUARD), os.environ.get("PYTHONPATH", "")])
    )
    guard.install(str(log), monkeypatch.setattr)
    return log
