"""Postgres's side of the backend differences (see `backends/__init__.py`), and the database class.

The rest of the store writes SQL once, in SQLite's spelling with `?` placeholders; `PostgresDatabase`
turns `?` into psycopg's `%s` (and a literal `%` into `%%`) and translates the migrations' DDL.
Several processes share one Postgres database, so what SQLite gets from its single writer is asked
for explicitly here: claims skip rows another runner has locked (`FOR UPDATE SKIP LOCKED`), a limit
charge holds a per-sender advisory lock until its transaction ends, and migrations hold a
session advisory lock.
"""
from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import peewee

from runner.language.diagnostics import UserError
from runner.store.fields import to_db_time
from runner.store.models import db

SCHEMES = ("postgresql://", "postgres://")
_MIGRATION_LOCK = 7_362_105  # advisory lock keys: one for migrations, one space for senders' usage
_USAGE_LOCKS = 7_362_106
CONNECT_TIMEOUT_S = 10
#: due leads claimed at a time (`store.claims.share`)
CLAIM_SHARE = 1

#: `?` outside quotes becomes `%s`; every `%` (psycopg reads them even inside quotes) is doubled.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|\?|%")


@functools.lru_cache(maxsize=2048)
def to_psycopg(sql: str) -> str:
    def swap(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return text.replace("%", "%%")
    return _TOKENS.sub(swap, sql)


class PostgresDatabase(peewee.PostgresqlDatabase):
    """peewee's Postgres database on psycopg 3, taking the store's `?` SQL (peewee's own queries are
    built with `?` too, `param`) and SQLite's transaction lock types (which mean nothing here)."""

    param = "?"

    def init(self, database: Any, **kwargs: Any) -> None:
        kwargs.setdefault("prefer_psycopg3", True)
        super().init(database, **kwargs)

    def begin(self, isolation_level: Any = None) -> None:
        if isolation_level in ("IMMEDIATE", "DEFERRED", "EXCLUSIVE"):
            isolation_level = None  # one writer at a time is SQLite's; Postgres locks rows
        super().begin(isolation_level)

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        return super().execute_sql(to_psycopg(sql), params)


def is_postgres(database: Any) -> bool:
    return isinstance(getattr(database, "obj", database), PostgresDatabase)


def open_database(url: str) -> PostgresDatabase:
    """A connected database for `url`; a clear UserError when the driver is missing or the server
    cannot be reached (naming the host, never the password)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        raise UserError(f'database "{redact(url)}": the Postgres driver is not installed; '
                        "install it with: pip install 'seqrun[postgres]'") from None
    _check_port(url)
    conninfo = "postgresql://" + url.split("://", 1)[1]
    database = PostgresDatabase(conninfo, connect_timeout=CONNECT_TIMEOUT_S)
    try:
        database.connect()
    except peewee.OperationalError as exc:
        raise UserError(f'database "{redact(url)}": cannot connect to Postgres on {where(url)}: '
                        f"{_first_line(exc, url)}") from None
    return database


#: libpq also takes the password as a query parameter (`?password=...`)
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact(url: str) -> str:
    """The URL without its password, whether in `user:password@` or in `?password=` (user names and
    hosts are kept: they help find the problem)."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{user}:***@{host}").geturl()


def has_password(url: str) -> bool:
    """Whether the URL carries a password, in `user:password@` or in `?password=`."""
    try:
        return urlsplit(url).password is not None or _QUERY_PASSWORD.search(url) is not None
    except ValueError:
        return False


def _check_port(url: str) -> None:
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        port = parts.netloc.rsplit("@", 1)[-1].rsplit(":", 1)[-1]
        raise UserError(f'database "{redact(url)}": the port "{port}" is not a number from 1 to 65535') from None


def where(url: str) -> str:
    """The server the URL names, as libpq reads it: the netloc's host and port, else `?host=` and
    `?port=` (a host starting with `/` is a socket directory), else the local socket."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or [""])[0]
    port = parts.port or (query.get("port") or [""])[0]
    if not host:
        return "the local socket"
    if host.startswith("/"):
        return f"the socket in {host}"
    return f"{host}:{port}" if port else host


def _first_line(exc: BaseException, url: str) -> str:
    text = (str(exc).strip().splitlines() or ["unknown error"])[0]
    for password in (urlsplit(url).password, *(m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(url))):
        if password:
            text = text.replace(password, "***")
    return text


def native_sql(sql: str) -> str:
    return to_psycopg(sql)


_DDL = [
    (re.compile(r"\bid INTEGER PRIMARY KEY\b"), "id SERIAL PRIMARY KEY"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
]


def translate_ddl(sql: str) -> str:
    """A migration statement in SQLite's spelling, as Postgres wants it: row ids from a sequence,
    and REAL as double precision (SQLite's REAL is 8 bytes, Postgres's only 4)."""
    for pattern, replacement in _DDL:
        sql = pattern.sub(replacement, sql)
    return sql


def claim_due(now: dt.datetime, limit: int, owner: str, lease_until: dt.datetime) -> list[int]:
    """Take up to `limit` due active enrollments, earliest first, in one statement; rows another
    runner is claiming at this moment are skipped rather than waited for."""
    rows = db.execute_sql(
        "WITH due AS (SELECT id, due_at FROM enrollment WHERE state = 'active' AND due_at <= ? "
        "ORDER BY due_at LIMIT ? FOR UPDATE SKIP LOCKED) "
        "UPDATE enrollment e SET due_at = ?, lease_owner = ? FROM due WHERE e.id = due.id "
        "RETURNING e.id, due.due_at",
        (to_db_time(now), limit, to_db_time(lease_until), owner)).fetchall()
    return [i for i, _ in sorted(rows, key=lambda row: (row[1], row[0]))]


def claim_ids(ids: list[int], now: dt.datetime, owner: str, lease_until: dt.datetime) -> list[int]:
    """Claim these enrollments if they are still due and active (rows being claimed elsewhere are
    skipped); the ids got, in the order given."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    got = {r[0] for r in db.execute_sql(
        f"WITH mine AS (SELECT id FROM enrollment WHERE id IN ({marks}) AND state = 'active' AND due_at <= ? "
        f"FOR UPDATE SKIP LOCKED) UPDATE enrollment e SET due_at = ?, lease_owner = ? FROM mine "
        f"WHERE e.id = mine.id RETURNING e.id",
        (*ids, to_db_time(now), to_db_time(lease_until), owner)).fetchall()}
    return [i for i in ids if i in got]


def lock_sender_usage(sender_id: int) -> None:
    """Serialise limit charges of one sender until the transaction ends: a sender's cap is a sum over
    its sequences' rows, which no single row lock covers."""
    db.execute_sql("SELECT pg_advisory_xact_lock(?, ?)", (_USAGE_LOCKS, sender_id))


def greatest(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})"


def json_text(column: str) -> str:
    return f"({column}::json ->> ?)"


def json_path(name: str) -> str:
    return name


def lock_migrations(database: Any) -> None:
    """Two processes opening a new database at once: the second waits here, then finds the
    migrations applied."""
    database.execute_sql("SELECT pg_advisory_lock(?)", (_MIGRATION_LOCK,))


def unlock_migrations(database: Any) -> None:
    database.execute_sql("SELECT pg_advisory_unlock(?)", (_MIGRATION_LOCK,))


def ledger_high_water() -> int:
    """The highest id in the event ledger below which no row can still appear. A sequence hands out
    ids when rows are inserted, not when they are committed: another runner's transaction may hold
    a lower id than a row already committed. A SHARE lock on the table waits for every transaction
    inserting into it to end (and holds new inserts back for the instant it is held), so every id
    up to the maximum it then reads is committed or never will be."""
    with db.atomic():
        db.execute_sql("LOCK TABLE event IN SHARE MODE")
        return int(db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM event").fetchone()[0])


@functools.lru_cache(maxsize=64)
def insert_or_ignore(table: str, columns: tuple[str, ...]) -> str:
    """An INSERT of one row that skips it when it conflicts with a stored one (a unique constraint;
    unlike SQLite's `OR IGNORE`, a NOT NULL violation still fails), returning the new row's id (no
    row when skipped)."""
    return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            "ON CONFLICT DO NOTHING RETURNING id")
