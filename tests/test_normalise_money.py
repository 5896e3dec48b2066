"""Penalty types and amounts from measure texts (core.normalise.money)."""

from __future__ import annotations

import pytest

from core.normalise import parse_measure
from core.normalise.money import parse_amount_column, parse_number


@pytest.mark.parametrize(
    ("text", "types", "fine", "confiscated"),
    [
        ("罚款人民币叁万元整", ["fine"], 30000, None),
        ("罚款人民币伍仟元整", ["fine"], 5000, None),
        ("罚款人民币壹万伍仟元，责令停业整顿一个月", ["fine", "suspension"], 15000, None),
        ("警告，并处罚款人民币0.2万元", ["warning", "fine"], 2000, None),
        ("警告，并处罚款人民币1.5万元", ["warning", "fine"], 15000, None),
        ("罚款5000元", ["fine"], 5000, None),
        ("处罚款30,000元", ["fine"], 30000, None),
        ("处罚款１０，０００元", ["fine"], 10000, None),
        ("罚款1.5万元", ["fine"], 15000, None),
        (
            "没收违法所得人民币3200元，并处罚款10000元",
            ["confiscation", "fine"],
            10000,
            3200,
        ),
        ("没收违法所得3200元并处罚款1万元", ["confiscation", "fine"], 10000, 3200),
        ("警告", ["warning"], None, None),
        ("处2000元罚款", ["fine"], 2000, None),
        ("处以二千元的罚款，没收违法所得五百元", ["fine", "confiscation"], 2000, 500),
        ("罚款0.25万元", ["fine"], 2500, None),
        ("罚款1234.5元", ["fine"], 1234.5, None),
        ("罚款5000元，责令退还旅游者500元", ["fine"], 5000, None),
        ("吊销旅行社业务经营许可证", ["licence_revocation"], None, None),
        ("暂停导游执业三个月", ["suspension"], None, None),
        ("停止招徕、组织旅游者出境旅游业务", ["suspension"], None, None),
        ("行政拘留十日，并处罚款500元", ["detention", "fine"], 500, None),
        (
            "警告，罚款人民币贰万元，没收违法所得，吊销导游证",
            ["warning", "fine", "confiscation", "licence_revocation"],
            20000,
            None,
        ),
        ("通报批评", ["other"], None, None),
        ("责令改正", ["other"], None, None),
        ("不予行政处罚", [], None, None),
    ],
)
def test_parse_measure(
    text: str, types: list[str], fine: float | None, confiscated: float | None
) -> None:
    measure = parse_measure(text)
    assert measure.penalty_types == types
    assert measure.fine_yuan == fine
    assert measure.confiscated_yuan == confiscated


def test_whole_amounts_are_ints() -> None:
    measure = parse_measure("警告，并处罚款人民币0.2万元")
    assert isinstance(measure.fine_yuan, int)
    assert isinstance(parse_measure("罚款1234.5元").fine_yuan, float)


def test_no_measure() -> None:
    measure = parse_measure(None)
    assert (measure.penalty_types, measure.fine_yuan, measure.confiscated_yuan) == ([], None, None)


def test_several_fines_are_summed() -> None:
    assert parse_measure("对公司罚款1万元，对直接责任人罚款2000元").fine_yuan == 12000


@pytest.mark.parametrize(
    ("text", "value"),
    [("叁万", 30000), ("壹万伍仟", 15000), ("两千", 2000), ("1万5千", 15000), ("30,000", 30000)],
)
def test_parse_number(text: str, value: int) -> None:
    assert parse_number(text) == value


def test_parse_number_unreadable() -> None:
    assert parse_number("若干") is None
    assert parse_number("") is None


@pytest.mark.parametrize(
    ("text", "unit", "value"),
    [
        ("0.5", "wan", 5000),
        ("1.000000", "wan", 10000),
        ("5000", "yuan", 5000),
        ("0.5万元", None, 5000),
        ("5000元", "wan", 5000),  # the cell's own unit wins
        ("5000", None, None),  # unit unknown: not guessed
        ("—", "wan", None),
        ("壹万元", None, 10000),
    ],
)
def test_parse_amount_column(text: str, unit: str | None, value: int | None) -> None:
    assert parse_amount_column(text, unit=unit) == value  # type: ignore[arg-type]
