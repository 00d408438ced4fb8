"""Every store test runs against both backends: ``store_db`` is a SQLite file path or the URI
of a fresh PostgreSQL database (a real server, tests.unit.helpers.postgres_server)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.helpers.postgres_server import empty_store, postgres_server

__all__ = ["postgres_server", "store_db"]


@pytest.fixture(params=["sqlite", "postgres"])
def store_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "r.db")
    return empty_store(request.getfixturevalue("postgres_server"))
