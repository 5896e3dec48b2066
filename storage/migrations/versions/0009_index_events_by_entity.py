"""index events by entity

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 09:00:00

An entity's events across every list and source (``creditwatch entity``, the web app's
entity page) are read by ``entity_id``.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_events_entity_id"), "events", ["entity_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_events_entity_id"), table_name="events")
