"""Opening the database: URL resolution, SQLite pragmas and migrations.

URL forms: a plain path (`seqrun.db`), `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`,
`:memory:`, or a Postgres server: `postgresql://user@host:port/dbname` (also `postgres://`; the
password, if any, from the URL or from libpq's PGPASSWORD / ~/.pgpass). Postgres needs the
`postgres` extra (psycopg 3). Precedence: `--db` option, then `SEQRUN_DB`, then the config's `database`, then
`seqrun.db` in the project directory.

SQLite runs in WAL mode (readers alongside the one writer), with foreign keys on, a busy timeout, and
`synchronous=FULL` so that a committed "in flight" action survives even a power cut — the outbox
depends on it. Throwaway simulation databases may ask for `durable=False`. Past the busy timeout,
a lock another process holds is waited for (`models.Database`), never an error.
"""
from __future__ import annotations

import os
import pathlib

import peewee

from runner.language.diagnostics import UserError
from runner.store.backends import is_postgres_url, postgres
from runner.store.migrations import migrate
from runner.store.models import Database, db

DEFAULT_DB = "seqrun.db"
BUSY_TIMEOUT_S = 10


def resolve_db_url(option: str | None, config_value: str | None = None, project_dir: str | os.PathLike[str] | None = None) -> str:
    url = option or os.environ.get("SEQRUN_DB") or config_value
    if url:
        return url
    return str(pathlib.Path(project_dir or ".") / DEFAULT_DB)


def database_file(url: str) -> str | None:
    """The SQLite file (or ":memory:") a URL names; None for a database on a server."""
    return None if is_postgres_url(url) else sqlite_path(url)


def bound_file() -> str:
    """The SQLite file the models are bound to, or ":memory:" (also for a Postgres server, which
    has no file beside which to keep anything)."""
    return database_file(db.database) or ":memory:"


def bound_name() -> str:
    """The database the models are bound to, as messages may show it (a password never is)."""
    return _redact(db.database)


def sqlite_path(url: str) -> str:
    if url == ":memory:":
        return url
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):] or ":memory:"
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise UserError(f'database URL "{_redact(url)}": scheme "{scheme}" is not supported in this version; use a SQLite path, sqlite:///path or postgresql://user@host/dbname')
    return url


def _redact(url: str) -> str:
    # Never echo a password from a URL.
    if is_postgres_url(url):
        return postgres.redact(url)
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def open_store(url: str, *, durable: bool = True, writable: bool = False) -> peewee.Database:
    """Bind the models to the database at `url`, apply migrations, return the database.

    With `writable`, make sure now that it can be written (for commands that must not start
    otherwise, like `seqrun run`); other commands learn it at their first write (`storage_problem`).
    """
    if not db.is_closed():
        db.close()
    if is_postgres_url(url):
        return _open_postgres(url, writable)
    if not isinstance(db.obj, Database):
        db.initialize(Database(None, lock_type="IMMEDIATE"))
    path = sqlite_path(url)
    if path != ":memory:":
        parent = pathlib.Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise UserError(f'database "{path}": directory {parent} does not exist')
    db.init(path, timeout=BUSY_TIMEOUT_S, pragmas={
        "journal_mode": "wal" if path != ":memory:" else "memory",
        "foreign_keys": 1,
        "synchronous": "full" if durable else "off",
        "cache_size": -64000,
        "temp_store": "memory",
    })
    try:
        db.connect(reuse_if_open=True)
        migrate(db)
        if writable:
            _try_a_write()
    except peewee.DatabaseError as exc:
        raise storage_problem(exc, path) or UserError(f'database "{path}" cannot be opened: {exc}') from None
    return db


def _open_postgres(url: str, writable: bool) -> peewee.Database:
    db.initialize(postgres.open_database(url))
    try:
        migrate(db)
        if writable:
            _try_a_write()
    except peewee.DatabaseError as exc:
        raise UserError(f'database "{postgres.redact(url)}" cannot be used: {str(exc).strip().splitlines()[0]}') from None
    return db


def _try_a_write() -> None:
    """A write statement that changes nothing, rolled back: SQLite refuses it on a read-only database
    (a file or directory without write access, a read-only mount, an immutable file)."""
    with db.atomic() as txn:
        db.execute_sql("UPDATE schema_migrations SET version = version WHERE 1 = 0")
        txn.rollback()


def storage_problem(exc: BaseException, path: str | None = None) -> UserError | None:
    """A database error that is about the file and its directory, said as what the user can fix;
    None for any other error."""
    text = str(exc)
    path = path or str(db.database)
    where = os.path.dirname(os.path.abspath(path))
    if text.startswith("attempt to write a readonly database"):
        return UserError(f'database "{path}" is read-only: seqrun needs to write it, and to create '
                         f'{os.path.basename(path)}-wal and -shm beside it in {where}; check the permissions of '
                         "both (and that the disk is not mounted read-only)")
    if text.startswith("unable to open database file"):
        return UserError(f'database "{path}" cannot be opened: SQLite needs to read and write it and to create '
                         f'{os.path.basename(path)}-wal and -shm beside it; check that {where} is writable')
    return None
