"""SQLite's side of the backend differences (see `backends/__init__.py`).

SQLite has one writer at a time: a transaction opened IMMEDIATE holds the write lock from its
BEGIN, so a read followed by a write inside it cannot be overtaken by another process.
"""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from runner.store.fields import to_db_time
from runner.store.models import db

#: due leads claimed at a time (`store.claims.share`): a claim is a commit of its own
CLAIM_SHARE = 20


def native_sql(sql: str) -> str:
    return sql  # the store's SQL is written with SQLite's `?` placeholders


def translate_ddl(sql: str) -> str:
    return sql  # the migrations are written in SQLite's dialect


def claim_due(now: dt.datetime, limit: int, owner: str, lease_until: dt.datetime) -> list[int]:
    """Take up to `limit` due active enrollments, earliest first: a plain read of the due ids, then
    `claim_ids`' one guarded UPDATE, which SQLite runs whole under its write lock. A row another
    process claimed between the two is no longer due (its `due_at` moved a lease ahead), so the
    guard leaves it out: no lead is claimed twice, and no write transaction is opened when nothing
    is due (most ticks of a quiet campaign)."""
    ids = [r[0] for r in db.execute_sql(
        "SELECT id FROM enrollment WHERE state = 'active' AND due_at <= ? ORDER BY due_at LIMIT ?",
        (to_db_time(now), limit)).fetchall()]
    return claim_ids(ids, now, owner, lease_until)


def claim_ids(ids: list[int], now: dt.datetime, owner: str, lease_until: dt.datetime) -> list[int]:
    """Claim these enrollments if they are still due and active; the ids got, in the order given."""
    if not ids:
        return []
    marks = ", ".join("?" for _ in ids)
    got = {r[0] for r in db.execute_sql(
        f"UPDATE enrollment SET due_at = ?, lease_owner = ? WHERE id IN ({marks}) AND state = 'active' "
        f"AND due_at <= ? RETURNING id", (to_db_time(lease_until), owner, *ids, to_db_time(now))).fetchall()}
    return [i for i in ids if i in got]


def lock_sender_usage(sender_id: int) -> None:
    """Nothing to do: the charge runs inside the lead's IMMEDIATE transaction, which holds the
    database's one write lock."""


def greatest(a: str, b: str) -> str:
    return f"MAX({a}, {b})"


def json_text(column: str) -> str:
    """A JSON text column's member (the path is the parameter that follows: `$.name`)."""
    return f"json_extract({column}, ?)"


def json_path(name: str) -> str:
    return f"$.{name}"


def lock_migrations(database: Any) -> None:
    """Migrations run in IMMEDIATE transactions: a second process waits, then sees them applied."""


def unlock_migrations(database: Any) -> None:
    pass


def ledger_high_water() -> int:
    """The highest id in the event ledger. SQLite has one writer: every id below it is committed
    (or was never used), so a reader that goes up to it in id order skips nothing."""
    return int(db.execute_sql("SELECT COALESCE(MAX(id), 0) FROM event").fetchone()[0])


@functools.lru_cache(maxsize=64)
def insert_or_ignore(table: str, columns: tuple[str, ...]) -> str:
    """An INSERT of one row that skips it, instead of failing, when it breaks a constraint (a
    unique one, and also NOT NULL: SQLite's `OR IGNORE`), returning the new row's id (no row when
    skipped)."""
    return (f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)}) "
            "RETURNING id")
