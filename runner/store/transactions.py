"""Write transactions: how code outside the store opens, commits and leaves one.

`writing()` wraps peewee's `atomic`: a transaction at the top level, a savepoint inside another (a
dry run's outer transaction, rolled back at its end). With `immediate`, the write lock is taken at
the start (SQLite's `BEGIN IMMEDIATE`): what the transaction reads cannot change before it commits.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

import peewee

from runner.store import written
from runner.store.backends import postgres
from runner.store.models import ROLLBACKS, _Savepoint, db

T = TypeVar("T")


class Transaction:
    """The transaction `writing()` opened."""

    __slots__ = ("_handle", "_lock")

    def __init__(self, handle: peewee._transaction | peewee._savepoint, lock: str | None) -> None:
        self._handle = handle
        self._lock = lock

    @property
    def nested(self) -> bool:
        """Inside an outer transaction: nothing is committed for real before the outer one is."""
        return isinstance(self._handle, peewee._savepoint)

    @property
    def excludes_writers(self) -> bool:
        """No other connection can write before this transaction ends: SQLite's IMMEDIATE transaction
        holds the database's one write lock from its BEGIN. (Postgres lets others commit meanwhile.)"""
        return self._lock == "IMMEDIATE" and not self.nested and not postgres.is_postgres(db)

    def commit(self) -> None:
        """Commit what is written so far and go on in a new transaction (nested: a new savepoint)."""
        self._handle.commit()

    def rollback(self) -> None:
        """Undo what is written so far (the block goes on in a new, empty transaction)."""
        self._handle.rollback()

    @contextlib.contextmanager
    def released(self) -> Iterator[None]:
        """Commit, run the block holding no transaction (no lock while an external call is in
        flight), then begin again as the transaction began. Nested, the savepoint is released and
        taken again around the block: the outer transaction stays open."""
        if self.nested:
            self._handle.commit()
            yield
            return
        self._handle.commit(begin=False)
        try:
            yield
        finally:
            db.begin(self._lock)


class _Owner:
    sole = False
    generation = 0  # moves at every start and end of a `sole_writer` block


@contextlib.contextmanager
def sole_writer() -> Iterator[None]:
    """Declare, for the block, that this process is the only one writing the open database (a
    simulation's throwaway store): what the store keeps in memory of rows it wrote stays true across
    transactions, until a rollback (`rollbacks`) undoes some of them. Only ever on SQLite."""
    _Owner.sole, _Owner.generation = not postgres.is_postgres(db), _Owner.generation + 1
    if _Owner.sole:
        written.start(written.cascades_of(_foreign_keys()))
    try:
        yield
    finally:
        written.stop()
        _Owner.sole, _Owner.generation = False, _Owner.generation + 1


def _foreign_keys() -> list[tuple[str, str, str, str]]:
    """(child table, parent table, on update, on delete) of every foreign key of the SQLite store."""
    keys = []
    for (table,) in db.execute_sql("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
        # foreign_key_list: id, seq, parent table, from, to, on_update, on_delete, match
        for row in db.execute_sql("SELECT * FROM pragma_foreign_key_list(?)", (table,)).fetchall():
            keys.append((table, row[2], row[5], row[6]))
    return keys


def is_sole_writer() -> bool:
    return _Owner.sole


def kept_rows_key() -> tuple[int, int] | None:
    """What a cache of rows this process wrote is good for: None outside a `sole_writer` block (keep
    nothing across statements: another process may write), else a key that changes when the cache
    must be dropped (a new block, or a rollback)."""
    return (_Owner.generation, rollbacks()) if _Owner.sole else None


class KeptRead(Generic[T]):
    """One read of some tables that a simulation need not repeat: its answer is kept while this
    process is the store's only writer and has written none of the tables since (nor rolled back
    anything: `kept_rows_key`). Outside a `sole_writer` block every call reads (another process may
    have written). Only for answers that depend on nothing but the tables' rows."""

    __slots__ = ("tables", "_stamp", "_answer")

    def __init__(self, *tables: str) -> None:
        self.tables = tables
        written.watch(tables)
        self._stamp: object = None
        self._answer: T | None = None

    def read(self, query: Callable[[], T]) -> T:
        # (the stamp is taken before the query: a write meanwhile makes the next call read again)
        answer = self.kept(query)
        return query() if answer is None else answer

    def kept(self, query: Callable[[], T]) -> T | None:
        """`read`'s answer where one may be kept (a simulation), else None without querying: for a
        shortcut in front of a query the caller makes anyway."""
        stamp = self.stamp()
        if stamp is None:
            return None
        if stamp != self._stamp:
            self._answer, self._stamp = query(), stamp
        return self._answer

    def stamp(self) -> tuple[object, ...] | None:
        """What the answer kept is good for (None: nothing may be kept); see `read`."""
        key, counts = kept_rows_key(), written.stamp(self.tables)
        return None if key is None or counts is None else (key, counts)


def rollbacks() -> int:
    """How many rollbacks the connection has seen (a transaction's or a savepoint's): a cache of rows
    this process wrote is good only while this number stays the same."""
    return ROLLBACKS[0]


def in_transaction() -> bool:
    """Whether a transaction is open on this thread's connection."""
    return bool(db.in_transaction())


class writing:
    """A write transaction around the block: committed at its end, rolled back if it raises.

    What `db.atomic()` does (a transaction at the top level, a savepoint inside another), straight
    on the bound database: every lead of a simulation takes one inside its batch's transaction,
    and peewee's layers cost twice the statements themselves."""

    __slots__ = ("_handle", "_lock")

    def __init__(self, *, immediate: bool = False) -> None:
        self._lock = "IMMEDIATE" if immediate else None

    def __enter__(self) -> Transaction:
        database = db.obj
        if database.transaction_depth() == 0:
            handle = database.transaction(self._lock)
        elif isinstance(database.top_transaction(), peewee._manual):
            raise ValueError("Cannot enter atomic commit block while in manual commit mode.")
        else:
            handle = _Savepoint(database)
        self._handle = handle.__enter__()
        return Transaction(self._handle, self._lock)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        result: bool | None = self._handle.__exit__(exc_type, exc, tb)
        return result
