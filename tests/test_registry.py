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
from core.items import RawEntry
from core.normalise import normalise_entry
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
    "spider": "announcements",
    "labels": {"名称": "title"},
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


def declare(sources_dir: Path, room: str, text: str) -> Path:
    """Write ``text`` as the declaration of the room ``room``: ``<dir>/<room>/source.yml``."""
    path = sources_dir / room / "source.yml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


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
    assert len(load_registry()) == len(list(registry.SHIPPED_SOURCES.glob("*/source.yml")))


def test_a_typo_names_the_file_its_line_and_the_key_meant(sources_dir: Path) -> None:
    broken = GOOD.replace("id: good", "id: typo").replace("checks:", "chekcs:")
    declare(sources_dir, "typo", broken)
    with pytest.raises(RegistryError) as caught:
        get_source("typo")
    message = str(caught.value)
    assert f"typo/source.yml:{line_of(broken, 'chekcs:')}:" in message
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
    declare(sources_dir, "broken", text)
    (problem,) = registry.broken_sources()
    assert (problem.path, problem.line) == (
        sources_dir / "broken" / "source.yml",
        line_of(text, needle),
    )
    assert fragment in problem.message


def test_a_broken_file_is_reported_and_the_others_load(sources_dir: Path) -> None:
    broken = GOOD.replace("id: good", "id: broken").replace("list_kind:", "list_knd:")
    declare(sources_dir, "good", GOOD)
    declare(sources_dir, "broken", broken)
    assert list(load_registry()) == ["good"]
    assert get_source("good").list("warning").checks.min_rows == 3
    (problem,) = registry.broken_sources()
    assert problem.source_id == "broken"
    assert (problem.path, problem.line) == (
        sources_dir / "broken" / "source.yml",
        line_of(broken, "list_knd:"),
    )
    assert "did you mean 'list_kind'?" in problem.message
    assert "missing" not in problem.message  # the key meant is not reported a second time
    assert str(problem).startswith(f"{problem.path}:{problem.line}: ")
    with pytest.raises(RegistryError, match=r"broken/source\.yml:\d+: .*list_knd"):
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
    declare(sources_dir, "good", GOOD)
    declare(sources_dir, "bad", text)
    assert list(load_registry()) == ["good"]
    (problem,) = registry.broken_sources()
    assert (problem.path, problem.line, problem.source_id) == (
        sources_dir / "bad" / "source.yml",
        line,
        "bad",
    )
    assert fragment in problem.message
    with pytest.raises(RegistryError, match=r"bad/source\.yml"):
        get_source("bad")


def test_a_duplicate_source_id_is_reported_in_the_copy(sources_dir: Path) -> None:
    # The room "copy" sorts before "good": the room named after the id still wins.
    declare(sources_dir, "good", GOOD)
    declare(sources_dir, "copy", GOOD)
    assert list(load_registry()) == ["good"]
    assert get_source("good").raw["id"] == "good"
    (problem,) = registry.broken_sources()
    assert (problem.path, problem.line) == (sources_dir / "copy" / "source.yml", 1)
    assert "source 'good' is already declared in" in problem.message
    assert "good/source.yml" in problem.message


def test_a_broken_file_keeps_its_id_from_a_copy(sources_dir: Path) -> None:
    declare(sources_dir, "good", GOOD.replace("min_rows: 3", "min_rows: []"))
    declare(sources_dir, "copy", GOOD)
    assert load_registry() == {}
    copy, good = registry.broken_sources()
    assert "already declared in" in copy.message and "(which does not load)" in copy.message
    assert good.line == line_of(GOOD, "min_rows:") and "checks.min_rows" in good.message
    with pytest.raises(RegistryError, match=r"good/source\.yml:\d+: .*min_rows"):
        get_source("good")


def test_cli_lists_the_good_sources_and_reports_the_broken(sources_dir: Path) -> None:
    declare(sources_dir, "good", GOOD)
    declare(sources_dir, "broken", GOOD.replace("id: good", "id: broken: x"))
    runner = CliRunner()
    env = {"CREDITWATCH_SOURCES_DIR": str(sources_dir)}
    listed = runner.invoke(app, ["sources"], env=env)
    assert listed.exit_code == 1, listed.output
    assert "good.warning" in listed.stdout and "broken" not in listed.stdout
    assert "broken/source.yml:1:" in listed.stderr
    crawled = runner.invoke(app, ["crawl", "broken", "--replay", str(DAY1)], env=env)
    assert crawled.exit_code == 2
    assert "broken/source.yml:1:" in crawled.stderr


def test_the_daemon_schedules_the_good_sources_and_logs_the_broken(
    sources_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    declare(sources_dir, "good", GOOD)
    broken = GOOD.replace("id: good", "id: broken").replace("lists:", "listz:")
    declare(sources_dir, "broken", broken)
    daemon = Daemon(DaemonOptions(alerts_every=60), url=f"sqlite:///{tmp_path / 'db.sqlite'}")
    with caplog.at_level(logging.INFO, logger="creditwatch.schedule"):
        try:
            items = daemon.start()
        finally:
            daemon.stop()
    assert {item.id for item in items} == {"crawl:good", ALERTS_JOB}
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        f"broken/source.yml:{line_of(GOOD, 'lists:')}:" in e and "listz" in e for e in errors
    )


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
    declare(sources_dir, "good", GOOD)
    declare(sources_dir, "broken", GOOD.replace("id: good", "id: broken: x"))
    env = {
        "CREDITWATCH_SOURCES_DIR": str(sources_dir),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
    }
    listed = CliRunner().invoke(app, ["schedule", "--list", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert '"crawl:good"' in listed.stdout and "crawl:broken" not in listed.stdout
    assert "broken/source.yml:1:" in listed.stderr


def test_a_declaration_outside_a_room_is_reported(sources_dir: Path) -> None:
    """The old layout (``<id>.yml``) would otherwise be silently ignored."""
    declare(sources_dir, "good", GOOD)
    (sources_dir / "loose.yml").write_text(GOOD.replace("id: good", "id: loose"), "utf-8")
    (sources_dir / "empty").mkdir()
    (sources_dir / "__pycache__").mkdir()  # not a room
    assert list(load_registry()) == ["good"]
    loose, empty = sorted(registry.broken_sources(), key=lambda b: b.source_id, reverse=True)
    assert (loose.source_id, loose.path) == ("loose", sources_dir / "loose.yml")
    assert "move it to loose/source.yml" in loose.message
    assert (empty.source_id, empty.path) == ("empty", sources_dir / "empty" / "source.yml")
    assert "has no source.yml" in empty.message
    with pytest.raises(RegistryError, match=r"loose\.yml: .*loose/source\.yml"):
        get_source("loose")


def test_a_labels_block_maps_a_portal_label_for_its_source_only(sources_dir: Path) -> None:
    text = GOOD + "labels:\n  荣誉名称: extra\n  名称: title\n"
    declare(sources_dir, "good", text)
    source = get_source("good")
    assert source.label_overrides == {"荣誉名称": "extra", "名称": "title"}
    entry = RawEntry(
        source="good",
        list="good.warning",
        source_url="u",
        raw_sha256="s",
        fields={"单位名称": "厦门某某旅行社有限公司", "名称": "诚信旅行社", "荣誉名称": "x"},
    )
    options: dict[str, Any] = {"list_kind": "redlist", "record_key_rule": "subject"}
    mapped = normalise_entry(entry, label_overrides=source.label_overrides, **options)
    assert (mapped["entity_name"], mapped["title"]) == ("厦门某某旅行社有限公司", "诚信旅行社")
    assert mapped["extra"]["荣誉名称"] == "x"
    shared = normalise_entry(entry, **options)  # the shared map alone: 荣誉名称 is the title
    assert shared["title"] == "x"


@pytest.mark.parametrize(
    ("labels", "fragment"),
    [
        ("  名称: titel\n", "unknown target 'titel' (did you mean 'title'?)"),
        ("  名称: title\n  名称：: reason\n", "are the same label"),
    ],
)
def test_a_labels_block_is_checked_against_the_normalisers_targets(
    sources_dir: Path, labels: str, fragment: str
) -> None:
    text = GOOD + "labels:\n" + labels
    declare(sources_dir, "good", text)
    (problem,) = registry.broken_sources()
    assert problem.line == line_of(text, "labels:") and fragment in problem.message


def test_a_family_spider_is_named_and_checked(sources_dir: Path) -> None:
    declare(sources_dir, "good", GOOD + "spider: announcements\n")
    declare(sources_dir, "typo", GOOD.replace("id: good", "id: typo") + "spider: anouncements\n")
    (without_block, typo) = registry.broken_sources()
    assert without_block.line == line_of(GOOD + "spider: announcements\n", "spider:")
    assert "'announcements:' block, and there is none" in without_block.message
    assert typo.line == GOOD.count("\n") + 1 and "'announcements'" in typo.message
    assert parse_source(FULL).spider == "announcements"


# --- coverage: partial (lists read in part by design) -----------------------------------------


def with_list(**changes: Any) -> dict[str, Any]:
    """FULL with its api list ``b`` changed: keys set, ``None`` removes one."""
    data = copy.deepcopy(FULL)
    lst = data["lists"][1]
    for key, value in changes.items():
        if value is None:
            lst.pop(key, None)
        else:
            lst[key] = value
    return data


def test_coverage_defaults_to_complete_and_absence_counts() -> None:
    lst = parse_source(FULL).list("b")
    assert (lst.coverage, lst.partial, lst.diffs_absence) == ("complete", False, True)


@pytest.mark.parametrize(
    ("api", "rows", "pages"),
    [
        ({"cap": 10000, "max_pages": 100}, 1000, 100),  # max_pages × page_size is less
        ({"cap": 50}, 50, 5),  # the portal's cap alone
        ({"max_pages": 3, "page_size": 20}, 60, 3),
        ({"cap": 45}, 45, 5),  # a cap that ends inside a page
    ],
)
def test_a_partial_list_reads_up_to_its_limit_and_never_diffs_absence(
    api: dict[str, Any], rows: int, pages: int
) -> None:
    block = {"endpoint": "search", "page_size": 10, **api}
    lst = parse_source(with_list(coverage="partial", api=block)).list("b")
    assert lst.partial and not lst.diffs_absence
    assert lst.read_limit == registry.ReadLimit(rows=rows, pages=pages)


def test_a_family_blocks_max_pages_is_a_read_limit() -> None:
    """A shipped ``json_api`` list, declared partial with a ``max_pages``."""
    raw = next(
        copy.deepcopy(src.raw)
        for src in load_registry().values()
        if any(lst.json_api is not None for lst in src.lists)
    )
    item = next(item for item in raw["lists"] if "json_api" in item)
    item["json_api"]["max_pages"] = 7
    item["coverage"] = "partial"
    lst = parse_source(raw).list(item["id"])
    size = item["json_api"].get("page_size", 10)
    assert lst.read_limit == registry.ReadLimit(rows=7 * size, pages=7)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (with_list(coverage="partly"), "coverage: Input should be 'complete' or 'partial'"),
        (
            with_list(coverage="partial"),
            "needs the limit a run reads up to: api.cap or api.max_pages",
        ),
        (
            with_list(coverage="partial", api=None, watch={"type": "行政处罚"}),
            "does not fit a watch list",
        ),
        (
            with_list(
                coverage="partial",
                publication="announcements",
                api={"endpoint": "search", "cap": 50},
            ),
            "announcements never count absence anyway",
        ),
    ],
)
def test_coverage_is_checked(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_source(data)
    assert "source 'demo' list 'b'" in str(caught.value)
    assert fragment in str(caught.value)


def test_coverage_partial_is_reported_at_its_line(sources_dir: Path) -> None:
    text = GOOD.replace("id: good", "id: broken").replace(
        "    list_kind: warning\n", "    list_kind: warning\n    coverage: partial\n"
    )
    declare(sources_dir, "broken", text)
    (problem,) = registry.broken_sources()
    assert "needs the limit a run reads up to" in problem.message
    assert problem.line is not None


def test_credit_chinas_capped_lists_are_partial_and_its_watch_lists_complete() -> None:
    source = get_source("creditchina")
    partial = {lst.short_id for lst in source.lists if lst.partial}
    assert partial == {"sxbzxr", "xzfj", "xzhc", "zdsswf"}
    assert all("api" in item for item in source.raw["lists"] if item.get("coverage"))
    assert source.list("zdsswf").read_limit == registry.ReadLimit(rows=50, pages=5)
    assert source.list("sxbzxr").read_limit == registry.ReadLimit(rows=1000, pages=100)
    assert all(lst.diffs_absence for lst in source.lists if lst.short_id.startswith("watch_"))
