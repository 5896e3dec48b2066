"""Normalisation: raw portal entries → the common record schema (pure functions, no I/O)."""

from .codes import UsccResult, parse_uscc, region_from_id_number, region_from_uscc
from .dates import parse_date, parse_valid_until
from .entity import entity_id, entity_type, record_key
from .labels import field_for_label
from .money import Measure, parse_measure
from .reasons import VOCABULARY_VERSION, reason_category
from .record import NormaliseError, content_hash, normalise_entry
from .text import case_number_key, clean_text, name_key

__all__ = [
    "VOCABULARY_VERSION",
    "Measure",
    "NormaliseError",
    "UsccResult",
    "case_number_key",
    "clean_text",
    "content_hash",
    "entity_id",
    "entity_type",
    "field_for_label",
    "name_key",
    "normalise_entry",
    "parse_date",
    "parse_measure",
    "parse_uscc",
    "parse_valid_until",
    "reason_category",
    "record_key",
    "region_from_id_number",
    "region_from_uscc",
]
