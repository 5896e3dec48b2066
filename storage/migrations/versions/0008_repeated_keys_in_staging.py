"""repeated keys in staging

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 17:25:00

A run's staged entries count how often their key came again in the run, and whether it
came with other content: a repeated row or a key collision, judged when the run finishes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repeats", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(
            sa.Column("collided", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("run_records", schema=None) as batch_op:
        batch_op.drop_column("collided")
        batch_op.drop_column("repeats")
