"""Dates and validity ends (core.normalise.dates)."""

from __future__ import annotations

import datetime as dt

import pytest

from core.normalise import parse_date, parse_valid_until

D = dt.date(2024, 5, 12)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-12",
        "2024-5-12",
        "2024年5月12日",
        "2024年05月12日",
        "2024 年 5 月 12 日",
        "2024/05/12",
        "2024/5/12",
        "2024.5.12",
        "2024.05.12",
        "20240512",
        "２０２４年５月１２日",
        "２０２４－０５－１２",
        "二〇二四年五月十二日",
        "二○二四年五月十二日",
        "2024-05-12 00:00:00",
        "2024-05-12T10:30:00+08:00",
        " 2024-05-12\u3000",
        "1715443200000",  # 2024-05-12 00:00 Asia/Shanghai, epoch ms
        "1715443200",  # same, epoch seconds
    ],
)
def test_parse_date_forms(text: str) -> None:
    assert parse_date(text) == D


def test_parse_date_chinese_numerals_with_tens() -> None:
    assert parse_date("二〇二三年十二月三十一日") == dt.date(2023, 12, 31)
    assert parse_date("二〇二三年十月二十日") == dt.date(2023, 10, 20)


def test_parse_date_epoch_is_shanghai_calendar_day() -> None:
    # 2024-05-11T16:00:00Z is already 2024-05-12 in Shanghai.
    assert parse_date(1715443200000) == D


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "—",
        "长期",
        "2024-02-30",
        "2024-13-01",
        "2024-05",
        "五月十二日",
        "2024-05/12",
        "1900-01-01",
        "1899-12-31",
        "0001-01-01",
        "明天",
        "2024年5月12日至2025年5月11日",
    ],
)
def test_parse_date_unreadable_is_none(text: str | None) -> None:
    assert parse_date(text) is None


def test_parse_date_passes_dates_through() -> None:
    assert parse_date(D) == D
    assert parse_date(dt.datetime(2024, 5, 12, 23, 0)) == D


@pytest.mark.parametrize(
    "text",
    ["长期", "永久", "长期有效", " 长期 ", "2099-12-31", "2099/12/31", "9999-12-31", "—", None],
)
def test_valid_until_open_ended_or_absent(text: str | None) -> None:
    assert parse_valid_until(text) is None


def test_valid_until_real_dates() -> None:
    assert parse_valid_until("2026-07-03") == dt.date(2026, 7, 3)
    assert parse_valid_until("2028年4月23日") == dt.date(2028, 4, 23)
