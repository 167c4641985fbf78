"""Crashes between "recorded in flight" and "marked done": a new process reconciles, never resends."""
from __future__ import annotations

import datetime as dt

import pytest

from runner import audit
from runner.leads import block_profiles
from runner.providers.base import Account, ErrorKind, LeadRef, ProviderError
from runner.store import Action, Enrollment

from .conftest import Crash, EngineHarness, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: first_message, action: message, template: intro.j2}
  - end: messaged
"""
ALICE_ACCOUNT = Account(sender="alice", account_id="acc-alice")
ANNA = LeadRef(key="anna", profile_url="https://www.linkedin.com/in/anna")
PROVIDER_METHOD = {"connect": "connect", "message": "send_message"}


def crash_at(h: EngineHarness, action: str, error: BaseException, *, after: bool) -> dt.datetime:
    """Run until the process dies in the provider call of `action`; returns when it died."""
    h.provider.fail(PROVIDER_METHOD[action], error, after=after)
    with pytest.raises(type(error)):
        h.run(days=2)
    return h.now


def finish(h: EngineHarness) -> None:
    h.run(days=3, stop=lambda: h.enrollment("anna").state != "active")
    assert (h.enrollment("anna").state, h.enrollment("anna").outcome) == ("done", "messaged")


@pytest.mark.parametrize("action", ["connect", "message"])
@pytest.mark.parametrize("death", [Crash("power cut"), KeyboardInterrupt()], ids=["crash", "ctrl-c"])
def test_an_action_that_happened_before_the_crash_is_reconciled_not_resent(
        make_harness: HarnessFactory, action: str, death: BaseException) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    died = crash_at(h, action, death, after=True)

    (act,) = h.actions("anna", action=action)
    enr = h.enrollment("anna")
    assert (act.status, act.charged, enr.facts["inflight"]) == ("in_flight", True, act.key)
    assert enr.due_at == died + h.engine.rt.lease  # the crashed run's claim
    assert h.sandbox.calls[PROVIDER_METHOD[action]] == 1

    engine = h.restart()
    assert engine.recover(died) == 1
    assert h.enrollment("anna").due_at == died
    before = len(h.provider.calls)
    engine.tick(died)
    after = [c.method for c in h.provider.calls[before:]]
    assert PROVIDER_METHOD[action] not in after
    assert "find_action" in after and after.index("find_action") <= 1  # asked before anything else was tried
    (act,) = h.actions("anna", action=action)
    assert (act.status, act.charged, act.performed_at) == ("done", True, died)
    assert "inflight" not in h.enrollment("anna").facts

    finish(h)
    assert h.sandbox.calls[PROVIDER_METHOD[action]] == 1
    assert [a.status for a in h.actions("anna")] == ["done", "done"]
    ours = [m for m in h.sandbox.conversation(ALICE_ACCOUNT, ANNA).messages if not m.from_lead]
    assert len(ours) == 1
    assert audit.violations(h.sequences, h.engine.rt) == []


@pytest.mark.parametrize("action", ["connect", "message"])
def test_an_action_that_had_not_happened_is_retried_exactly_once(make_harness: HarnessFactory, action: str) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    died = crash_at(h, action, Crash("killed"), after=False)
    assert h.sandbox.calls[PROVIDER_METHOD[action]] == 0

    engine = h.restart()
    assert engine.recover(died) == 1
    engine.tick(died)
    lost = h.actions("anna", action=action)[0]
    assert (lost.status, lost.charged) == ("failed", False)
    assert lost.error_message == "not performed (reconciled after an interruption)"
    # The retry gets a key of its own: attempt 1. (A first message after an acceptance may go out in
    # this very tick; a paced action waits for its slot with the attempt already counted.)
    retried = [a for a in h.actions("anna", action=action) if a.id != lost.id]
    assert [a.key.rsplit(":", 1)[1] for a in retried] in ([], ["1"])
    if not retried:
        assert h.enrollment("anna").attempt == 1

    finish(h)
    lost, done = h.actions("anna", action=action)
    step = "connect" if action == "connect" else "first_message"
    assert (lost.key.rsplit(":", 1)[1], done.key.rsplit(":", 1)[1]) == ("0", "1")
    assert (done.step_id, done.status) == (step, "done")
    assert len(h.provider.called(PROVIDER_METHOD[action])) == 2  # the one that died, and one retry
    assert h.sandbox.calls[PROVIDER_METHOD[action]] == 1
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_without_recover_the_lease_brings_a_crashed_lead_back_by_itself(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    died = crash_at(h, "connect", Crash("killed"), after=True)
    engine = h.restart()
    lease_end = died + engine.rt.lease
    engine.tick(lease_end - dt.timedelta(seconds=1))
    assert h.actions("anna")[0].status == "in_flight"  # still leased to the dead run
    engine.tick(lease_end)
    assert h.actions("anna")[0].status == "done"
    assert h.sandbox.calls["connect"] == 1


def test_recover_with_nothing_in_flight_changes_nothing(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.run(days=1, stop=lambda: h.actions("anna") != [])
    due = h.enrollment("anna").due_at
    assert h.restart().recover(h.now) == 0
    assert h.enrollment("anna").due_at == due


def test_a_recorded_in_flight_row_written_directly_is_reconciled(make_harness: HarnessFactory) -> None:
    # The state a crash leaves, written by hand: the action performed at LinkedIn, the row in flight.
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    enr = h.enrollment("anna")
    at = h.now + dt.timedelta(hours=2)  # 10:00 in Berlin
    h.clock.now = at
    key = f"{enr.id}:connect:0:0"
    h.sandbox.connect(ALICE_ACCOUNT, ANNA, note=None, key=key)
    Action.create(key=key, enrollment=enr.id, lead=enr.lead_id, sender=h.sender_id(), sequence="s",
                  step_id="connect", action="connect", status="in_flight", charged=True, planned_at=at, started_at=at)
    # A crashed run leaves its lease on the lead (lease_owner) until it expires.
    Enrollment.update(facts={"inflight": key}, due_at=at + dt.timedelta(minutes=10), lease_owner="crashed-run").where(
        Enrollment.id == enr.id).execute()

    engine = h.restart()
    assert engine.recover(at) == 1
    engine.tick(at)
    (act,) = h.actions("anna")
    assert (act.status, act.performed_at, act.provider_id is not None) == ("done", at, True)
    assert h.provider.called("connect") == [] and h.sandbox.calls["connect"] == 1
    assert h.enrollment("anna").step_id == "accepted"


def test_an_interrupted_notify_is_posted_again_under_the_same_idempotency_key(make_harness: HarnessFactory) -> None:
    steps = """\
  - {id: crm, action: notify, url: "https://crm.example.com/hook"}
  - end: synced
"""
    h = make_harness(sequence_yaml("s", steps))
    h.enroll(lead_row("anna"))
    posted: list[tuple[str, str, object]] = []

    def dying(url: str, headers: dict[str, str], payload: object) -> None:
        posted.append((url, headers["Idempotency-Key"], payload))
        raise Crash("killed mid-POST")

    h.engine.rt.notifier = dying
    with pytest.raises(Crash):
        h.tick()
    engine = h.restart()
    assert engine.recover(h.now) == 1
    later = h.now + dt.timedelta(minutes=5)
    again: list[tuple[str, str, object]] = []
    engine.rt.notifier = lambda url, headers, payload: again.append((url, headers["Idempotency-Key"], payload))
    engine.tick(later)
    (act,) = h.actions("anna")
    assert (act.status, act.error_message) == ("done", None)
    # The same POST, body included (its "at" is when it was first recorded), under the same key: a
    # CRM that got the first one can drop this one.
    assert again == posted and posted[0][1] == act.key
    assert (h.enrollment("anna").state, h.enrollment("anna").outcome) == ("done", "synced")


def test_a_lead_that_exits_with_an_action_in_flight_settles_it_first(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: visit, action: visit}\n  - {id: connect, action: connect}\n"
                                        "  - end: done\n"))
    h.enroll(lead_row("anna"))
    # The visit reaches LinkedIn but the answer is lost; before the retry, the lead is blocked.
    h.provider.fail("visit", ProviderError(ErrorKind.TRANSIENT, "read timeout", label="TRANSIENT"), after=True)
    h.run(days=1, stop=lambda: bool(h.provider.called("visit")))
    block_profiles([("anna", "https://www.linkedin.com/in/anna")], "asked us to stop", h.now)
    h.run(days=1)
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "blocked")
    assert [(a.status, a.charged) for a in h.actions("anna")] == [("done", True)]
    assert len(h.provider.called("find_action")) == 1
    assert h.engine.recover(h.now) == 0
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_recover_leaves_a_lead_sleeping_in_backoff_alone(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: visit, action: visit}\n  - end: done\n"))
    h.enroll(lead_row("anna"))
    h.provider.fail("visit", ProviderError(ErrorKind.TRANSIENT, "read timeout", label="TRANSIENT"))
    h.run(days=1, stop=lambda: bool(h.provider.called("visit")))
    due = h.enrollment("anna").due_at
    assert due > h.now  # backing off, with its action in flight on purpose
    assert h.engine.recover(h.now) == 0
    assert h.enrollment("anna").due_at == due


def test_the_engines_log_records_carry_the_lead_enrollment_sender_and_step_as_fields(
        make_harness: HarnessFactory, caplog: pytest.LogCaptureFixture) -> None:
    # `seqrun serve --log-format json` writes these fields; a reconciliation is one such record.
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    enr = h.enrollment("anna")
    at = h.now + dt.timedelta(hours=2)
    h.clock.now = at
    key = f"{enr.id}:connect:0:0"
    h.sandbox.connect(ALICE_ACCOUNT, ANNA, note=None, key=key)
    Action.create(key=key, enrollment=enr.id, lead=enr.lead_id, sender=h.sender_id(), sequence="s",
                  step_id="connect", action="connect", status="in_flight", charged=True, planned_at=at, started_at=at)
    Enrollment.update(facts={"inflight": key}, due_at=at, lease_owner="crashed-run").where(
        Enrollment.id == enr.id).execute()
    engine = h.restart()
    caplog.set_level("INFO", logger="runner")
    engine.tick(at)
    (record,) = [r for r in caplog.records if "(reconciled)" in r.getMessage()]
    assert record.getMessage() == f"lead anna step connect: action {key} had happened (reconciled)"
    assert (record.lead, record.enrollment, record.sender, record.step) == (  # type: ignore[attr-defined]
        "anna", enr.id, "alice", "connect")
