"""The spider loader: one spider per registered source, from its room or its family."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import scrapy

from core import registry
from crawlers.loader import SourceSpiderLoader
from crawlers.spiders.announcements import AnnouncementSpider
from crawlers.spiders.base import PortalSpider

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "crawlers" / "sources"

ROOM_SPIDER = '''
from crawlers.spiders.base import PortalSpider


class TrialSpider(PortalSpider):
    """Bound to its room by the loader: no name of its own."""

    async def start(self):
        yield None
'''


@pytest.fixture
def sources_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "sources"
    directory.mkdir()
    monkeypatch.setenv(registry.SOURCES_DIR_ENV, str(directory))
    return directory


def room(sources_dir: Path, sid: str, declaration: str, spider: str | None = None) -> Path:
    path = sources_dir / sid
    path.mkdir()
    (path / "source.yml").write_text(declaration, encoding="utf-8")
    if spider is not None:
        (path / "spider.py").write_text(spider, encoding="utf-8")
    return path


def shipped(sid: str, new_id: str | None = None) -> str:
    text = (SHIPPED / sid / "source.yml").read_text(encoding="utf-8")
    return text.replace(f"id: {sid}\n", f"id: {new_id}\n", 1) if new_id else text


def test_scrapy_lists_every_registered_source() -> None:
    env = {k: v for k, v in os.environ.items() if k != registry.SOURCES_DIR_ENV}
    listed = subprocess.run(
        [sys.executable, "-m", "scrapy", "list"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert listed.stdout.split() == sorted(registry.load_registry())


def test_a_family_source_needs_no_python(sources_dir: Path) -> None:
    room(sources_dir, "caac_copy", shipped("caac", "caac_copy"))
    loader = SourceSpiderLoader()
    spider = loader.load("caac_copy")
    assert issubclass(spider, AnnouncementSpider) and spider is not AnnouncementSpider
    assert (spider.name, spider.source_id, spider.__name__) == (
        "caac_copy",
        "caac_copy",
        "CaacCopySpider",
    )
    assert loader.load("caac_copy") is spider
    assert loader.list() == ["caac_copy"]
    assert loader.find_by_request(scrapy.Request("https://example.test/")) == []


def test_a_rooms_spider_is_bound_to_its_room(sources_dir: Path) -> None:
    declaration = shipped("xmtravel", "trial").replace("\nlists:", "\nspider: null\nlists:")
    room(sources_dir, "trial", declaration, ROOM_SPIDER)
    spider = SourceSpiderLoader().load("trial")
    assert issubclass(spider, PortalSpider)
    assert spider.__mro__[1].__name__ == "TrialSpider"
    assert (spider.name, spider.source_id) == ("trial", "trial")


def test_a_declaration_alone_uses_the_shipped_rooms_spider(sources_dir: Path) -> None:
    from crawlers.sources.xmtravel.spider import XmtravelSpider

    room(sources_dir, "xmtravel", shipped("xmtravel"))
    assert SourceSpiderLoader().load("xmtravel") is XmtravelSpider


@pytest.mark.parametrize(
    ("spider", "fragment"),
    [
        (None, "no spider: add spider.py to the room or declare a family"),
        (ROOM_SPIDER.replace('"""Bound', 'name = "other"\n    """Bound'), "'other'"),
        (ROOM_SPIDER + ROOM_SPIDER.replace("TrialSpider", "OtherSpider"), "2 PortalSpider"),
    ],
)
def test_a_source_without_a_usable_spider_is_not_found(
    sources_dir: Path, spider: str | None, fragment: str
) -> None:
    room(sources_dir, "lonely", shipped("xmtravel", "lonely"), spider)
    with pytest.raises(KeyError) as caught:
        SourceSpiderLoader().load("lonely")
    assert fragment in str(caught.value)


def test_a_broken_declaration_is_not_found_with_its_file_and_line(sources_dir: Path) -> None:
    room(sources_dir, "bad", shipped("caac", "bad").replace("list_kind:", "list_knd:"))
    loader = SourceSpiderLoader()
    assert loader.list() == []
    with pytest.raises(KeyError, match=r"bad/source\.yml:\d+: .*list_knd"):
        loader.load("bad")
