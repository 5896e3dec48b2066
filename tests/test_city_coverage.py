"""Coverage grows by configuration: city and provincial portals, grouped by the vendor
platform they run on, and every platform's second portal declared without Python."""

from __future__ import annotations

from collections import defaultdict

import pytest
from typer.testing import CliRunner

from core.registry import SHIPPED_SOURCES, SourceDef, load_registry
from pipeline.cli import app

pytestmark = pytest.mark.unit

NATIONAL = "100000"  # GB/T 2260: the People's Republic of China


def city_sources() -> list[SourceDef]:
    """Sources whose jurisdiction is a province or a city, not the whole country."""
    return [source for source in load_registry().values() if source.region_code != NATIONAL]


def python_files(source: SourceDef) -> list[str]:
    room = SHIPPED_SOURCES / source.id
    return sorted(str(path.relative_to(room)) for path in room.rglob("*.py"))


def test_at_least_twelve_city_sources_on_at_least_six_platforms() -> None:
    cities = city_sources()
    platforms = {source.platform or source.id for source in cities}
    assert len(cities) >= 12, [source.id for source in cities]
    assert len(platforms) >= 6, sorted(platforms)


def test_a_platform_shared_by_two_portals_is_data_only() -> None:
    """Walks every room: the portals of a shared platform hold a ``source.yml`` and no Python,
    and are served by a family spider."""
    by_platform: dict[str, list[SourceDef]] = defaultdict(list)
    for source in load_registry().values():
        if source.platform:
            by_platform[source.platform].append(source)
    shared = {name: group for name, group in by_platform.items() if len(group) >= 2}
    assert len(shared) >= 4, sorted(shared)
    for platform, group in shared.items():
        for source in group:
            assert source.spider is not None, f"{source.id} ({platform}) names no family spider"
            assert python_files(source) == [], f"{source.id} ({platform}) holds Python"


def test_every_city_source_sets_a_provincial_or_city_code() -> None:
    """GB/T 2260: six digits; a province ends in 0000, a city in 00."""
    for source in city_sources():
        code = source.region_code
        assert len(code) == 6 and code.isdigit(), (source.id, code)
        assert code.endswith("00"), (source.id, code)


def test_the_sources_command_names_each_family() -> None:
    result = CliRunner().invoke(app, ["sources"])
    assert result.exit_code == 0, result.output
    for source in city_sources():
        if source.platform:
            assert source.platform in result.output
