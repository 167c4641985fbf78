"""Opening the database: URL resolution, SQLite pragmas and migrations.

URL forms: a plain path (`seqrun.db`), `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`,
or `:memory:`. Precedence: `--db` option, then `SEQRUN_DB`, then the config's `database`, then
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

from ..diagnostics import UserError
from .migrations import migrate
from .models import db

DEFAULT_DB = "seqrun.db"
BUSY_TIMEOUT_S = 10


def resolve_db_url(option: str | None, config_value: str | None = None, project_dir: str | os.PathLike[str] | None = None) -> str:
    url = option or os.environ.get("SEQRUN_DB") or config_value
    if url:
        return url
    return str(pathlib.Path(project_dir or ".") / DEFAULT_DB)


def sqlite_path(url: str) -> str:
    if url == ":memory:":
        return url
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):] or ":memory:"
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise UserError(f'database URL "{_redact(url)}": scheme "{scheme}" is not supported in this version; use a SQLite path or sqlite:///path')
    return url


def _redact(url: str) -> str:
    # Never echo a password from a URL.
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def open_store(url: str, *, durable: bool = True) -> peewee.SqliteDatabase:
    """Bind the models to the database at `url`, apply migrations, return the database."""
    path = sqlite_path(url)
    if path != ":memory:":
        parent = pathlib.Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise UserError(f'database "{path}": directory {parent} does not exist')
    if not db.is_closed():
        db.close()
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
    except peewee.DatabaseError as exc:
        raise UserError(f'database "{path}" cannot be opened: {exc}') from None
    return db
