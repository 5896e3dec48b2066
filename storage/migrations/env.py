"""Alembic environment: the project's engine and SQLModel metadata."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from storage.daemon import migrated_here
from storage.engine import get_engine

config = context.config
engine = config.attributes.get("engine") or get_engine()

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=SQLModel.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=migrated_here,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
