"""Write transactions: how code outside the store opens, commits and leaves one.

`writing()` wraps peewee's `atomic`: a transaction at the top level, a savepoint inside another (a
dry run's outer transaction, rolled back at its end). With `immediate`, the write lock is taken at
the start (SQLite's `BEGIN IMMEDIATE`): what the transaction reads cannot change before it commits.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import peewee

from runner.store.backends import postgres
from runner.store.models import db


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


@contextlib.contextmanager
def writing(*, immediate: bool = False) -> Iterator[Transaction]:
    """A write transaction around the block: committed at its end, rolled back if it raises."""
    lock = "IMMEDIATE" if immediate else None
    with db.atomic(lock) as handle:
        yield Transaction(handle, lock)
