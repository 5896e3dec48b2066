"""hot entry state and open history intervals

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 21:30:00

Change detection diffs a run against a narrow ``entry_state`` table instead of the wide
``records``, and writes only the entries that changed: an entry the list's latest run saw
keeps ``records.last_seen`` NULL (``list_state.last_at`` says when) and its history interval
open (``last_run_seq`` = 2147483647) until a run misses it or reads other values. Existing
databases are converted: the latest run that saw each list becomes its ``list_state``; their
entries' provenance digest is unknown (NULL), so the next run rewrites their provenance once.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OPEN_SEQ = 2_147_483_647


def upgrade() -> None:
    op.create_table(
        "entry_state",
        sa.Column("list", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("record_key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("prov_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("absent_runs", sa.Integer(), nullable=False),
        sa.Column("last_seen_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("list", "record_key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "list_state",
        sa.Column("list", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("last_run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("last_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("list"),
    )
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("prov_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    op.create_index(
        "ix_run_records_repeated",
        "run_records",
        ["run_id"],
        unique=False,
        sqlite_where=sa.text("repeats > 0"),
        postgresql_where=sa.text("repeats > 0"),
    )
    # Per list, the latest run that saw an entry of it.
    op.execute(
        """
        INSERT INTO list_state (list, source, last_seq, last_run_id, last_at)
        SELECT m.list, m.source, m.seq, runs.run_id,
               (SELECT max(r.last_seen) FROM records r
                WHERE r.list = m.list AND r.last_run_id = runs.run_id)
        FROM (SELECT rec.list, rec.source, max(runs.seq) AS seq
              FROM records rec JOIN runs ON runs.run_id = rec.last_run_id
              GROUP BY rec.list, rec.source) m
        JOIN runs ON runs.source = m.source AND runs.seq = m.seq
        """
    )
    op.execute(
        """
        INSERT INTO entry_state
            (list, record_key, record_id, content_hash, status, absent_runs, last_seen_seq)
        SELECT rec.list, rec.record_key, rec.id, rec.content_hash, rec.status, rec.absent_runs,
               CASE WHEN rec.last_run_id = ls.last_run_id THEN NULL
                    ELSE (SELECT runs.seq FROM runs WHERE runs.run_id = rec.last_run_id) END
        FROM records rec LEFT JOIN list_state ls ON ls.list = rec.list
        """
    )
    op.execute(
        f"""
        UPDATE record_history SET last_run_seq = {OPEN_SEQ}
        WHERE last_run_seq = (SELECT ls.last_seq FROM list_state ls
                              WHERE ls.list = record_history.list)
        """
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen", existing_type=storage.types.UTCDateTime(timezone=True), nullable=True
        )
    op.execute(
        """
        UPDATE records SET last_seen = NULL
        WHERE last_run_id = (SELECT ls.last_run_id FROM list_state ls
                             WHERE ls.list = records.list)
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE records SET last_seen = (SELECT ls.last_at FROM list_state ls
                                        WHERE ls.list = records.list)
        WHERE last_seen IS NULL
        """
    )
    op.execute(
        f"""
        UPDATE record_history
        SET last_run_seq = (SELECT ls.last_seq FROM list_state ls
                            WHERE ls.list = record_history.list),
            last_at = (SELECT ls.last_at FROM list_state ls WHERE ls.list = record_history.list)
        WHERE last_run_seq = {OPEN_SEQ}
        """
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.alter_column(
            "last_seen", existing_type=storage.types.UTCDateTime(timezone=True), nullable=False
        )
    op.drop_index("ix_run_records_repeated", table_name="run_records")
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.drop_column("prov_hash")
    op.drop_table("list_state")
    op.drop_table("entry_state")
