"""Shared fixtures: a fresh database per test on SQLite and, where it answers, PostgreSQL;
crawls in replay mode with the network guarded in every process; replayed databases built
once per session (``replayed``); and the test layers (markers ``unit``, ``replay``,
``browser``, ``postgres``), see ``pytest_collection_modifyitems``."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
NETGUARD = Path(__file__).resolve().parent / "netguard"
sys.path.insert(0, str(NETGUARD))

import guard  # noqa: E402

from tests.cassette_support import playwright_browser_available  # noqa: E402
from tests.replay_cache import ReplayCache, Replayed  # noqa: E402

pytest_plugins = ["tests.faults.tally"]

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


@pytest.fixture(scope="session")
def replay_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayCache]:
    cache = ReplayCache(tmp_path_factory.mktemp("replayed"), PG_ADMIN_URL)
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def replayed(replay_cache: ReplayCache) -> Replayed:
    """``replayed(url, Replay(DAY1, delist_after=1), ...)``: the empty database at ``url`` as
    those replays would leave it (run ids returned), copied from a template built once."""
    return replay_cache.into


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


# -- layers ---------------------------------------------------------------------------------------

LAYERS = ("unit", "replay", "browser")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give every test exactly one layer, and ``postgres`` where it runs on PostgreSQL.

    ``browser`` (Chromium) and ``replay`` (crawls in child processes, replayed databases) are
    declared in the test files (``pytestmark`` or per test); a test that asks for
    ``replayed`` is ``replay``; every other test is ``unit``, and a unit test that starts a
    crawl fails (see ``_unit_tests_do_not_crawl``). A test given two layers is an error."""
    problems = []
    chromium: tuple[bool, str] | None = None
    for item in items:
        if item.get_closest_marker("browser") is not None:
            if chromium is None:
                chromium = playwright_browser_available()
                if not chromium[0]:
                    print(f"\nskipping the browser tests: {chromium[1]}")
            if not chromium[0]:
                item.add_marker(pytest.mark.skip(reason=chromium[1]))
        names = getattr(item, "fixturenames", ())
        if "replayed" in names and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.replay)
        layers = [layer for layer in LAYERS if item.get_closest_marker(layer) is not None]
        if not layers:
            item.add_marker(pytest.mark.unit)
            layers = ["unit"]
        if len(layers) != 1:
            problems.append(f"{item.nodeid}: layers {layers}, expected exactly one")
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db_url") == "postgresql":
            item.add_marker(pytest.mark.postgres)
    if problems:
        raise pytest.UsageError("tests with a wrong layer:\n" + "\n".join(problems))


@pytest.fixture(autouse=True)
def _unit_tests_do_not_crawl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A ``unit`` test that starts a crawl (pipeline.run's child or tests.cassette_crawl)
    fails, so the layer marks stay true: mark such a test ``replay``."""
    if request.node.get_closest_marker("unit") is None:
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(
            f"{request.node.nodeid} is marked unit but starts a crawl: mark it "
            "pytest.mark.replay (or browser)"
        )

    import pipeline.run
    import tests.cassette_support

    no_crawls = SimpleNamespace(Popen=refuse, run=refuse)
    monkeypatch.setattr(pipeline.run, "subprocess", no_crawls)
    monkeypatch.setattr(tests.cassette_support, "subprocess", no_crawls)


@pytest.fixture
def replay_dir(tmp_path: Path) -> Path:
    """A replay directory for the scheduler and workers: Xiamen's day 1 as ``xmtravel.yaml``."""
    folder = tmp_path / "cassettes"
    folder.mkdir()
    (folder / "xmtravel.yaml").symlink_to(FIXTURES / "xmtravel" / "xmtravel-day1.yaml")
    return folder
