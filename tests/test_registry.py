"""The registry's own guarantees: a misspelt key is an error naming the file, the line and the
key meant (a typo must never silently disable a check), and one broken source file is reported
and skipped, never a reason for every other source to stop."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from core import registry
from core.registry import RegistryError, get_source, load_registry, parse_source
from pipeline.cli import app
from pipeline.daemon import ALERTS_JOB, Daemon, DaemonOptions, desired_jobs
from tests.helpers import DAY1

GOOD = """\
id: good
name_zh: 示例
name_en: Good
jurisdiction:
  name: 厦门市
  region_code: "350200"
base_url: http://example.test/
schedule:
  cron: "0 10 * * *"
lists:
  - id: warning
    list_kind: warning
    checks:
      min_rows: 3
"""

# Every block the parser or a spider reads, each with a key that a typo could hide.
FULL: dict[str, Any] = {
    "id": "demo",
    "name_zh": "示例",
    "name_en": "Demo",
    "jurisdiction": {"name": "厦门市", "region_code": "350200"},
    "base_url": "http://example.test/",
    "domain": "tourism",
    "schedule": {"cron": "0 10 * * *", "timezone": "UTC", "jitter": 60, "watchlist": "db:"},
    "politeness": {"download_delay": 1.0, "concurrency": 1, "retry_times": 2},
    "cassette": {"filter_query_parameters": ["_t"]},
    "session": {"portal_url": "http://example.test/", "api_base": "http://api.example.test/"},
    "watch": {"page_size": 10, "max_pages": 20},
    "announcements": {
        "index": "index.html",
        "selectors": {"item": "li", "link": "a", "title": "h1", "body": "div"},
        "recognise": {"listing": ["黑名单"], "removal": ["移出"]},
        "header_labels": ["姓名"],
    },
    "lists": [
        {
            "id": "a",
            "list_kind": "blacklist",
            "publication": "announcements",
            "checks": {"min_rows": 0, "fill_rates": {"entity_name": 1.0}},
            "delisting_guard": {"share": 0.5, "min_count": 3},
        },
        {
            "id": "b",
            "list_kind": "warning",
            "api": {"endpoint": "search", "params": {"tableName": "t"}, "page_size": 10},
        },
        {"id": "c", "list_kind": "penalty", "watch": {"type": "行政处罚"}},
    ],
}


def with_key(path: tuple[str | int, ...], key: str) -> dict[str, Any]:
    """FULL with ``key: 1`` added to the mapping at ``path``."""
    data = copy.deepcopy(FULL)
    node: Any = data
    for step in path:
        node = node[step]
    node[key] = 1
    return data


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture
def sources_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry directory that load_registry() reads instead of the shipped one."""
    directory = tmp_path / "sources"
    directory.mkdir()
    monkeypatch.setenv("CREDITWATCH_SOURCES_DIR", str(directory))
    return directory


def test_full_declaration_parses() -> None:
    source = parse_source(FULL)
    assert source.list("b").id == "demo.b" and source.announcements is not None
    assert source.raw["session"]["api_base"] == "http://api.example.test/"


@pytest.mark.parametrize(
    ("path", "typo", "meant"),
    [
        ((), "schedul", "schedule"),
        ((), "delist_aftr", "delist_after"),
        (("schedule",), "timezon", "timezone"),
        (("politeness",), "download_dealy", "download_delay"),
        (("jurisdiction",), "region_cod", "region_code"),
        (("cassette",), "filter_query_parameter", "filter_query_parameters"),
        (("session",), "min_intervall", "min_interval"),
        (("watch",), "max_page", "max_pages"),
        (("announcements",), "max_index_page", "max_index_pages"),
        (("announcements", "selectors"), "titel", "title"),
        (("announcements", "recognise"), "ignor", "ignore"),
        (("lists", 0), "chekcs", "checks"),
        (("lists", 0, "checks"), "min_row", "min_rows"),
        (("lists", 0, "delisting_guard"), "min_cont", "min_count"),
        (("lists", 1, "api"), "page_sise", "page_size"),
        (("lists", 2, "watch"), "tpye", "type"),
    ],
)
def test_a_misspelt_key_in_any_block_is_an_error(
    path: tuple[str | int, ...], typo: str, meant: str
) -> None:
    with pytest.raises(RegistryError, match=f"{typo}.*did you mean '{meant}'"):
        parse_source(with_key(path, typo))


def test_shipped_sources_all_load_with_every_key_declared() -> None:
    assert registry.broken_sources() == ()
    assert len(load_registry()) == len(list(registry.SHIPPED_SOURCES.glob("*.yml")))


def test_a_typo_names_the_file_its_line_and_the_key_meant(sources_dir: Path) -> None:
    broken = GOOD.replace("id: good", "id: typo").replace("checks:", "chekcs:")
    (sources_dir / "typo.yml").write_text(broken, encoding="utf-8")
    with pytest.raises(RegistryError) as caught:
        get_source("typo")
    message = str(caught.value)
    assert f"typo.yml:{line_of(broken, 'chekcs:')}:" in message
    assert "did you mean 'checks'?" in message


@pytest.mark.parametrize(
    ("edit", "needle", "fragment"),
    [
        (("  jitter: 0", '  jitter: "600"'), "jitter:", "schedule.jitter"),
        (("list_kind: warning", "list_kind: warnings"), "list_kind:", "list_kind"),
        (("min_rows: 3", "min_rows: -1"), "min_rows:", "checks.min_rows"),
        (("name_en: Good\n", ""), "id: broken", "missing 'name_en'"),
    ],
)
def test_a_bad_value_is_reported_at_its_line(
    sources_dir: Path, edit: tuple[str, str], needle: str, fragment: str
) -> None:
    text = GOOD.replace("id: good", "id: broken").replace(
        '  cron: "0 10 * * *"', '  cron: "0 10 * * *"\n  jitter: 0'
    )
    text = text.replace(*edit)
    assert text != GOOD
    (sources_dir / "broken.yml").write_text(text, encoding="utf-8")
    (problem,) = registry.broken_sources()
    assert (problem.path.name, problem.line) == ("broken.yml", line_of(text, needle))
    assert fragment in problem.message


def test_a_broken_file_is_reported_and_the_others_load(sources_dir: Path) -> None:
    broken = GOOD.replace("id: good", "id: broken").replace("list_kind:", "list_knd:")
    (sources_dir / "good.yml").write_text(GOOD, encoding="utf-8")
    (sources_dir / "broken.yml").write_text(broken, encoding="utf-8")
    assert list(load_registry()) == ["good"]
    assert get_source("good").list("warning").checks.min_rows == 3
    (problem,) = registry.broken_sources()
    assert problem.source_id == "broken"
    assert (problem.path.name, problem.line) == ("broken.yml", line_of(broken, "list_knd:"))
    assert "did you mean 'list_kind'?" in problem.message
    assert "missing" not in problem.message  # the key meant is not reported a second time
    assert str(problem).startswith(f"{problem.path}:{problem.line}: ")
    with pytest.raises(RegistryError, match=r"broken\.yml:\d+: .*list_knd"):
        get_source("broken")


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (GOOD.replace("  name: 厦门市", "  name: [厦门市"), 6, "YAML"),
        (GOOD.replace("name_en: Good", "name_en: Good: bad"), 3, "YAML"),
        ("- id: good\n", 1, "mapping"),
        ("", None, "empty"),
        (GOOD + "base_url: http://other.test/\n", GOOD.count("\n") + 1, "'base_url' twice"),
    ],
)
def test_unreadable_yaml_is_reported_with_its_line(
    sources_dir: Path, text: str, line: int | None, fragment: str
) -> None:
    (sources_dir / "good.yml").write_text(GOOD, encoding="utf-8")
    (sources_dir / "bad.yml").write_text(text, encoding="utf-8")
    assert list(load_registry()) == ["good"]
    (problem,) = registry.broken_sources()
    assert (problem.path.name, problem.line, problem.source_id) == ("bad.yml", line, "bad")
    assert fragment in problem.message
    with pytest.raises(RegistryError, match=r"bad\.yml"):
        get_source("bad")


def test_a_duplicate_source_id_is_reported_in_the_copy(sources_dir: Path) -> None:
    # "copy.yml" sorts before "good.yml": the file named after the id still wins.
    (sources_dir / "good.yml").write_text(GOOD, encoding="utf-8")
    (sources_dir / "copy.yml").write_text(GOOD, encoding="utf-8")
    assert list(load_registry()) == ["good"]
    assert get_source("good").raw["id"] == "good"
    (problem,) = registry.broken_sources()
    assert (problem.path.name, problem.line) == ("copy.yml", 1)
    assert "source 'good' is already declared in" in problem.message
    assert "good.yml" in problem.message


def test_a_broken_file_keeps_its_id_from_a_copy(sources_dir: Path) -> None:
    (sources_dir / "good.yml").write_text(GOOD.replace("min_rows: 3", "min_rows: []"), "utf-8")
    (sources_dir / "copy.yml").write_text(GOOD, encoding="utf-8")
    assert load_registry() == {}
    copy, good = registry.broken_sources()
    assert "already declared in" in copy.message and "(which does not load)" in copy.message
    assert good.line == line_of(GOOD, "min_rows:") and "checks.min_rows" in good.message
    with pytest.raises(RegistryError, match=r"good\.yml:\d+: .*min_rows"):
        get_source("good")


def test_cli_lists_the_good_sources_and_reports_the_broken(sources_dir: Path) -> None:
    (sources_dir / "good.yml").write_text(GOOD, encoding="utf-8")
    (sources_dir / "broken.yml").write_text(GOOD.replace("id: good", "id: broken: x"), "utf-8")
    runner = CliRunner()
    env = {"CREDITWATCH_SOURCES_DIR": str(sources_dir)}
    listed = runner.invoke(app, ["sources"], env=env)
    assert listed.exit_code == 1, listed.output
    assert "good.warning" in listed.stdout and "broken" not in listed.stdout
    assert "broken.yml:1:" in listed.stderr
    crawled = runner.invoke(app, ["crawl", "broken", "--replay", str(DAY1)], env=env)
    assert crawled.exit_code == 2
    assert "broken.yml:1:" in crawled.stderr


def test_the_daemon_schedules_the_good_sources_and_logs_the_broken(
    sources_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (sources_dir / "good.yml").write_text(GOOD, encoding="utf-8")
    broken = GOOD.replace("id: good", "id: broken").replace("lists:", "listz:")
    (sources_dir / "broken.yml").write_text(broken, encoding="utf-8")
    daemon = Daemon(DaemonOptions(alerts_every=60), url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with caplog.at_level(logging.INFO, logger="creditwatch.schedule"):
        try:
            items = daemon.start()
        finally:
            daemon.stop()
    assert {item.id for item in items} == {"crawl:good", ALERTS_JOB}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(f"broken.yml:{line_of(GOOD, 'lists:')}:" in e and "listz" in e for e in errors)


def test_a_cron_the_scheduler_rejects_leaves_the_other_sources_scheduled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Five fields pass the registry; hour 25 is only found when the trigger is built.
    good = parse_source(yaml.safe_load(GOOD))
    bad = parse_source(yaml.safe_load(GOOD.replace("id: good", "id: bad").replace("10 *", "25 *")))
    with caplog.at_level(logging.ERROR, logger="creditwatch.schedule"):
        jobs = desired_jobs([bad, good], DaemonOptions(alerts_every=0))
    assert [job.id for job in jobs] == ["crawl:good"]
    assert any("bad" in r.getMessage() and "0 25 * * *" in r.getMessage() for r in caplog.records)


def test_schedule_list_reports_the_sources_it_leaves_out(sources_dir: Path, tmp_path: Path) -> None:
    (sources_dir / "good.yml").write_text(GOOD, encoding="utf-8")
    (sources_dir / "broken.yml").write_text(GOOD.replace("id: good", "id: broken: x"), "utf-8")
    env = {
        "CREDITWATCH_SOURCES_DIR": str(sources_dir),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    listed = CliRunner().invoke(app, ["schedule", "--list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert '"crawl:good"' in listed.stdout and "crawl:broken" not in listed.stdout
    assert "broken.yml:1:" in listed.stderr
