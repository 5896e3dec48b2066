"""Normalisation: raw portal entries → the common record schema.

Every function here is pure: it reads its arguments and returns values, with no network,
file or database access per call. The exceptions are one-time lazy loads on first use, once
per process:

* jieba's dictionary plus the project's user dictionary (``lexicon/``: GB/T 2260 region names,
  organisation-form suffixes, industry words, reason keywords), see ``segment.py``; jieba
  keeps its prefix-dictionary cache in the system temp directory, not in the repository;
* OpenCC's traditional → simplified tables (``text.py``);
* the GB/T 2260 code table ``lexicon/regions.txt`` (``regions.py``) and python-stdnum's own
  region table for resident ID checks.

``warm_up()`` performs all of them at once, e.g. before timing or forking workers.
Per-field functions are memoised (``functools.lru_cache``) per distinct value, because
names, dates, measures and reasons repeat far more than they differ.
"""

from .casenum import parse_court_case_number
from .codes import (
    UsccResult,
    classify_code,
    is_valid_org_code,
    is_valid_registration_no,
    is_valid_resident_id,
    is_valid_uscc,
    parse_uscc,
    region_from_id_number,
    region_from_uscc,
)
from .dates import parse_date, parse_valid_until
from .entity import entity_id, entity_type, record_key
from .labels import field_for_label, senses_values
from .money import Measure, parse_measure
from .names import NameParts, parse_name
from .reasons import reason_category
from .record import NormaliseError, content_hash, normalise_entry
from .regions import region_from_address
from .text import case_number_key, clean_text, name_key
from .vocabularies import VOCABULARY_VERSION


def warm_up() -> None:
    """Load every lazily loaded dictionary now (jieba, OpenCC, regions, stdnum's table)."""
    from stdnum.cn import ric

    from .segment import tokenizer

    tokenizer()
    name_key("預熱")
    ric.is_valid("11010519491231002X")


__all__ = [
    "VOCABULARY_VERSION",
    "Measure",
    "NameParts",
    "NormaliseError",
    "UsccResult",
    "case_number_key",
    "classify_code",
    "clean_text",
    "content_hash",
    "entity_id",
    "entity_type",
    "field_for_label",
    "is_valid_org_code",
    "is_valid_registration_no",
    "is_valid_resident_id",
    "is_valid_uscc",
    "name_key",
    "normalise_entry",
    "parse_court_case_number",
    "parse_date",
    "parse_measure",
    "parse_name",
    "parse_uscc",
    "parse_valid_until",
    "reason_category",
    "record_key",
    "region_from_address",
    "region_from_id_number",
    "region_from_uscc",
    "senses_values",
    "warm_up",
]
