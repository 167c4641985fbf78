"""Which tables this process wrote, counted while it is the store's only writer
(`transactions.sole_writer`): what it read of a table that it has not written since is still what
the table holds, so a simulation need not read it again (`transactions.KeptRead`).

Every statement goes through `models.Database.execute_sql` (or `rows.execute_many`), which hands
`note` those that are not a SELECT. A table whose rows go with another's (a foreign key with ON
DELETE or ON UPDATE CASCADE / SET NULL / SET DEFAULT) counts as written whenever that one is. A
write by another thread (the webhook receiver of `simulate --wire`, on its own connection) counts
for every table, when it runs and when it is committed: only then does this thread see it.
Outside a `sole_writer` block nothing is counted (and nothing is kept).
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Literal

#: the table a writing statement names first: its target (SQLite's own and peewee's spellings)
_TARGET = re.compile(r'\b(?:INSERT(?:\s+OR\s+\w+)?\s+INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)\s+'
                     r'["`\[]?(\w+)', re.IGNORECASE)
_KNOWN_STATEMENTS = 4096  # statement texts whose tables are remembered (parsed again past that)
#: statements that write no table, told apart without parsing them (a savepoint per lead and step)
_NO_WRITE = ("SELECT", "SAVEPOINT", "RELEASE", "ROLLBACK", "BEGIN", "COMMIT", "PRAGMA")


class _Counts:
    thread: int | None = None  # the sole writer's thread; None: nothing is counted
    cascades: Mapping[str, frozenset[str]] = {}  # table -> tables whose rows may change with its rows
    tables: dict[str, int] = {}
    others = 0  # writes of other threads (their connections)
    targets: dict[str, frozenset[str] | Literal[False]] = {}  # statement text -> the watched tables it writes (False: none, not a write)
    watched: set[str] = set()  # the tables some `KeptRead` reads: only their writes are counted


def start(cascades: Mapping[str, frozenset[str]]) -> None:
    """Count the writes of this thread from now on; `cascades`: see `cascades_of`."""
    _Counts.thread = threading.get_ident()
    _Counts.cascades = cascades
    _Counts.tables = {}
    _Counts.targets = {}


def watch(tables: Iterable[str]) -> None:
    """Count the writes of these tables (a `KeptRead` of them exists)."""
    _Counts.watched.update(tables)
    _Counts.targets = {}


def stop() -> None:
    _Counts.thread = None
    _Counts.tables = {}
    _Counts.targets = {}


def note(sql: str) -> None:
    """A statement ran (on this thread: it sees the write from now on). What it writes is worked
    out once per statement text: False for one that writes nothing (a SELECT, a savepoint)."""
    if _Counts.thread is None:
        return
    tables = _Counts.targets.get(sql)
    if tables is None:
        tables = False if sql.startswith(_NO_WRITE) else (tables_written(sql, _Counts.cascades) & _Counts.watched)
        if len(_Counts.targets) >= _KNOWN_STATEMENTS:
            _Counts.targets.clear()
        _Counts.targets[sql] = tables
    if tables is False:
        return
    if threading.get_ident() != _Counts.thread:
        _Counts.others += 1
        return
    counts = _Counts.tables
    for table in tables:
        counts[table] = counts.get(table, 0) + 1


def note_commit() -> None:
    """A transaction was committed: another thread's writes are seen by this one from now on."""
    if _Counts.thread is not None and threading.get_ident() != _Counts.thread:
        _Counts.others += 1


def stamp(tables: Iterable[str]) -> tuple[int, ...] | None:
    """A value that changes whenever one of `tables` is written; None when nothing is counted or
    this is not the sole writer's thread (read the store)."""
    if _Counts.thread is None or threading.get_ident() != _Counts.thread:
        return None
    counts = _Counts.tables
    return (_Counts.others, *(counts.get(table, 0) for table in tables))


def tables_written(sql: str, cascades: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The table a statement writes and those whose rows may change with it; none for a statement
    that writes nothing (SAVEPOINT, RELEASE, a WITH that only selects)."""
    match = _TARGET.search(sql)
    if match is None:
        return frozenset()
    target = match.group(1).lower()
    return frozenset({target, *cascades.get(target, ())})


def cascades_of(foreign_keys: Iterable[tuple[str, str, str, str]]) -> dict[str, frozenset[str]]:
    """From (child table, parent table, on update, on delete) of every foreign key: per table, the
    tables whose rows a write of it may change (through chains of them)."""
    direct: dict[str, set[str]] = {}
    for child, parent, on_update, on_delete in foreign_keys:
        if on_update.upper() not in ("NO ACTION", "RESTRICT") or on_delete.upper() not in ("NO ACTION", "RESTRICT"):
            direct.setdefault(parent.lower(), set()).add(child.lower())
    closed: dict[str, frozenset[str]] = {}
    for parent in direct:
        seen: set[str] = set()
        todo = [parent]
        while todo:
            for child in direct.get(todo.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    todo.append(child)
        closed[parent] = frozenset(seen)
    return closed
