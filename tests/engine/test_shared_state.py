"""State that lives in the store, not in one process: two runtimes (two runners, or one restarted)
on the same database see the same provider holds, poll schedule, pacing reach and runners."""
from __future__ import annotations

import datetime as dt
import os
import sqlite3
import subprocess
import sys

import pytest

from runner.engine import leases, limits, presence
from runner.providers.base import ErrorKind, ProviderError
from runner.store import Action, Enrollment, db
from runner.store.fields import to_db_time
from runner.store.runners import beat, register_runner, running_runners

from .conftest import UTC, Crash, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: first_message, action: message, template: intro.j2}
  - end: messaged
"""
TUESDAY_MIDNIGHT = dt.datetime(2026, 3, 3, 0, 0, tzinfo=UTC)
TEN = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # 10:00 in Berlin, inside the window


def test_a_limit_reached_hold_learnt_by_one_runner_is_obeyed_by_another(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("ben"), lead_row("chloe"))
    first = h.engine
    h.provider.fail("connect", ProviderError(ErrorKind.LIMIT_REACHED, "daily limit reached",
                                             retry_at=TUESDAY_MIDNIGHT))
    h.run(days=1, stop=lambda: bool(h.provider.called("connect")))
    assert len(h.provider.called("connect")) == 1
    # A second runner (its own runtime) goes on with the sender's other leads.
    second = h.restart()
    assert second is not first and second.rt.provider_holds == {}
    h.run(until=TUESDAY_MIDNIGHT)
    assert second.rt.provider_holds == {(h.sender_id(), "connect"): TUESDAY_MIDNIGHT}
    assert len(h.provider.called("connect")) == 1  # nobody asked again before the provider's time
    assert all(h.enrollment(name).due_at >= TUESDAY_MIDNIGHT for name in ("anna", "ben", "chloe"))


def test_the_poll_schedule_survives_a_restart(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.tick(TEN)
    assert len(h.provider.called("poll_events")) == 1
    h.restart()
    assert h.engine.next_due() is not None and h.engine.next_due() <= TEN + h.engine.rt.poll_every
    h.tick(TEN + dt.timedelta(minutes=1))
    assert len(h.provider.called("poll_events")) == 1  # polled a minute ago, by the earlier process
    h.tick(TEN + h.engine.rt.poll_every)
    assert len(h.provider.called("poll_events")) == 2


def test_a_sender_is_polled_by_one_of_two_runners(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    first = h.engine
    second = h.restart()
    first.sync(TEN)
    second.sync(TEN)
    assert len(h.provider.called("poll_events")) == 1


def test_a_point_another_runner_stored_with_a_larger_spacing_is_kept_away_from(make_harness: HarnessFactory,
                                                                                tmp_path: object, store_url: str) -> None:
    if not store_url.endswith(".db"):
        pytest.skip("the other runner writes through a second sqlite3 connection to the same file")
    # Sequence "fast" spaces its invites 20 minutes apart; another runner's sequence spaces its own
    # 2 hours apart, and an invite of fast must keep those 2 hours from it too.
    fast = sequence_yaml("fast", "  - {id: connect, action: connect}\n  - end: invited\n",
                         limits="limits:\n  connect: {daily: 20, min_gap: 20 minutes}\n")
    h = make_harness({"fast": fast})
    seq, caps = h.sequences["fast"], h.engine.rt.senders[h.sender_id()].caps
    assert limits.spacing_seconds(seq, caps, "connect") == 20 * 60
    with db.atomic():
        assert limits.try_charge(seq, caps, "connect", TEN)
    # What the other runner's charge writes, from its own connection.
    other = sqlite3.connect(db.database)
    with other:
        other.execute("INSERT INTO pace (sender_id, action, sequence, day, at, spacing, state) "
                      "VALUES (?, 'connect', 'slow', '2026-03-02', ?, ?, 'used')",
                      (h.sender_id(), to_db_time(TEN + dt.timedelta(hours=1)), 2 * 3600.0))
        other.execute("INSERT INTO pace_reach (sender_id, action, spacing) VALUES (?, 'connect', ?) "
                      "ON CONFLICT (sender_id, action) DO UPDATE SET spacing = excluded.spacing",
                      (h.sender_id(), 2 * 3600.0))
    other.close()
    with db.atomic():
        # 90 minutes after the slow invite: far enough for fast's 24 minutes, not for slow's 2 hours.
        assert not limits.try_charge(seq, caps, "connect", TEN + dt.timedelta(hours=2, minutes=30))
        assert limits.try_charge(seq, caps, "connect", TEN + dt.timedelta(hours=3, minutes=1))


def test_capacity_given_back_by_a_runner_that_died_before_filling_it_is_filled_by_another(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: connect, action: connect}\n  - end: invited\n",
                                   limits="limits:\n  connect: {daily: 1}\n"))
    h.enroll(lead_row("anna"), lead_row("ben"))
    h.tick(h.now)  # before the window: both book a point, anna today and ben tomorrow (a cap of 1)
    anna, ben = h.enrollment("anna"), h.enrollment("ben")
    assert anna.facts["slot"]["day"] == "2026-03-02" and ben.facts["slot"]["day"] == "2026-03-03"
    # Another process gives anna's booking back and dies before its `fill_gaps`.
    slot = anna.facts["slot"]
    code = ("import sys; from runner.engine import limits; from runner.store import db, open_store\n"
            "open_store(sys.argv[1], durable=False)\n"
            "with db.atomic():\n"
            "    limits.release('s', int(sys.argv[2]), 'connect', sys.argv[3], sys.argv[4])\n"
            "    db.execute_sql(\"UPDATE enrollment SET state = 'done', outcome = 'exited', due_at = NULL "
            "WHERE id = ?\", (int(sys.argv[5]),))\n")
    done = subprocess.run([sys.executable, "-c", code, str(db.database), str(h.sender_id()), slot["day"],
                           slot["at"], str(anna.id)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    h.restart().tick(h.now)
    assert h.enrollment("ben").facts["slot"]["day"] == "2026-03-02"  # moved into the day given back


# --- runners --------------------------------------------------------------------------------------


def _lease(h: object, name: str, owner: str, until: dt.datetime) -> None:
    Enrollment.update(lease_owner=owner, due_at=until).where(Enrollment.id == h.enrollment(name).id).execute()  # type: ignore[attr-defined]


def test_a_stale_runner_of_another_host_has_its_leases_taken_back(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("ben"), lead_row("chloe"))
    stale, fresh, unknown = "far:101:aaaaaaaa", "far:102:bbbbbbbb", "far:103:cccccccc"
    register_runner(stale, "far", 101, "run", h.now - dt.timedelta(minutes=5))
    register_runner(fresh, "far", 102, "run", h.now - dt.timedelta(minutes=5))
    beat(fresh, h.now - dt.timedelta(seconds=20))
    until = h.now + dt.timedelta(minutes=10)
    _lease(h, "anna", stale, until)
    _lease(h, "ben", fresh, until)
    _lease(h, "chloe", unknown, until)  # an older seqrun's runner elsewhere: nothing tells, its lease runs out
    assert h.engine.take_back_leases(h.now) == {stale: 1}
    assert {n: (h.enrollment(n).lease_owner, h.enrollment(n).due_at) for n in ("anna", "ben", "chloe")} == {
        "anna": (None, h.now), "ben": (fresh, until), "chloe": (unknown, until)}
    assert [(r.identity, r.state) for r in running_runners()] == [(fresh, "running")]
    assert not beat(stale, h.now)  # it comes back: it is told it was found gone
    assert [r.identity for r in presence.live_runners(h.now)] == [fresh]


def test_a_runner_of_this_host_whose_process_ended_is_gone_at_once(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = f"{leases.this_host()}:{ended.stdout.strip()}:dddddddd"
    register_runner(dead, leases.this_host(), int(ended.stdout), "run", h.now)  # its heartbeat is fresh
    _lease(h, "anna", dead, h.now + dt.timedelta(minutes=10))
    assert h.engine.take_back_leases(h.now) == {dead: 1}
    assert running_runners() == []


def test_a_stale_runners_action_in_flight_is_reconciled_not_resent(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    far = "far:104:eeeeeeee"
    register_runner(far, "far", 104, "run", h.now)
    h.engine.rt.owner = far  # the engine that will vanish mid-call is that runner
    h.provider.fail("connect", Crash("vanished"), after=True)  # the invite went out; then the runner vanished
    with pytest.raises(Crash):
        h.run(days=1)
    (act,) = h.actions("anna", action="connect")
    assert act.status == "in_flight" and h.enrollment("anna").lease_owner == far
    later = h.now + presence.STALE_AFTER + dt.timedelta(seconds=1)  # no heartbeat since
    other = h.restart()
    assert other.take_back_leases(later) == {far: 1}
    before = len(h.provider.calls)
    other.tick(later)
    after = [c.method for c in h.provider.calls[before:] if c.method != "poll_events"]
    assert "connect" not in after and after[0] == "find_action"
    assert [(a.action, a.status) for a in h.actions("anna")] == [("connect", "done")]
    assert Action.select().count() == 1


def test_the_runner_table_names_live_runners_with_their_heartbeat(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    me = f"{leases.this_host()}:{os.getpid()}:ffffffff"
    with presence.Presence(me, "run", clock=lambda: h.now) as mine:
        (row,) = presence.live_runners(h.now + dt.timedelta(seconds=42), me=me)
        assert (row.identity, row.command, row.state) == (me, "run", "running")
        assert presence.describe(row, h.now + dt.timedelta(seconds=42)) == (
            f"{leases.this_host()} pid {os.getpid()}, heartbeat 42 s ago")
        assert mine.beat() and not mine.lost()
    assert presence.live_runners(h.now, me=me) == []
    assert [r.state for r in presence.known_runners([me]).values()] == ["stopped"]


def test_a_runner_found_gone_by_another_makes_no_further_call(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    me = f"far:{os.getpid()}:abababab"  # as if on another machine: only its heartbeat tells
    with presence.Presence(me, "run", clock=lambda: h.now) as mine:
        assert not mine.lost()
        later = h.now + presence.STALE_AFTER + dt.timedelta(seconds=1)  # its heartbeats did not get through
        assert h.engine.take_back_leases(later) == {}  # it held no leads; it is marked gone all the same
        assert not mine.beat()
        assert mine.lost()  # `seqrun run` asks this before every call (Runtime.stop_requested)
    assert [r.state for r in presence.known_runners([me]).values()] == ["gone"]


def test_a_runner_whose_heartbeat_is_late_writes_one_before_its_next_call(
        make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    me = f"far:{os.getpid()}:cdcdcdcd"
    with presence.Presence(me, "run", clock=lambda: h.now) as mine:
        started = presence.time.time()
        h.clock.now += dt.timedelta(minutes=1)
        monkeypatch.setattr(presence.time, "time", lambda: started + 60)  # the database was locked a minute
        assert not mine.lost()  # not found gone: it wrote its heartbeat and goes on
        assert presence.known_runners([me])[me].heartbeat_at == h.now
