"""``creditwatch sources add ID --family F``: a new source's room scaffolded from its family's
template, loading in the registry; ``creditwatch sources`` alone still lists."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from core.registry import SOURCES_DIR_ENV, SPIDER_FAMILIES, get_source, load_registry
from pipeline.cli import app
from pipeline.cli.sources import (
    LIST_KINDS,
    TEMPLATES,
    Scaffold,
    ScaffoldError,
    render,
    template_families,
)

runner = CliRunner()


@pytest.fixture
def sources_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty registry directory that the registry and the CLI read instead of the shipped."""
    directory = tmp_path / "sources"
    directory.mkdir()
    monkeypatch.setenv(SOURCES_DIR_ENV, str(directory))
    return directory


def add(sources_dir: Path, *args: str) -> object:
    env = {SOURCES_DIR_ENV: str(sources_dir)}
    return runner.invoke(app, ["sources", "add", *args], env=env)


def test_the_scaffold_loads_in_the_registry_and_its_family_serves_it(sources_dir: Path) -> None:
    result = add(
        sources_dir,
        "chengdu_punish",
        "--family",
        "json_api",
        "--jurisdiction",
        "成都市",
        "--region",
        "510100",
        "--name-zh",
        "信用成都 行政处罚: 双公示 #1",  # YAML's ':' and '#' stay part of the name
        "--base-url",
        "https://cdcredit.example.gov.cn/",
    )
    assert result.exit_code == 0, result.output
    path = sources_dir / "chengdu_punish" / "source.yml"
    assert str(path) in result.stdout.replace("\n", "")
    assert "creditwatch crawl chengdu_punish --record" in result.stdout
    assert "fixtures/chengdu_punish/chengdu_punish-day1.yaml" in result.stdout
    assert "expected.json" in result.stdout
    assert "TODO" not in path.read_text(encoding="utf-8")

    source = get_source("chengdu_punish")
    assert list(load_registry()) == ["chengdu_punish"]
    assert (source.spider, source.jurisdiction, source.region_code) == (
        "json_api",
        "成都市",
        "510100",
    )
    assert source.name_zh == "信用成都 行政处罚: 双公示 #1"
    (lst,) = source.lists
    assert (lst.id, lst.list_kind, lst.record_key) == (
        "chengdu_punish.penalties",
        "penalty",
        "case",
    )
    assert lst.json_api is not None and lst.json_api.url.startswith("api/")

    from crawlers.loader import SourceSpiderLoader

    spider = SourceSpiderLoader().load("chengdu_punish")
    assert (spider.name, spider.source_id) == ("chengdu_punish", "chengdu_punish")

    listed = runner.invoke(app, ["sources"], env={SOURCES_DIR_ENV: str(sources_dir)})
    assert listed.exit_code == 0, listed.output
    assert "chengdu_punish" in listed.stdout and "成都市 (510100)" in listed.stdout


def test_a_list_kind_sets_the_record_key(sources_dir: Path) -> None:
    result = add(
        sources_dir, "wuhan_black", "--family", "json_api", "--jurisdiction", "武汉市",
        "--region", "420100", "--list-kind", "blacklist",
        "--base-url", "https://whcredit.example.gov.cn/",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (lst,) = get_source("wuhan_black").lists
    assert (lst.id, lst.list_kind, lst.record_key) == (
        "wuhan_black.blacklist",
        "blacklist",
        "subject",
    )


def test_an_existing_room_is_never_overwritten(sources_dir: Path) -> None:
    room = sources_dir / "taken"
    room.mkdir()
    (room / "notes.txt").write_text("mine", encoding="utf-8")
    result = add(sources_dir, "taken", "--family", "json_api", "--jurisdiction", "北京市",
                 "--region", "110000", "--base-url", "https://x.example.gov.cn/")  # fmt: skip
    assert result.exit_code == 2
    assert "already exists" in result.stderr and "never overwritten" in result.stderr
    assert sorted(p.name for p in room.iterdir()) == ["notes.txt"]


def test_an_unknown_family_names_the_families(sources_dir: Path) -> None:
    result = add(sources_dir, "nowhere", "--family", "jsonapi", "--jurisdiction", "北京市",
                 "--region", "110000", "--base-url", "https://x.example.gov.cn/")  # fmt: skip
    assert result.exit_code == 2
    assert "no template for family 'jsonapi'" in result.stderr
    for family in template_families():
        assert family in result.stderr
    assert not (sources_dir / "nowhere").exists()


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"source_id": "Bad-Id"}, "lower-case letters"),
        ({"region_code": "11000"}, "six digits"),
        ({"list_kind": "greylist"}, "kinds: " + ", ".join(LIST_KINDS)),
        ({"base_url": "creditbj.example.gov.cn"}, "base URL"),
    ],
)
def test_bad_values_are_refused_before_anything_is_written(
    change: dict[str, str], problem: str
) -> None:
    values = {
        "source_id": "ok",
        "family": "json_api",
        "name_zh": "名",
        "name_en": "name",
        "jurisdiction": "北京市",
        "region_code": "110000",
        "base_url": "https://x.example.gov.cn/",
    }
    with pytest.raises(ScaffoldError, match=problem):
        render(Scaffold(**{**values, **change}))


@pytest.mark.parametrize("family", template_families())
@pytest.mark.parametrize("kind", LIST_KINDS)
def test_every_template_validates_for_every_list_kind(family: str, kind: str) -> None:
    """A family's template is data: each one must name a family spider and validate."""
    assert family in SPIDER_FAMILIES
    text = render(
        Scaffold(
            "demo", family, "名", "name", "北京市", "110000", "https://x.example.gov.cn/", kind
        )
    )
    assert f"spider: {family}" in text


def test_the_templates_folder_is_not_a_room() -> None:
    assert TEMPLATES.name.startswith("_") and "json_api" in template_families()
    assert TEMPLATES.name not in load_registry()
