"""A damaged database file is the user's to repair, not a bug, and never a reason for a partial answer.

Any command that meets a damaged file stops with exit 1 (`runner.cli.main` asks `damage_problem`), and
`run` does not charge the lead it was working on for it (`damaged`).

Reads that cover the whole store (export, status, `leads list`) run inside `reading()`: SQLite's
"database disk image is malformed" and its kin become a `UserError` naming the file and the command
that checks it. Export also runs `quick_check` first and `count_rows` afterwards: rows that SQLite
loses without noticing (a lead gone from under its actions) would otherwise just make the file shorter.
"""
from __future__ import annotations

import contextlib
import shlex
import sqlite3
from collections.abc import Iterator

import peewee

from runner.language.diagnostics import UserError
from runner.store.models import db

#: SQLite result codes that mean the file itself cannot be read (extended codes share the prefix).
_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR", "SQLITE_FORMAT")


def check_command(*pragmas: str) -> str:
    path = db.database
    return f"check it with: sqlite3 {shlex.quote(path)} " + " ".join(f'"PRAGMA {p}"' for p in pragmas)


@contextlib.contextmanager
def reading(consequence: str = "") -> Iterator[None]:
    """Turn a read error caused by a damaged file into a UserError; `consequence` is added to it
    (e.g. "nothing was exported")."""
    try:
        yield
    except (peewee.DatabaseError, sqlite3.DatabaseError) as exc:
        problem = damage_problem(exc, consequence)
        if problem is None:
            raise
        raise problem from None


def damaged(exc: BaseException) -> bool:
    """Whether `exc` (or the sqlite3 error under it) says the database file itself cannot be read."""
    name = getattr(_sqlite_error(exc), "sqlite_errorname", "") or ""
    return name.startswith(_DAMAGE)


def damage_problem(exc: BaseException, consequence: str = "") -> UserError | None:
    """The UserError for a damaged file (see `reading`), or None for any other error."""
    if not damaged(exc):
        return None
    return UserError(f"the database {db.database} cannot be read: {_sqlite_error(exc)}; {_with(consequence)}"
                     f"{check_command('integrity_check')}")


def quick_check(consequence: str = "") -> None:
    """SQLite's structural check of every table and index (cheaper than integrity_check). Postgres
    has no such pragma and checks its own pages as it reads them: nothing to do there."""
    from runner.store.backends import postgres

    if postgres.is_postgres(db):
        return
    with reading(consequence):
        result = [row[0] for row in db.execute_sql("PRAGMA quick_check").fetchall()]
    if result != ["ok"]:
        raise UserError(f"the database {db.database} is damaged (SQLite's quick_check found problems); "
                        f"{_with(consequence)}{check_command('integrity_check')}")


def count_rows(table: str) -> int:
    assert table in ("action", "event", "transition", "enrollment")
    return db.execute_sql(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def _with(consequence: str) -> str:
    return f"{consequence}; " if consequence else ""


def _sqlite_error(exc: BaseException) -> BaseException:
    """The sqlite3 exception under peewee's wrapper (peewee re-raises it as its own class)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sqlite3.Error):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc
