"""Plain reads of the stored records, outside any run or date."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from storage.models import Record, table_of

RECORDS = table_of(Record)


def stored_usccs(conn: Connection, source: str) -> list[str]:
    """Every USCC among the source's stored records, sorted (a watch list of ``db:``)."""
    codes = conn.execute(
        select(RECORDS.c.uscc)
        .where(RECORDS.c.source == source, RECORDS.c.uscc.is_not(None))
        .distinct()
    ).scalars()
    return sorted(set(codes))
