"""The SQL of the runner table: which `seqrun run` (and `seqrun serve`) processes work on the database.

A runner registers when it starts, writes a heartbeat while it runs, and marks itself stopped when it
ends. A runner that stopped writing heartbeats (killed, its machine gone, cut off from the database)
is marked gone by whichever runner notices first; see `runner.engine.presence` for the rules.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from runner.store.fields import from_db_time, to_db_time
from runner.store.models import db

#: how long a stopped or gone runner's row is kept (so `status` can still name it for a while)
KEEP_ENDED = dt.timedelta(days=7)


@dataclass(frozen=True)
class RunnerRow:
    identity: str
    host: str
    pid: int
    command: str
    started_at: dt.datetime
    heartbeat_at: dt.datetime
    state: str


_COLUMNS = "id, host, pid, command, started_at, heartbeat_at, state"


def _row(values: tuple[object, ...]) -> RunnerRow:
    identity, host, pid, command, started, beat, state = values
    return RunnerRow(str(identity), str(host), int(pid), str(command),  # type: ignore[call-overload]
                     from_db_time(str(started)), from_db_time(str(beat)), str(state))


def register_runner(identity: str, host: str, pid: int, command: str, now: dt.datetime) -> None:
    """Record a runner that starts now (and forget the rows of runners that ended long ago)."""
    with db.atomic():
        db.execute_sql("DELETE FROM runner WHERE state <> 'running' AND heartbeat_at < ?",
                       (to_db_time(now - KEEP_ENDED),))
        db.execute_sql(f"INSERT INTO runner ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, 'running')",
                       (identity, host, pid, command, to_db_time(now), to_db_time(now)))


def beat(identity: str, now: dt.datetime) -> bool:
    """Write a runner's heartbeat; False when it is no longer running in the table (another runner
    found its heartbeat stale and took its leads back): it must make no further external call."""
    return db.execute_sql("UPDATE runner SET heartbeat_at = ? WHERE id = ? AND state = 'running'",
                          (to_db_time(now), identity)).rowcount == 1


def end_runner(identity: str, now: dt.datetime) -> None:
    """A runner that stops in order."""
    db.execute_sql("UPDATE runner SET state = 'stopped', stopped_at = ? WHERE id = ? AND state = 'running'",
                   (to_db_time(now), identity))


def running_runners() -> list[RunnerRow]:
    """Every runner marked running, oldest first (some may be stale: see `runner.engine.presence`)."""
    rows = db.execute_sql(f"SELECT {_COLUMNS} FROM runner WHERE state = 'running' ORDER BY started_at, id").fetchall()
    return [_row(r) for r in rows]


def runner(identity: str) -> RunnerRow | None:
    row = db.execute_sql(f"SELECT {_COLUMNS} FROM runner WHERE id = ?", (identity,)).fetchone()
    return _row(row) if row else None


def known_runners(identities: list[str]) -> dict[str, RunnerRow]:
    """The rows of these runners that the table has (runners of an older seqrun have none)."""
    if not identities:
        return {}
    marks = ", ".join("?" for _ in identities)
    rows = db.execute_sql(f"SELECT {_COLUMNS} FROM runner WHERE id IN ({marks})", tuple(identities)).fetchall()
    return {r.identity: r for r in map(_row, rows)}


def mark_gone(identity: str, now: dt.datetime, *, stale_before: dt.datetime | None = None) -> bool:
    """Mark a running runner gone; with `stale_before`, only if its heartbeat is still older than
    that (it did not come back meanwhile). True when this call marked it."""
    if stale_before is None:
        return db.execute_sql("UPDATE runner SET state = 'gone', stopped_at = ? WHERE id = ? AND state = 'running'",
                              (to_db_time(now), identity)).rowcount == 1
    return db.execute_sql(
        "UPDATE runner SET state = 'gone', stopped_at = ? WHERE id = ? AND state = 'running' AND heartbeat_at < ?",
        (to_db_time(now), identity, to_db_time(stale_before))).rowcount == 1
