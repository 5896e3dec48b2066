"""The command line as a new user meets it (issue 18, item 7): ``--version``; ``--data-dir``
and the hint on an empty database; ``--json`` on the listings; an unknown ``--source`` (run,
list, subscription) is a usage error; ``changes`` hides baseline listings unless asked;
tables fold long names instead of cutting them; and a crawl that cannot start (no network,
the wrong cassette) says so in one line, without a traceback or a failed run in ``health``.

Most of it needs no crawl (the unit layer): a crawl refused before its child process starts
is exactly what is tested. The rest replays the shipped Xiamen days (``replay``)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner, Result

import pipeline.cli.runs
import pipeline.preflight
from pipeline.cli import app
from pipeline.cli.console import listing
from pipeline.preflight import unreachable
from tests.helpers import DAY1, DAY2, FIXTURES, SHIPPED_SOURCES
from tests.replay_cache import Replay
from tests.test_health_checks import make_runs

runner = CliRunner()
KNOWN = "xmtravel"  # a source every "known: …" list names


def cli(*args: str) -> Result:
    return runner.invoke(app, list(args))


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory in use (``--data-dir`` writes the variable: restored after)."""
    path = tmp_path / "data"
    monkeypatch.setenv("CREDITWATCH_DATA_DIR", str(path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no data/demo here unless a test makes one
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


# -- --version, --data-dir, the empty database ---------------------------------------------


def test_version_is_the_installed_package_s() -> None:
    result = cli("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"creditwatch {version('creditwatch')}"


def test_data_dir_picks_the_database(data_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    result = cli("--data-dir", str(other), "db", "status")
    assert result.exit_code == 0, result.output
    assert str((other / "creditwatch.sqlite").resolve()) in result.stdout
    assert (other / "creditwatch.sqlite").is_file() and not data_dir.exists()


def test_data_dir_with_database_url_is_a_usage_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{data_dir / 'x.sqlite'}")
    result = cli("--data-dir", str(data_dir), "runs")
    assert result.exit_code == 2 and "DATABASE_URL" in result.stderr


@pytest.mark.parametrize(
    "args", [["runs"], ["changes"], ["health", "xmtravel"], ["runs", "--json"]]
)
def test_an_empty_database_gets_a_one_line_hint(data_dir: Path, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 0, result.output
    (hint,) = result.stderr.strip().splitlines()
    assert hint.startswith(f"no runs in {data_dir.resolve()}")
    assert "./scripts/demo.sh" in hint and "--data-dir" in hint
    if "--json" in args:
        assert result.stdout == ""  # the hint stays off the machine's stream


def test_the_hint_names_the_demo_database_when_there_is_one(data_dir: Path) -> None:
    demo = Path("data/demo")
    demo.mkdir(parents=True)
    (demo / "creditwatch.sqlite").touch()
    result = cli("runs")
    assert "pass --data-dir data/demo" in result.stderr


# -- unknown sources, runs, lists, subscriptions -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "--source", "nosuch"],
        ["changes", "--source", "nosuch"],
        ["pending", "list", "--source", "nosuch"],
        ["pending", "release", "--all", "--source", "nosuch"],
        ["health", "nosuch"],
        ["export", "nosuch"],
        ["diff", "nosuch", "--from", "2025-11-21", "--to", "2025-11-22"],
        ["snapshot", "nosuch"],
        ["announcements", "nosuch"],
        ["crawl", "nosuch"],
        ["schedule", "--list", "--source", "nosuch"],
        ["watch", "add", "w", "--channel", "feed:w.atom", "--source", "nosuch"],
    ],
)
def test_an_unknown_source_is_a_usage_error(data_dir: Path, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "nosuch" in line and KNOWN in line, line
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["changes", "--run", "xmtravel:99"], "no run 'xmtravel:99'"),
        (["pending", "list", "--list", "nosuch"], "--list 'nosuch'"),
        (["export", "xmtravel", "--list", "nosuch"], "has no list 'nosuch'"),
        (["alerts", "log", "--subscription", "nosuch"], "no subscription 'nosuch'"),
        (["feed", "nosuch", "--out", "x.atom"], "no subscription 'nosuch'"),
    ],
)
def test_unknown_runs_lists_and_subscriptions_too(
    data_dir: Path, args: list[str], message: str
) -> None:
    result = cli(*args)
    assert result.exit_code == 2 and message in result.stderr, result.output


# -- --json and tables -----------------------------------------------------------------------


def test_listings_print_json_lines(data_dir: Path) -> None:
    make_runs(f"sqlite:///{data_dir / 'creditwatch.sqlite'}", "xmtravel", ["healthy", "failed"])
    runs = json_lines(cli("runs", "--json").stdout)
    assert [(r["run_id"], r["source"], r["state"]) for r in runs] == [
        ("xmtravel:2", "xmtravel", "failed"),
        ("xmtravel:1", "xmtravel", "healthy"),
    ]
    assert runs[0]["started_at"] == "2025-11-23T02:00:00+00:00"
    assert json_lines(cli("runs", "--source", "xmtravel", "--json").stdout) == runs

    added = cli("watch", "add", "w", "--channel", "feed:w.atom", "--source", "xmtravel")
    assert added.exit_code == 0, added.output
    (sub,) = json_lines(cli("watch", "list", "--json").stdout)
    assert sub["id"] == "w" and sub["sources"] == ["xmtravel"] and sub["origin"] == "cli"
    for args in (
        ["alerts", "log", "--json"],
        ["pending", "list", "--json"],
        ["announcements", "mct_tourism", "--json"],
    ):
        result = cli(*args)
        assert result.exit_code == 0 and result.stdout == "", (args, result.output)
    jobs = json_lines(cli("schedule", "--list", "--source", "xmtravel", "--json").stdout)
    assert {job["id"] for job in jobs} >= {"crawl:xmtravel"}


def column(text: str, index: int) -> str:
    """The text of one column of a boxed rich table, its folded lines joined."""
    cells = [line.split("│")[index + 1] for line in text.splitlines() if line.startswith("│")]
    return "".join(cell.strip() for cell in cells)


def test_listing_tables_fold_long_cells_instead_of_cutting_them() -> None:
    name, case = "厦门鹭江观光旅游股份有限公司湖里分公司", "厦文旅执法罚字（2025）第65号"
    table = listing("entity", "case")
    table.add_row(name, case)
    console = Console(width=24, file=io.StringIO(), color_system=None)
    console.print(table)
    text = console.file.getvalue()
    assert "…" not in text
    assert (column(text, 0), column(text, 1)) == (name, case)


# -- crawls that cannot start ----------------------------------------------------------------


@pytest.fixture
def closed_portal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A registry whose xmtravel lives at a port of this host nothing listens on."""
    room = tmp_path / "sources" / "xmtravel"
    room.mkdir(parents=True)
    declared = (SHIPPED_SOURCES / "xmtravel" / "source.yml").read_text(encoding="utf-8")
    address = f"127.0.0.1:{closed_port()}"
    lines = [
        f"base_url: http://{address}/credit_tour/" if line.startswith("base_url:") else line
        for line in declared.splitlines()
    ]
    (room / "source.yml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    monkeypatch.setenv("CREDITWATCH_SOURCES_DIR", str(room.parent))
    no_proxies(monkeypatch)
    return address


def test_a_live_crawl_that_cannot_connect_says_so_in_one_line(
    data_dir: Path, closed_portal: str
) -> None:
    started = time.monotonic()
    result = cli("crawl", "xmtravel")
    assert time.monotonic() - started < 30
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "cannot reach 127.0.0.1: connection refused" in line, line
    assert "use --replay CASSETTE, e.g. --replay " in line and "xmtravel-day1.yaml" in line
    assert "Traceback" not in result.output
    # The run is recorded as the failed crawl it was, its one fetch named.
    (report,) = json.loads(cli("health", "xmtravel", "--json").stdout)["sources"]
    (run,) = report["runs"]
    assert run["state"] == "failed" and run["outcomes"] == {"http_error": 1}
    assert run["error"].startswith("unreachable: cannot reach 127.0.0.1")
    assert {lst["health"] for lst in run["lists"]} == {"failed"}


def test_unreachable_names_the_first_hop_and_why(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxies(monkeypatch)
    port = closed_port()
    refused = unreachable(f"http://127.0.0.1:{port}/")
    assert refused is not None and refused.outcome == "http_error"
    assert (
        refused.detail == f"unreachable: cannot reach 127.0.0.1: connection refused (port {port})"
    )

    with socket.socket() as server:  # something listening: reachable, nothing sent
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert unreachable(f"http://127.0.0.1:{server.getsockname()[1]}/x") is None

    def no_name(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(pipeline.preflight.socket, "getaddrinfo", no_name)
    dns = unreachable("http://credit.example.invalid:10345/credit_tour/")
    assert dns is not None and dns.host == "credit.example.invalid"
    assert dns.reason == "DNS lookup failed (Name or service not known)"

    def slow(*args: object, **kwargs: object) -> None:
        time.sleep(3)

    monkeypatch.setattr(pipeline.preflight.socket, "getaddrinfo", slow)
    started = time.monotonic()
    late = unreachable("https://credit.example.invalid/", timeout=0.2)
    assert time.monotonic() - started < 2
    assert late is not None and late.outcome == "timeout"


def test_a_proxy_is_the_first_hop(monkeypatch: pytest.MonkeyPatch) -> None:
    no_proxies(monkeypatch)
    port = closed_port()
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    down = unreachable("http://credit.xmtravel.gov.cn:10345/credit_tour/")
    assert down is not None and down.host == f"the proxy 127.0.0.1:{port}"


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("hello: world\n", "is not a vcrpy cassette"),
        ("a: [\n", "is not a cassette (not YAML"),
        ("version: 1\ninteractions: []\n", "is empty"),
        (None, "has no request to credit.xmtravel.gov.cn"),  # another portal's cassette
    ],
)
def test_a_wrong_cassette_is_refused_before_any_run(
    data_dir: Path, tmp_path: Path, content: str | None, message: str
) -> None:
    cassette = FIXTURES / "mohrss" / "mohrss-day1.yaml"
    if content is not None:
        cassette = tmp_path / "wrong.yaml"
        cassette.write_text(content, encoding="utf-8")
    result = cli("crawl", "xmtravel", "--replay", str(cassette))
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert message in line, line
    assert json_lines(cli("runs", "--json").stdout) == []  # no run made, none to count


@pytest.mark.replay
def test_a_cassette_that_answers_nothing_makes_a_void_run(tmp_path: Path) -> None:
    """Same host, other requests (another source of the portal, or a stale recording): the
    replay runs, every list request misses, and the run ends ``void``: one line, the
    Scrapy log held back, and ``health`` does not count it."""
    data = yaml.safe_load(DAY1.read_text(encoding="utf-8"))
    robots = [i for i in data["interactions"] if i["request"]["uri"].endswith("/robots.txt")]
    other = {**robots[0], "request": {**robots[0]["request"]}}
    other["request"]["uri"] = "http://credit.xmtravel.gov.cn:10345/credit_tour/elsewhere.html"
    cassette = write_yaml(tmp_path / "stale.yaml", {**data, "interactions": [*robots, other]})
    env = {**os.environ, "CREDITWATCH_DATA_DIR": str(tmp_path / "data")}
    env.pop("DATABASE_URL", None)
    command = [sys.executable, "-m", "pipeline.cli"]
    done = subprocess.run(
        [*command, "crawl", "xmtravel", "--replay", str(cassette)],
        env=env, cwd=FIXTURES.parent, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()  # the child's log is not shown
    assert "answered none of the run's" in line and "is void" in line, line
    health = subprocess.run(
        [*command, "health", "xmtravel", "--json"],
        env=env, cwd=FIXTURES.parent, capture_output=True, text=True, check=True,
    )  # fmt: skip
    (report,) = json.loads(health.stdout)["sources"]
    assert report["state"] == "never_run" and report["unhealthy_streak"] == 0
    assert [run["state"] for run in report["runs"]] == ["void"]


# -- changes: baseline hidden, on the replayed days ------------------------------------------


@pytest.fixture
def two_days(
    replayed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """Xiamen day 1 and day 2 in the data directory in use; every event, baseline too."""
    monkeypatch.setenv("CREDITWATCH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    replayed(f"sqlite:///{tmp_path / 'creditwatch.sqlite'}", Replay(DAY1), Replay(DAY2))
    return json_lines(cli("changes", "--json", "--include-baseline").stdout)


def test_changes_hides_the_baseline_and_other_listings_give_json(
    two_days: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    baseline = [e for e in two_days if e["baseline"]]
    news = [e for e in two_days if not e["baseline"]]
    assert baseline and news and all(e["event"] == "listed" for e in baseline)

    shown = cli("changes", "--json")
    assert json_lines(shown.stdout) == news
    assert f"{len(baseline)} baseline listing(s) hidden" in shown.stderr

    # The table, in a narrow terminal: folded, never cut, and a footer with the count.
    narrow = Console(width=72, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(pipeline.cli.runs, "out", narrow)
    assert cli("changes").exit_code == 0
    text = narrow.file.getvalue()
    assert "…" not in text
    assert column(text, 3) == "".join(e["entity_name"] for e in news)
    assert column(text, 4) == "".join(e["case_number"] or e["title"] for e in news)
    assert text.rstrip().endswith(
        f"{len(news)} event(s); {len(baseline)} baseline listing(s) hidden: "
        "--include-baseline shows them"
    )

    # Other listings of the same days, as JSON Lines.
    entity = json_lines(cli("entity", "91350213MA028DE74Q", "--json").stdout)
    assert entity and {line["entity"] for line in entity} == {"uscc:91350213MA028DE74Q"}
    diff = cli("diff", "xmtravel", "--from", "2025-11-21", "--to", "2025-11-22", "--json")
    changes = {row["change"] for row in json_lines(diff.stdout)}
    assert diff.exit_code == 0 and changes and changes <= {"added", "removed", "changed"}
    runs = json_lines(cli("runs", "--json").stdout)
    assert [run["run_id"] for run in runs] == ["xmtravel:2", "xmtravel:1"]


def test_watch_add_sets_the_feed_title_and_the_base_url_of_links(
    data_dir: Path, tmp_path: Path
) -> None:
    added = cli(
        *("watch", "add", "jiahe", "--name", "厦门嘉禾酒店有限公司"),
        *("--channel", f"feed:{tmp_path / 'jiahe.atom'}"),
        *("--title", "嘉禾酒店 监测", "--base-url", "https://watch.example.org/cw/"),
    )
    assert added.exit_code == 0, added.output
    listed = json_lines(cli("watch", "list", "--json").stdout)
    assert [(s["id"], s.get("title"), s.get("base_url")) for s in listed] == [
        ("jiahe", "嘉禾酒店 监测", "https://watch.example.org/cw")
    ]
    out = tmp_path / "feed.atom"
    assert cli("feed", "jiahe", "--out", str(out)).exit_code == 0
    assert "<title>嘉禾酒店 监测</title>" in out.read_text(encoding="utf-8")
    assert oct(out.stat().st_mode & 0o777) == "0o644"
    bad = cli("watch", "add", "x", "--channel", "feed:x.atom", "--base-url", "ftp://host")
    assert bad.exit_code != 0 and "base URL" in bad.output
