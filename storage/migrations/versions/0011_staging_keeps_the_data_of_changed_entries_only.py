"""staging keeps the data of changed entries only

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 04:00:00

A staged entry whose content and provenance digests equal its hot state's is staged without
its record (``run_records.data`` NULL): detection reads the stored record in its place.
"""

from __future__ import annotations

from alembic import op

import storage.types

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.alter_column("data", existing_type=storage.types.JSONType, nullable=True)


def downgrade() -> None:
    # Staging is scratch: rows without their record cannot go back to NOT NULL.
    op.execute("DELETE FROM run_records WHERE data IS NULL")
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.alter_column("data", existing_type=storage.types.JSONType, nullable=False)
