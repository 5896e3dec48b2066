"""Text hygiene and match keys (pipeline.normalise.text)."""

from __future__ import annotations

import pytest

from pipeline.normalise import case_number_key, clean_text, name_key


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  厦门嘉禾酒店有限公司 ", "厦门嘉禾酒店有限公司"),
        ("\u3000许家豪\u3000", "许家豪"),
        ("\xa0厦门\xa0", "厦门"),
        ("&nbsp;厦门&nbsp;", "厦门"),
        ("\u200b厦门\ufeff", "厦门"),
        ("A&amp;B 旅行社", "A&B 旅行社"),
        ("厦门 嘉禾  酒店", "厦门 嘉禾  酒店"),  # inside: as published
        ("全角ＡＢＣ１２３", "全角ＡＢＣ１２３"),  # no width folding in display values
    ],
)
def test_clean_text_trims_and_decodes_only(raw: str, expected: str) -> None:
    assert clean_text(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "   ",
        "—",
        "-",
        "--",
        "——",
        "/",
        "无",
        "暂无",
        " — ",
        "\u3000—\u3000",
        "－",
        "null",
    ],
)
def test_clean_text_placeholders_are_none(raw: str | None) -> None:
    assert clean_text(raw) is None


def test_clean_text_keeps_values_that_merely_contain_dashes() -> None:
    assert clean_text("D-3502-943924") == "D-3502-943924"
    assert clean_text("0592-7283839") == "0592-7283839"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("廈門（集團）有限公司 ", "厦门(集团)有限公司"),
        ("厦门 嘉禾\u3000酒店\xa0有限公司", "厦门嘉禾酒店有限公司"),
        ("ＡＢＣ旅行社", "abc旅行社"),
        ("XiaMen ABC Travel", "xiamenabctravel"),
        ("厦门杏林假日旅行社（集团）有限公司", "厦门杏林假日旅行社(集团)有限公司"),
    ],
)
def test_name_key(raw: str, expected: str) -> None:
    assert name_key(raw) == expected


def test_name_key_is_idempotent_and_none_safe() -> None:
    key = name_key("廈門（集團）有限公司")
    assert name_key(key) == key
    assert name_key(None) is None
    assert name_key("  ") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("厦文旅罚〔2019〕12号", "厦文旅罚(2019)12号"),
        ("厦文旅罚[2025]71号", "厦文旅罚(2025)71号"),
        ("厦文旅罚【2025】71号", "厦文旅罚(2025)71号"),
        ("厦文旅罚（2025）71号", "厦文旅罚(2025)71号"),
        ("厦文旅罚(2025)71号", "厦文旅罚(2025)71号"),
        ("厦文旅罚［2025］71号", "厦文旅罚(2025)71号"),
        ("厦文旅执法罚字（2025）第65号 ", "厦文旅执法罚字(2025)第65号"),
        ("厦文旅罚 〔２０２５〕 71 号", "厦文旅罚(2025)71号"),
    ],
)
def test_case_number_key(raw: str, expected: str) -> None:
    assert case_number_key(raw) == expected


def test_case_number_key_none() -> None:
    assert case_number_key(None) is None
