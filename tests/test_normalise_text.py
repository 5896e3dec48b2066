"""Text hygiene and match keys (core.normalise.text)."""

from __future__ import annotations

import pytest

from core.normalise import case_number_key, clean_text, name_key


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


def test_case_number_key_folds_traditional_characters_only() -> None:
    """A case number shown in traditional script is the same case; simplified characters
    that OpenCC would still change (乾安, 於潜) stay as issued."""
    assert case_number_key("廈文旅罰〔2019〕12號") == case_number_key("厦文旅罚[2019]12号")
    assert case_number_key("乾安市监罚字〔2020〕3号") == "乾安市监罚字(2020)3号"
    assert case_number_key("於潜监罚〔2021〕1号") == "於潜监罚(2021)1号"


def test_control_characters_are_removed_and_word_separators_become_spaces() -> None:
    from core.normalise.text import strip_controls

    assert strip_controls("谢\x00美\x1b玲") == "谢美玲"
    assert strip_controls("罚款\x0b五万元\x85整") == "罚款 五万元 整"
    assert strip_controls("第一行\n第二行\t") == "第一行\n第二行\t"
