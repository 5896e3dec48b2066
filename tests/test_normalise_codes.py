"""USCC, ID numbers and region codes (core.normalise.codes)."""

from __future__ import annotations

import pytest

from core.normalise import UsccResult, parse_uscc, region_from_id_number, region_from_uscc
from core.normalise.codes import id_kind, is_masked_id, is_valid_uscc


@pytest.mark.parametrize(
    "code",
    [
        "91350213MA028DE74Q",
        "91350100M000100Y43",
        "91110000600037341L",
        "9144030071526726XG",
        "121200004013590816",
        "92340602MA2PBQAH7E",
    ],
)
def test_valid_uscc(code: str) -> None:
    assert parse_uscc(code) == UsccResult(code, code, True)


def test_uscc_is_upper_cased_and_trimmed_before_checking() -> None:
    result = parse_uscc(" 91350213ma028de74q\u3000")
    assert result == UsccResult("91350213MA028DE74Q", "91350213ma028de74q", True)


def test_uscc_full_width_is_checked_but_published_form_kept() -> None:
    result = parse_uscc("９１３５０２１３ＭＡ０２８ＤＥ７４Ｑ")
    assert result.uscc == "91350213MA028DE74Q"
    assert result.uscc_raw == "９１３５０２１３ＭＡ０２８ＤＥ７４Ｑ"


@pytest.mark.parametrize(
    "code",
    ["91350212MA7L9F0M90", "91110000600037341N", "9111000060003IOZSV", "9135021"],
)
def test_invalid_uscc_keeps_raw(code: str) -> None:
    assert parse_uscc(code) == UsccResult(None, code, False)


def test_filler_uscc_is_never_a_code() -> None:
    assert parse_uscc("00000000000000000X") == UsccResult(None, "00000000000000000X", False)
    assert not is_valid_uscc("00000000000000000X")


@pytest.mark.parametrize("raw", [None, "", "—", " - "])
def test_no_uscc(raw: str | None) -> None:
    assert parse_uscc(raw) == UsccResult(None, None, None)


def test_region_from_valid_uscc_only() -> None:
    assert region_from_uscc("91350213MA028DE74Q") == "350213"
    assert region_from_uscc("91350100M000100Y43") == "350100"
    assert region_from_uscc("91350212MA7L9F0M90") is None  # invalid check digit
    assert region_from_uscc(None) is None


@pytest.mark.parametrize(
    ("id_number", "region"),
    [
        ("350212********0728", "350212"),
        ("3423011964****3224", "342301"),
        ("210726********1530", "210726"),
        ("37280119701****7692", "372801"),  # malformed length, prefix still visible
        ("5***************1X", None),
        ("4129********223012", None),
        ("000000********0000", None),
    ],
)
def test_region_from_masked_id_prefix(id_number: str, region: str | None) -> None:
    assert region_from_id_number(id_number) == region


@pytest.mark.parametrize(
    "id_number", ["350212********0728", "3423011964****3224", "37280119701****7692"]
)
def test_masked_ids_are_recognised(id_number: str) -> None:
    assert is_masked_id(id_number)
    assert id_kind(id_number) == "masked_id"


def test_id_kinds() -> None:
    assert id_kind("11010519491231002X") == "resident_id"
    assert id_kind("91350213MA028DE74Q") == "uscc"
    assert id_kind("E12345678") == "other"
    assert id_kind(None) is None
