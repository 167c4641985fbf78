"""Several runners on one store (issue 8, sections 4 and 5): at most one action in flight per sender
account, whatever the number of runners, and a backlog that runners share.

The guard is a row per call in `sender_call`, unique by sender, committed with the action's outbox
row before the provider is called and deleted with its result. Every test runs on both backends;
a second runner is a second engine whose calls run in a thread (its own connection, as another
process would have).
"""
from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest

from runner.engine.actions import SENDER_BUSY_WAIT
from runner.holds import LEAD, Target, pause
from runner.store import Enrollment, claims, db
from runner.store.runners import register_runner
from runner.store.sender_calls import calls_in_flight, end_call, start_call

from .conftest import Crash, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: hello, action: message, template: intro.j2}
  - end: messaged
"""
#: A runner of another machine, alive (its heartbeat is fresh): its calls are its own.
ELSEWHERE = "elsewhere:4242:0a1b2c3d"
WAIT = 30  # seconds a test waits for a thread at most; nothing sleeps


def live_runner_elsewhere(now: dt.datetime, heartbeat: dt.datetime | None = None) -> None:
    register_runner(ELSEWHERE, "elsewhere", 4242, "run", heartbeat or now)


def test_a_lead_whose_sender_has_a_call_in_flight_waits_without_an_attempt(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    sender = h.sender_id()
    with db.atomic():
        live_runner_elsewhere(h.now)
        assert start_call(sender, h.enrollment("anna").id, "elsewhere-key", ELSEWHERE, h.now)
        assert not start_call(sender, h.enrollment("anna").id, "second-key", ELSEWHERE, h.now)  # the index says no

    report = h.tick()
    enr = h.enrollment("anna")
    assert (enr.step_id, enr.due_at, enr.attempt, enr.lease_owner) == ("connect", h.now + SENDER_BUSY_WAIT, 0, None)
    assert dt.timedelta(seconds=5) == SENDER_BUSY_WAIT
    assert "slot" not in enr.facts and h.actions("anna") == [] and h.provider.called("connect") == []
    assert report.errors == 0

    h.engine.take_back_leases(h.now)  # a live runner elsewhere keeps its call
    assert [c.action_key for c in calls_in_flight()] == ["elsewhere-key"]
    h.tick(h.now + SENDER_BUSY_WAIT)
    assert h.enrollment("anna").due_at == h.now + SENDER_BUSY_WAIT  # still busy: waits again, still no attempt
    assert h.enrollment("anna").attempt == 0

    with db.atomic():
        assert end_call(sender, "elsewhere-key") == 1
    h.run(days=1, stop=lambda: h.actions("anna") != [])
    (act,) = h.actions("anna")
    assert (act.action, act.status, act.attempt, act.key) == ("connect", "done", 0, f"{h.enrollment('anna').id}:connect:0:0")
    assert len(h.provider.called("connect")) == 1
    assert calls_in_flight() == []


def test_the_call_row_is_committed_before_the_provider_call_and_deleted_with_its_result(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    inner = h.provider.connect
    seen: list[tuple[bool, list[tuple[int, str, str]]]] = []

    def connect(account: Any, lead: Any, *, note: str | None, key: str) -> Any:
        # Read from another connection: only what is committed is there.
        seen.append(_elsewhere(lambda: (db.in_transaction(),
                                        [(c.sender_id, c.action_key, c.runner) for c in calls_in_flight()])))
        return inner(account, lead, note=note, key=key)

    h.provider.connect = connect  # type: ignore[method-assign]
    h.run(days=1, stop=lambda: h.actions("anna") != [])
    key = f"{h.enrollment('anna').id}:connect:0:0"
    assert seen == [(False, [(h.sender_id(), key, h.engine.rt.owner)])]
    assert calls_in_flight() == []
    assert h.actions("anna")[0].status == "done"


def test_two_runners_never_have_two_calls_of_one_sender_in_flight(make_harness: HarnessFactory) -> None:
    # Leases longer than the virtual hours between the two invites: runner A keeps its lead.
    h = make_harness(sequence_yaml("s", FLOW), lease=dt.timedelta(days=1))
    h.enroll(lead_row("anna"), lead_row("bob"))
    h.tick()  # both plan their invites: booked points of today's window, kept apart by the spacing
    anna, bob = h.enrollment("anna"), h.enrollment("bob")
    first, second = sorted([anna, bob], key=lambda e: e.due_at)
    assert first.due_at < second.due_at
    runner_a = h.engine
    runner_b = h.restart()  # another runner on the same store and the same simulated LinkedIn
    # Runner A as another machine's live run (in this process, another engine's identity would be
    # taken for an earlier, gone runner of the same pid).
    runner_a.rt.owner = ELSEWHERE
    live_runner_elsewhere(h.now, heartbeat=second.due_at + SENDER_BUSY_WAIT)
    inner = h.provider.connect
    in_call, release = threading.Event(), threading.Event()
    keys: list[str] = []

    def connect(account: Any, lead: Any, *, note: str | None, key: str) -> Any:
        keys.append(key)
        if len(keys) == 1:
            in_call.set()
            assert release.wait(WAIT)
        return inner(account, lead, note=note, key=key)

    h.provider.connect = connect  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def run_a() -> None:
        try:
            runner_a.tick(first.due_at)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)
        finally:
            db.close()

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        assert in_call.wait(WAIT)  # runner A is in the first lead's call
        runner_b.tick(second.due_at)  # the second lead is due: its sender is busy elsewhere
        waiting = h.enrollment(second.lead.key)
        assert len(keys) == 1
        assert (waiting.due_at, waiting.attempt, waiting.step_id) == (second.due_at + SENDER_BUSY_WAIT, 0, "connect")
        assert waiting.facts["slot"] == second.facts["slot"]  # its booked point is kept
        assert [c.runner for c in calls_in_flight()] == [runner_a.rt.owner]
    finally:
        release.set()
        thread.join(WAIT)
    assert not thread.is_alive() and errors == []
    assert calls_in_flight() == []

    runner_b.tick(second.due_at + SENDER_BUSY_WAIT)  # free now: it acts at its (kept) point
    assert len(keys) == 2 and len(set(keys)) == 2
    assert [(a.action, a.status, a.attempt) for a in h.actions(second.lead.key)] == [("connect", "done", 0)]
    assert [(a.action, a.status) for a in h.actions(first.lead.key)] == [("connect", "done")]


def test_a_call_left_by_a_runner_that_died_is_cleared_and_its_lead_reconciled_not_resent(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("bob"))
    died_in = h.engine.rt.owner
    h.provider.fail("connect", Crash("killed -9 in the call"), after=True)  # it reached LinkedIn
    with pytest.raises(Crash):
        h.run(days=1)
    died = h.now
    (left,) = calls_in_flight()
    (act,) = [a for a in h.actions() if a.status == "in_flight"]
    assert (left.runner, left.action_key, left.enrollment_id) == (died_in, act.key, act.enrollment_id)

    engine = h.restart()  # the next run of this machine: the dead one's pid is this process under another nonce
    # Before the gone runner's call is cleared, the sender is busy for every other lead.
    assert engine.take_back_leases(died) == {died_in: 1}
    assert calls_in_flight() == []
    before = len(h.provider.calls)
    engine.tick(died)
    lead_key = next(e.lead.key for e in (h.enrollment("anna"), h.enrollment("bob")) if e.id == act.enrollment_id)
    after = [c.method for c in h.provider.calls[before:]]
    assert after[0] == "find_action"  # reconciled before anything else
    assert h.sandbox.calls["connect"] == 1  # never sent again
    (done,) = h.actions(lead_key, action="connect")
    assert (done.key, done.status, done.performed_at) == (act.key, "done", died)

    h.run(days=1, stop=lambda: len(h.actions(action="connect")) == 2)
    assert sorted(a.status for a in h.actions(action="connect")) == ["done", "done"]
    assert h.sandbox.calls["connect"] == 2 and calls_in_flight() == []


def test_a_call_of_a_runner_whose_heartbeat_went_stale_is_cleared_and_a_live_ones_kept(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    sender = h.sender_id()
    with db.atomic():
        live_runner_elsewhere(h.now)
        start_call(sender, h.enrollment("anna").id, "their-key", ELSEWHERE, h.now)
    assert h.engine.take_back_leases(h.now + dt.timedelta(seconds=60)) == {}
    assert [c.action_key for c in calls_in_flight()] == ["their-key"]
    # No heartbeat for more than 90 s: the runner is gone, its call with it.
    assert h.engine.take_back_leases(h.now + dt.timedelta(seconds=91)) == {}
    assert calls_in_flight() == []


def test_recover_clears_the_calls_of_gone_runners(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    died_in = h.engine.rt.owner
    h.provider.fail("connect", Crash("killed"), after=False)  # it never reached LinkedIn
    with pytest.raises(Crash):
        h.run(days=1)
    assert [c.runner for c in calls_in_flight()] == [died_in]
    engine = h.restart()
    assert engine.recover(h.now) == 1
    assert calls_in_flight() == []
    engine.tick(h.now)
    (lost, *_) = h.actions("anna", action="connect")
    assert (lost.status, lost.error_message) == ("failed", "not performed (reconciled after an interruption)")
    assert h.sandbox.calls["connect"] == 0


def _elsewhere(fn: Any) -> Any:
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(fn())
        finally:
            db.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(WAIT)
    return box[0]


NOTIFY = """\
  - {id: out, action: notify, url: "https://crm.example.com/hook"}
  - end: posted
"""


def test_a_second_runner_shares_the_backlog_of_a_working_one(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", NOTIFY))
    h.enroll(*(lead_row(f"lead{i:02d}") for i in range(30)))
    runner_a = h.engine
    runner_b = h.restart()
    in_call, release = threading.Event(), threading.Event()

    def slow_crm(url: str, headers: Any, payload: Any) -> None:
        in_call.set()
        assert release.wait(WAIT)

    runner_a.rt.notifier = slow_crm
    reports: list[Any] = []

    def run_a() -> None:
        try:
            reports.append(runner_a.tick(h.now))
        finally:
            db.close()

    thread = threading.Thread(target=run_a)
    thread.start()
    try:
        assert in_call.wait(WAIT)  # runner A is in its first lead's POST, with its claimed share leased
        report_b = runner_b.tick(h.now)
    finally:
        release.set()
        thread.join(WAIT)
    (report_a,) = reports
    share = claims.share()
    assert share == (1 if h.db_url.startswith("postgresql://") else 20)
    assert (report_a.processed, report_b.processed) == (share, 30 - share)
    assert {h.enrollment(f"lead{i:02d}").outcome for i in range(30)} == {"posted"}
    assert len(h.notified) == 30 - share


def test_a_lead_paused_during_its_call_leaves_no_call_behind(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("bob"))
    inner = h.provider.connect
    paused: list[str] = []

    def connect(account: Any, lead: Any, *, note: str | None, key: str) -> Any:
        if not paused:  # the first invite's lead is paused from elsewhere while its call is in flight
            enrollment_id = int(key.split(":", 1)[0])
            paused.append(_elsewhere(lambda: pause(Target(LEAD, Enrollment.get_by_id(enrollment_id).lead_id,
                                                          "the lead"), "talking on the phone", h.now)) or key)
        return inner(account, lead, note=note, key=key)

    h.provider.connect = connect  # type: ignore[method-assign]
    h.run(days=1, stop=lambda: len(h.provider.called("connect")) == 2)
    assert len(h.provider.called("connect")) == 2  # the other lead of the sender was not held up
    assert calls_in_flight() == []


def test_a_busy_sender_whose_caller_is_gone_is_freed_by_the_lead_that_finds_it(make_harness: HarnessFactory) -> None:
    # Without waiting for the next pass's take-back (a `serve` beside a run that died, say).
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    with db.atomic():
        live_runner_elsewhere(h.now, heartbeat=h.now - dt.timedelta(seconds=91))  # silent for more than 90 s
        start_call(h.sender_id(), h.enrollment("anna").id, "their-key", ELSEWHERE, h.now)
    h.tick()
    enr = h.enrollment("anna")
    assert enr.due_at != h.now + SENDER_BUSY_WAIT and enr.facts["slot"]["action"] == "connect"  # it planned its invite
    assert calls_in_flight() == []
    assert db.execute_sql("SELECT state FROM runner WHERE id = ?", (ELSEWHERE,)).fetchone() == ("gone",)
