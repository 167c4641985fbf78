"""The two store backends for tests: SQLite always, Postgres when SEQRUN_TEST_POSTGRES names a
server database (e.g. postgresql://postgres@127.0.0.1/seqrun_test; `.ci/run` sets it).

Each Postgres store is a fresh schema of that database, dropped afterwards, so that tests never see
each other's rows. Without the variable the Postgres cases are reported as skipped.
"""
from __future__ import annotations

import contextlib
import os
import pathlib
import uuid
from collections.abc import Iterator

import pytest

POSTGRES = os.environ.get("SEQRUN_TEST_POSTGRES", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.skipif(
    not POSTGRES, reason="SEQRUN_TEST_POSTGRES is not set (a postgresql:// URL to test against)"))]


def _admin_execute(sql: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(sql)


@contextlib.contextmanager
def fresh_store_url(backend: str, directory: pathlib.Path | str, name: str = "t.db") -> Iterator[str]:
    """A URL for an empty store of `backend`: a SQLite file in `directory`, or a new Postgres schema."""
    if backend == "sqlite":
        yield str(pathlib.Path(directory) / name)
        return
    schema = f"seqrun_test_{uuid.uuid4().hex[:12]}"
    _admin_execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in POSTGRES else "?"
    try:
        # Tests need no durability: commits do not wait for the disk.
        yield f"{POSTGRES}{joiner}options=-csearch_path%3D{schema}%20-csynchronous_commit%3Doff"
    finally:
        from runner.store import db

        if not db.is_closed():
            db.close()
        _admin_execute(f"DROP SCHEMA {schema} CASCADE")
