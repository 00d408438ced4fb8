"""Which store a ``--db`` value names: the one module that knows both backends (the backends
import the protocol in :mod:`edrfleet.fleet.report.store`, so it cannot choose between them)."""

from __future__ import annotations

import os

from edrfleet.fleet.report.store import DEFAULT_DB, POSTGRES_SCHEMES, Store


def is_postgres(db: str | os.PathLike[str]) -> bool:
    return isinstance(db, str) and db.startswith(POSTGRES_SCHEMES)


def open_store(db: str | os.PathLike[str] = DEFAULT_DB) -> Store:
    """The store ``db`` names: a ``postgresql://`` URI, else a SQLite file path.

    Raises:
        OSError: the file cannot be created or opened, or the server cannot be reached.
        ValueError: not a report database of this version (or a bad URI).
    """
    if is_postgres(db):
        from edrfleet.fleet.report.postgres_store import PostgresStore

        return PostgresStore(str(db))
    from edrfleet.fleet.report.sqlite_store import SqliteStore

    return SqliteStore(db)
