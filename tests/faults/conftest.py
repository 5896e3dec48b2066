"""Fixtures of the fault suite: the fake portal (one per module), with every crawl of the
module sent to it through ``http_proxy``/``https_proxy``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from core.registry import load_registry
from tests.faults.portal import FakePortal, start


@pytest.fixture(scope="module")
def fake_portal() -> Iterator[FakePortal]:
    """The fake portal on 127.0.0.1, the proxy of every crawl (and child) of the module.

    Tests call ``serve`` (what it answers: clears faults and hits) and ``inject`` (faults)."""
    volatile = {p for source in load_registry().values() for p in source.filter_query_parameters}
    portal = start(volatile)
    with pytest.MonkeyPatch.context() as patch:
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
            patch.setenv(name, portal.url)
        for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
            patch.delenv(name, raising=False)
        yield portal
    portal.shutdown()
