"""staging keeps the data of changed entries only

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:00:00

A staged entry whose content and provenance digests equal its hot state's is staged without
its record (``run_records.data`` NULL): detection reads the stored record in its place.
The writer counts each list's filled fields as it stages (``run_fill``), so the declared fill
rates need no pass over the records.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_fill",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("list", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("filled", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "list", "field"),
    )
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.alter_column("data", existing_type=storage.types.JSONType, nullable=True)


def downgrade() -> None:
    op.drop_table("run_fill")
    # Staging is scratch: rows without their record cannot go back to NOT NULL.
    op.execute("DELETE FROM run_records WHERE data IS NULL")
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.alter_column("data", existing_type=storage.types.JSONType, nullable=False)
