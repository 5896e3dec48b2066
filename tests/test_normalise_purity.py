"""Normalisation does no I/O per call; its dictionaries load once per process; the shipped
region table is what the builder makes from python-stdnum; content hashes are canonical."""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import socket
from typing import Any

import pytest

from core.items import RawEntry
from core.normalise import content_hash, normalise_entry, segment, text, warm_up
from core.normalise.build_regions import OUT, build, stdnum_loc_dat
from core.schema import content_of
from tests.test_normalise_golden import CASES


def _entries(tag: str) -> list[tuple[RawEntry, dict[str, Any]]]:
    """Every golden record case, with names, codes and dates never seen before (so no cache
    can answer for them)."""
    out = []
    for i, case in enumerate(c for c in CASES if c["kind"] == "record"):
        inp = case["input"]
        fields = {
            label: (f"{value}{tag}{i}" if isinstance(value, str) and len(value) > 3 else value)
            for label, value in (inp.get("fields") or {}).items()
        }
        entry = RawEntry(
            source=inp["source"],
            list=inp["list"],
            source_url="u",
            raw_sha256="s",
            fields=fields,
            subject=inp.get("subject") or {},
            row=inp.get("row") or {},
        )
        options = {
            "list_kind": inp["list_kind"],
            "record_key_rule": inp["record_key_rule"],
            "domain": inp.get("domain"),
            "label_overrides": inp.get("label_overrides"),
        }
        out.append((entry, options))
    return out


def test_normalising_does_no_io_after_the_one_time_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    warm_up()
    entries = _entries("新")
    calls: list[str] = []

    def refuse(name: str) -> Any:
        def guard(*args: Any, **kwargs: Any) -> Any:
            calls.append(f"{name}{args[:1]}")
            raise AssertionError(f"normalisation called {name}")

        return guard

    for target, name in (
        (builtins, "open"),
        (io, "open"),
        (os, "open"),
        (os, "listdir"),
        (os, "scandir"),
        (os, "stat"),
        (socket, "socket"),
        (socket, "create_connection"),
    ):
        monkeypatch.setattr(target, name, refuse(f"{target.__name__}.{name}"))
    done = 0
    for entry, options in entries:
        try:
            content_hash(normalise_entry(entry, **options))
            done += 1
        except ValueError:
            pass  # the non-record samples: refused, still without I/O
    monkeypatch.undo()
    assert calls == []
    assert done >= 80


def test_jieba_and_opencc_load_once_per_process() -> None:
    warm_up()
    before = (segment.tokenizer.cache_info().misses, text._t2s.cache_info().misses)
    for entry, options in _entries("再"):
        with contextlib.suppress(ValueError):  # the non-record samples
            normalise_entry(entry, **options)
    after = (segment.tokenizer.cache_info().misses, text._t2s.cache_info().misses)
    assert before == after == (1, 1)
    assert segment.tokenizer() is segment.tokenizer()


def test_shipped_region_table_is_the_builders_output() -> None:
    """lexicon/regions.txt is generated from python-stdnum's GB/T 2260 table; a stale copy after
    a stdnum upgrade shows here (regenerate with python -m core.normalise.build_regions)."""
    assert OUT.read_text(encoding="utf-8") == build(stdnum_loc_dat())


def test_content_hash_is_sha256_of_canonical_json() -> None:
    """The fast serialiser gives exactly the canonical JSON the hash is defined on."""
    for entry, options in _entries("哈")[:60]:
        try:
            record = normalise_entry(entry, **options)
        except ValueError:
            continue
        canonical = json.dumps(
            content_of(record),
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )
        assert content_hash(record) == hashlib.sha256(canonical.encode("utf-8")).hexdigest()
