"""Alembic migrations: empty and older databases reach head, and head equals the models."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select
from sqlmodel import SQLModel

from storage.engine import alembic_config, current_revision, get_engine, upgrade
from storage.models import Source

HEAD = "0010"


def test_empty_database_reaches_head_and_matches_the_models(db_url: str) -> None:
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    with get_engine(db_url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    upgrade(db_url)  # idempotent
    assert current_revision(db_url) == HEAD


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
