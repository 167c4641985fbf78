"""Rows a simulation wrote, kept in memory so that it does not read them back (issue 6).

While this process is the only writer of the store (`transactions.sole_writer`), what it wrote stays
true across transactions until a rollback undoes some of it: a store module may then keep a copy of
rows it reads again and again, updated by its own writes (every write still goes to the database,
as before). `Kept.rows()` gives that copy, empty again whenever `kept_rows_key()` moves (a new
simulation, a rollback), and None outside a `sole_writer` block, where nothing is kept across
statements (several runners may share the database).
"""
from __future__ import annotations

from typing import Any, Generic, TypeVar

from runner.store.transactions import kept_rows_key

K = TypeVar("K")
V = TypeVar("V")


class Kept(Generic[K, V]):
    """One store module's copy of some rows, as a dict of its own making."""

    __slots__ = ("_key", "_rows")

    def __init__(self) -> None:
        self._key: Any = None
        self._rows: dict[K, V] = {}

    def rows(self) -> dict[K, V] | None:
        """The copy (to read and to update after a write), or None when nothing may be kept."""
        key = kept_rows_key()
        if key != self._key:
            self._rows.clear()
            self._key = key
        return None if key is None else self._rows
