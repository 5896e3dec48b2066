"""Alembic migrations: empty and older databases reach head, and head equals the models."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlmodel import SQLModel

from storage.daemon import apply_queue_schema, migrated_here
from storage.engine import alembic_config, current_revision, get_engine, upgrade
from storage.models import Source

HEAD = "0011"


def test_empty_database_reaches_head_and_matches_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    with get_engine(db_url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    upgrade(db_url)  # idempotent
    assert current_revision(db_url) == HEAD


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # the queue's database
def test_the_crawl_queue_tables_are_not_the_migrations_business(db_url: str) -> None:
    """procrastinate's schema is applied by our code, so autogenerate must not propose
    dropping its tables."""
    from procrastinate.schema import SchemaManager

    upgrade(db_url)
    engine = get_engine(db_url)
    assert apply_queue_schema(engine, SchemaManager.get_schema())
    with engine.connect() as conn:
        unfiltered = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        context = MigrationContext.configure(conn, opts={"include_name": migrated_here})
        assert compare_metadata(context, SQLModel.metadata) == []
    assert any(diff[0] == "remove_table" for diff in unfiltered), "the filter is what hides them"


def test_older_database_keeps_its_data_on_upgrade(db_url: str) -> None:
    command.upgrade(alembic_config(db_url), "0001")
    table = Source.__table__
    with get_engine(db_url).begin() as conn:
        conn.execute(
            table.insert().values(
                id="old", name_zh="旧", name_en="Old", jurisdiction="厦门市",
                region_code="350200", base_url="http://example.test/",
            )
        )  # fmt: skip
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    with get_engine(db_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(table)).scalar_one() == 1
