"""A real PostgreSQL server for the tests (scripts/setup-postgres.sh: Debian's package, a
throw-away cluster on a unix socket), and an empty report store in it per test.

``postgres_server`` is a session fixture: the server starts once, on first use, and is
stopped by its PID at the end.  Import it into a test module (or conftest) to use it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from edrfleet.paths import SCRIPTS

SCRIPT = SCRIPTS / "setup-postgres.sh"


def _installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URI of a database on a running server (login ``edrfleet``, trusted)."""
    if os.geteuid() != 0 and not _installed():
        pytest.skip("PostgreSQL is not installed and installing needs root "
                    "(fix: scripts/setup-postgres.sh install, as root)")
    # /tmp, not pytest's deep tmp dirs: a unix socket path must fit in 107 bytes.
    home = Path(tempfile.mkdtemp(prefix="edrfleet-pg-", dir="/tmp"))
    try:
        # Throw-away data: no fsync (the shared disk is slow and the shutdown checkpoint
        # would flush every test's writes).
        out = subprocess.run(["bash", str(SCRIPT), "start", str(home), "-c", "fsync=off",
                              "-c", "full_page_writes=off"], capture_output=True, text=True,
                             timeout=900)
        if out.returncode != 0:
            pytest.fail(f"could not start PostgreSQL: {out.stderr[-2000:]}")
        server = out.stdout.strip()
        import psycopg

        with psycopg.connect(server, autocommit=True) as db:
            db.execute("CREATE DATABASE edrfleet_test")
        yield server.replace("/postgres?", "/edrfleet_test?", 1)
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop", str(home)], timeout=120, check=False)
        shutil.rmtree(home, ignore_errors=True)


def empty_store(database: str) -> str:
    """``database`` (a URI) with no report store in it (the ``edrfleet`` schema dropped)."""
    import psycopg

    with psycopg.connect(database, autocommit=True) as db:
        db.execute("DROP SCHEMA IF EXISTS edrfleet CASCADE")
    return database
