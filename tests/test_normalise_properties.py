"""Property tests (hypothesis) for the check-digit code: USCC, organisation codes,
registration numbers, resident IDs, and masked IDs that must pass through untouched."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.cn import ric
from stdnum.cn import uscc as stdnum_uscc
from stdnum.iso7064 import mod_11_10

from core.items import RawEntry
from core.normalise import normalise_entry
from core.normalise.codes import (
    USCC_FILLER,
    classify_code,
    is_valid_org_code,
    is_valid_registration_no,
    is_valid_resident_id,
    org_code_check_digit,
    parse_uscc,
)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
DIGITS = "0123456789"

uscc_bodies = st.tuples(
    st.text(DIGITS, min_size=8, max_size=8), st.text(USCC_ALPHABET, min_size=9, max_size=9)
).map("".join)


def with_uscc_check(body: str) -> str:
    return body + stdnum_uscc.calc_check_digit(body)


def substitute(code: str, position: int, alphabet: str, offset: int) -> str:
    """``code`` with the character at ``position`` replaced by a different one of
    ``alphabet``."""
    i = position % len(code)
    current = alphabet.index(code[i])
    replacement = alphabet[(current + 1 + offset % (len(alphabet) - 1)) % len(alphabet)]
    return code[:i] + replacement + code[i + 1 :]


@settings(max_examples=300, deadline=None, database=None)
@given(uscc_bodies)
def test_uscc_with_its_check_character_is_valid(body: str) -> None:
    code = with_uscc_check(body)
    if code == USCC_FILLER:
        return
    assert parse_uscc(code) == parse_uscc(code)  # memoised and stable
    result = parse_uscc(code)
    assert (result.uscc, result.uscc_raw, result.uscc_valid) == (code, code, True)


@settings(max_examples=300, deadline=None, database=None)
@given(uscc_bodies, st.sampled_from([" ", "\u3000", "\u00a0", "\t"]))
def test_uscc_is_read_upper_cased_and_trimmed_but_published_form_kept(body: str, ws: str) -> None:
    code = with_uscc_check(body)
    published = f"{ws}{code.lower()}{ws}"
    result = parse_uscc(published)
    assert result.uscc == code
    assert result.uscc_raw == code.lower()  # trimmed, not upper-cased
    assert result.uscc_valid is True


@settings(max_examples=500, deadline=None, database=None)
@given(uscc_bodies, st.integers(0, 17), st.integers(0, 100))
def test_any_single_substitution_in_a_uscc_is_caught(body: str, position: int, offset: int) -> None:
    code = with_uscc_check(body)
    i = position % 18
    alphabet = DIGITS if i < 8 else USCC_ALPHABET
    typo = substitute(code, i, alphabet, offset)
    result = parse_uscc(typo)
    assert (result.uscc, result.uscc_raw, result.uscc_valid) == (None, typo, False)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(ORG_ALPHABET, min_size=8, max_size=8), st.booleans())
def test_org_code_with_its_check_is_valid_with_or_without_hyphen(body: str, hyphen: bool) -> None:
    code = body + ("-" if hyphen else "") + org_code_check_digit(body)
    assert is_valid_org_code(code)
    assert classify_code(code) == "org_code"


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(ORG_ALPHABET, min_size=8, max_size=8), st.integers(0, 100))
def test_wrong_org_code_check_character_is_caught(body: str, offset: int) -> None:
    good = org_code_check_digit(body)
    wrong = substitute(good, 0, "0123456789X", offset)
    assert not is_valid_org_code(body + "-" + wrong)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(DIGITS, min_size=14, max_size=14), st.integers(0, 14), st.integers(0, 100))
def test_registration_number_check_catches_any_single_digit_error(
    body: str, position: int, offset: int
) -> None:
    number = body + mod_11_10.calc_check_digit(body)
    assert is_valid_registration_no(number)
    assert not is_valid_registration_no(substitute(number, position, DIGITS, offset))


# Division codes in use throughout 2001-2020, so a generated birth date is always plausible.
REGIONS = ["110105", "350203", "350212", "440113", "360426", "610103"]


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.sampled_from(REGIONS),
    st.dates(min_value=dt.date(2001, 1, 1), max_value=dt.date(2020, 12, 31)),
    st.text(DIGITS, min_size=3, max_size=3),
    st.integers(0, 17),
    st.integers(0, 100),
)
def test_resident_id_check(
    region: str, born: dt.date, seq: str, position: int, offset: int
) -> None:
    body = f"{region}{born:%Y%m%d}{seq}"
    number = body + ric.calc_check_digit(body + "0")
    assert is_valid_resident_id(number)
    assert is_valid_resident_id(number.lower())
    i = position % 17
    assert not is_valid_resident_id(substitute(number, i, DIGITS, offset))


masked_ids = st.builds(
    lambda head, stars, tail: head + "*" * stars + tail,
    st.text(DIGITS, min_size=1, max_size=10),
    st.integers(2, 15),
    st.text(DIGITS + "X", min_size=1, max_size=6),
).filter(lambda s: 15 <= len(s) <= 19)


@settings(max_examples=300, deadline=None, database=None)
@given(masked_ids)
def test_masked_ids_are_kept_exactly_and_never_completed(masked: str) -> None:
    assert classify_code(masked) == "masked_id"
    entry = RawEntry(
        source="x",
        list="x.blacklist",
        source_url="u",
        raw_sha256="s",
        fields={"姓名": "王*明", "证件号码": masked},
    )
    record = normalise_entry(entry, list_kind="blacklist", record_key_rule="subject")
    assert record["id_number_masked"] == masked
    assert record["entity_type"] == "person"
    assert masked in record["record_key"]
    region = record["region_code"]
    assert region is None or (region == masked[:6] and "*" not in region)
