"""Runner liveness: which runners work on the database, and telling a gone one from a live one.

Every `seqrun run` (and later `seqrun serve`) has a row in the `runner` table under the identity it
writes on its leases (`host:pid:nonce`, runner.engine.leases). While it runs, a thread writes its heartbeat
every `HEARTBEAT_EVERY`; it marks itself stopped when it ends. Any number of runners may share a
database: what keeps them apart is in the store (guarded claims, the charge in the transaction
that records the action), not a lock file.

A runner is **gone** when its row says it stopped or was found gone, when its heartbeat is older
than `STALE_AFTER` (killed, its machine off, cut off from the database), or, on this host, when its
process no longer runs. Another runner then marks it gone and takes its leads back (due at once);
a lead it left with an action in flight is reconciled with the provider (`find_action`) by its step
before anything is retried, never sent again blindly.

A runner whose heartbeat is older than half of `STALE_AFTER` writes one before its next external
call; one that finds itself marked gone makes no new call and stops: another runner took its leads.
Heartbeat ages compare clocks of different machines; keep them in sync (NTP) to well within
`STALE_AFTER`.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from runner.engine import leases
from runner.language.diagnostics import UserError
from runner.store import db
from runner.store.backends.postgres import is_postgres
from runner.store.db import bound_file
from runner.store.leases import lease_holders, release_leases_of
from runner.store.runners import RunnerRow, beat, end_runner, known_runners, mark_gone, register_runner, running_runners
from runner.store.sender_calls import call_holders, end_calls_of
from runner.store.transactions import writing

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = dt.timedelta(seconds=15)
STALE_AFTER = dt.timedelta(seconds=90)


def is_stale(row: RunnerRow, now: dt.datetime) -> bool:
    return row.heartbeat_at < now - STALE_AFTER


def gone(identity: str, row: RunnerRow | None, now: dt.datetime, *, me: str) -> bool:
    """Whether the runner `identity` (its row, when the table has one) certainly no longer runs."""
    if identity == me:
        return False
    if row is not None and (row.state != "running" or is_stale(row, now)):
        return True
    return leases.is_gone(identity, me=me)  # this host's dead pids; identities of an older seqrun


def gone_now(identity: str, now: dt.datetime, *, me: str) -> bool:
    """`gone`, reading the runner's row."""
    return gone(identity, known_runners([identity]).get(identity), now, me=me)


def take_back(now: dt.datetime, *, me: str) -> dict[str, int]:
    """Mark gone the runners that are, and take back the leads they leased (due at `now`, owned by
    nobody), and end the calls they left in flight (`store.sender_calls`). Returns, per gone runner
    holding leads, how many came back. Leases of runners that may still run are left alone (a
    runner of another host unknown to the table: until they expire)."""
    with writing():
        holders = lease_holders()
        callers = call_holders()
        rows = known_runners(sorted(set(holders) | set(callers)))
        for running in running_runners():
            rows.setdefault(running.identity, running)
        taken: dict[str, int] = {}
        ended: list[str] = []
        for identity in sorted(set(holders) | set(callers) | set(rows)):
            row = rows.get(identity)
            if not gone(identity, row, now, me=me):
                continue
            if row is not None and row.state == "running":
                dead_here = leases.is_gone(identity, me=me)  # no heartbeat can come back from it
                if not mark_gone(identity, now, stale_before=None if dead_here else now - STALE_AFTER):
                    continue  # its heartbeat came back meanwhile: it keeps its leads
            if identity in callers:
                ended.append(identity)
            if identity in holders:
                taken[identity] = holders[identity][0]
        # A call it left in flight ends here: its lead (taken back below, or sleeping in a backoff)
        # still has the action in flight, and its step asks the provider (`find_action`) whether it
        # happened before anything is retried.
        end_calls_of(ended)
        if taken:
            release_leases_of(list(taken), now)
    return taken


def live_runners(now: dt.datetime, *, me: str = "") -> list[RunnerRow]:
    """The runners working on the database now (heartbeat fresh, and on this host still running)."""
    return [row for row in running_runners() if not gone(row.identity, row, now, me=me)]


def refuse_beside_live_runner(what: str, database: str, now: dt.datetime) -> None:
    """For commands that must not run while a runner works on the database (`leads migrate`): a
    UserError naming the live runner. Call it inside the command's write transaction, so that no
    runner can start between the check and the change."""
    live = live_runners(now)
    if live:
        row = live[0]
        raise UserError(f'"seqrun {row.command}" is working on {database} ({describe(row, now)}); stop it before '
                        f"{what}")


def describe(row: RunnerRow, now: dt.datetime) -> str:
    """`host pid 123, heartbeat 4 s ago`."""
    return f"{row.host} pid {row.pid}, heartbeat {age(now - row.heartbeat_at)} ago"


def age(delta: dt.timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"


class Presence:
    """A runner's row while it runs: registered on enter, a heartbeat from a thread (its own
    connection) every `every`, marked stopped on exit. `lost()` says when the runner must stop."""

    def __init__(self, identity: str, command: str, clock: Callable[[], dt.datetime],
                 every: dt.timedelta = HEARTBEAT_EVERY) -> None:
        self.identity = identity
        self.command = command
        self.clock = clock
        self.every = every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_beat = time.time()  # wall clock: a suspended machine's pause counts
        self._marked_gone = False

    def __enter__(self) -> Presence:
        owner = leases.parse(self.identity)
        assert owner is not None, self.identity
        register_runner(self.identity, owner.host, owner.pid, self.command, self.clock())
        self._last_beat = time.time()
        if bound_file() != ":memory:" or is_postgres(db):  # a thread's connection to :memory: would be another database
            self._thread = threading.Thread(target=self._beat_forever, name="seqrun-heartbeat", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if not self._marked_gone:
            try:
                end_runner(self.identity, self.clock())
            except Exception:  # noqa: BLE001 - never hide why the run ends; without it the row goes stale
                log.warning("runner %s: could not record that it stopped", self.identity, exc_info=True)

    def beat(self) -> bool:
        """Write one heartbeat now; False (and `lost()` from now on) when the table says this
        runner was found gone."""
        if beat(self.identity, self.clock()):
            self._last_beat = time.time()
            return True
        self._marked_gone = True
        return False

    def lost(self) -> bool:
        """True once this runner was taken for gone (asked before every external call). When its
        last heartbeat is older than half of `STALE_AFTER` (the database was locked, or the machine
        slept), one is written first: it fails only if another runner found it gone meanwhile."""
        if self._marked_gone:
            return True
        if time.time() - self._last_beat > STALE_AFTER.total_seconds() / 2:
            try:
                return not self.beat()
            except Exception:  # noqa: BLE001 - a heartbeat it cannot write: it may be taken for gone
                log.warning("runner %s: the heartbeat could not be written", self.identity, exc_info=True)
                return True
        return False

    def _beat_forever(self) -> None:
        try:
            while not self._stop.wait(self.every.total_seconds()):
                try:
                    if not self.beat():
                        log.error("runner %s was found gone by another runner (no heartbeat for %s); stopping",
                                  self.identity, age(STALE_AFTER))
                        return
                except Exception:  # noqa: BLE001 - a heartbeat that fails is retried; `lost()` tells
                    log.warning("runner %s: the heartbeat could not be written", self.identity, exc_info=True)
        finally:
            db.close()  # this thread's connection
