"""The Parquet types of the record fields (snapshots write them; the data dictionary names them)."""

from __future__ import annotations

import pyarrow as pa

from core.schema import RECORD_FIELDS

# Parquet types: dates as dates, times as UTC instants, money as decimals of 2 places (fen),
# lists as lists, ``extra`` as its JSON text (its keys differ by source).
DATE_FIELDS = ("decided_on", "published_on", "valid_until")
TIME_FIELDS = ("first_seen", "last_seen")
MONEY_FIELDS = ("fine_yuan", "confiscated_yuan")
MONEY = pa.decimal128(18, 2)
TIME = pa.timestamp("us", tz="UTC")


def parquet_type(name: str) -> pa.DataType:
    if name in DATE_FIELDS:
        return pa.date32()
    if name in TIME_FIELDS:
        return TIME
    if name in MONEY_FIELDS:
        return MONEY
    if name == "uscc_valid":
        return pa.bool_()
    if name == "penalty_types":
        return pa.list_(pa.string())
    return pa.string()


PARQUET_SCHEMA = pa.schema([pa.field(name, parquet_type(name)) for name in RECORD_FIELDS])
