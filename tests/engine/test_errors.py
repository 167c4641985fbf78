"""The engine's fixed reaction to each provider error kind (seed 001's table), asserted exactly."""
from __future__ import annotations

import datetime as dt

import pytest

from runner import audit
from runner.cli.main import main
from runner.engine import flow
from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.store import Action, Enrollment, Event, Usage

from .conftest import UTC, EngineHarness, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: first_message, action: message, template: intro.j2}
  - end: messaged
"""

#: A relationship lookup (no action, no pacing) before the invite: backoff is visible on due_at alone.
CHECK_FIRST = """\
  - id: check
    branch:
      - when: connected
        goto: first_message
      - default: next
""" + FLOW

#: A message to a stranger: the sandbox answers NOT_CONNECTED, and the engine goes back to `connect`.
MESSAGE_FIRST = """\
  - {id: hello, action: message, template: intro.j2, end: messaged}
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: again, action: message, template: follow_up.j2, end: messaged_after_connect}
"""

#: Monday 10:00 in Berlin, well inside the window.
OPEN = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TUESDAY_MIDNIGHT = dt.datetime(2026, 3, 3, 0, 0, tzinfo=UTC)


def until_called(h: EngineHarness, method: str, n: int = 1, days: float = 3) -> None:
    h.run(days=days, stop=lambda: len(h.provider.called(method)) >= n)


def no_errors(reports: list) -> bool:
    return all(r.errors == 0 for r in reports)


def error(kind: ErrorKind, message: str, **kw: object) -> ProviderError:
    return ProviderError(kind, message, label=kind.value, **kw)  # type: ignore[arg-type]


def test_limit_reached_sleeps_until_retry_at_and_refunds_the_charge(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.LIMIT_REACHED, "daily limit reached", retry_at=TUESDAY_MIDNIGHT))
    reports = h.run(days=1, stop=lambda: h.provider.called("connect") != [])

    (refused,) = h.actions("anna")
    assert (refused.status, refused.charged, refused.error_kind, refused.error_message) == (
        "failed", False, "LIMIT_REACHED", "daily limit reached")
    assert h.used("connect", "2026-03-02") == 0
    enr = h.enrollment("anna")
    assert (enr.state, enr.step_id, enr.due_at) == ("active", "connect", TUESDAY_MIDNIGHT)

    # Tuesday: the same step tries again under a new idempotency key and goes through.
    reports += h.run(days=2, stop=lambda: len(h.provider.called("connect")) == 2)
    assert no_errors(reports)
    refused, done = h.actions("anna")
    assert done.status == "done" and done.key != refused.key
    assert done.performed_at.astimezone(UTC).date() == dt.date(2026, 3, 3)
    assert h.used("connect", "2026-03-03") == 1
    assert h.enrollment("anna").last_error is None


def test_already_connected_on_connect_counts_as_accepted(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), sandbox={"accept_rate": 0.0})
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.ALREADY_CONNECTED, "already a 1st-degree connection"))
    reports = h.run(days=1, stop=lambda: h.enrollment("anna").step_id != "connect")

    (skipped,) = h.actions("anna")
    assert (skipped.status, skipped.charged, skipped.error_kind) == ("skipped", False, "ALREADY_CONNECTED")
    assert h.used("connect", "2026-03-02") == 0
    enr = h.enrollment("anna")
    assert (enr.facts["connected"], enr.facts["accepted"], enr.facts["invite_pending"]) == (True, True, False)
    assert enr.step_id == "first_message"  # wait_for accepted passed at once
    assert no_errors(reports)


def test_invitation_pending_on_connect_waits_for_the_acceptance(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), sandbox={"accept_rate": 0.0})
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.INVITATION_PENDING, "invitation inv-1 is still pending"))
    until_called(h, "connect")

    (skipped,) = h.actions("anna")
    assert (skipped.status, skipped.charged, skipped.error_kind) == ("skipped", False, "INVITATION_PENDING")
    assert h.used("connect", "2026-03-02") == 0
    enr = h.enrollment("anna")
    attempted = h.provider.calls[-1]
    assert attempted.method == "connect"
    assert (enr.step_id, enr.facts["invite_pending"]) == ("accepted", True)
    assert enr.due_at == enr.step_entered_at + dt.timedelta(days=14)

    # The acceptance arrives (a webhook): the lead wakes and moves on.
    at = h.now + dt.timedelta(hours=3)
    h.engine.apply_event(ProviderEvent("wh-1", "accepted", at, "acc-alice", "anna"), at, source="webhook")
    enr = h.enrollment("anna")
    assert (enr.due_at, enr.facts["accepted"]) == (at, True)
    h.tick(at)
    # It went on to the first message at once (which this sandbox, where nobody accepts, refuses).
    assert [(a.step_id, a.started_at) for a in h.actions("anna")][1:] == [("first_message", at)]


def test_not_connected_on_message_goes_back_to_the_first_connect_step(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", MESSAGE_FIRST))
    h.enroll(lead_row("anna"))
    reports = h.run(days=2, stop=lambda: h.enrollment("anna").state != "active")

    refused, connect, message = h.actions("anna")
    assert (refused.step_id, refused.status, refused.charged, refused.error_kind) == (
        "hello", "failed", False, "NOT_CONNECTED")
    assert refused.error_message == "anna is not a 1st-degree connection"
    assert (connect.step_id, connect.status) == ("connect", "done")
    assert (message.step_id, message.status) == ("again", "done")
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "messaged_after_connect")
    # Only the message that went through is charged, whichever day the acceptance let it go out.
    assert sum(u.used for u in Usage.select().where(Usage.action == "message")) == 1
    assert no_errors(reports)


def test_profile_not_accessible_fails_the_lead_with_the_reason(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), sandbox={"inaccessible_rate": 1.0})
    h.enroll(lead_row("anna"))
    h.tick()
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.due_at) == ("failed", "failed", None)
    assert enr.last_error == "PROFILE_NOT_ACCESSIBLE: the profile of anna is not accessible"
    assert h.provider.called("connect") == []


def test_invalid_input_on_an_action_fails_the_lead_and_refunds(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.INVALID_INPUT, "profile url is malformed"))
    until_called(h, "connect")
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.last_error) == ("failed", "failed", "INVALID_INPUT: profile url is malformed")
    (act,) = h.actions("anna")
    assert (act.status, act.charged, act.error_kind, act.error_message) == (
        "failed", False, "INVALID_INPUT", "profile url is malformed")
    assert h.used("connect", "2026-03-02") == 0


# --- AUTH_EXPIRED ---------------------------------------------------------------------------------

SEQRUN_YAML = """\
version: 1
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice, timezone: Europe/Berlin, full_name: Alice Example}
"""


def resume_with_cli(h: EngineHarness, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    (h.root / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    monkeypatch.chdir(h.root)
    monkeypatch.setattr("runner.cli.commands.senders.utc_now", lambda: h.now)
    assert main(["senders", "resume", "alice", "--db", h.db_url]) == 0
    return capsys.readouterr().out


def test_auth_expired_in_a_poll_pauses_the_sender_and_its_leads_until_resumed(
        make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("ben"), lead_row("cleo"))
    h.run(until=OPEN + dt.timedelta(hours=1))
    assert [e.state for e in Enrollment.select()] == ["active"] * 3
    h.sandbox.expire_auth("acc-alice")

    h.run(days=1)
    sender = h.sender_row()
    assert (sender.status, sender.paused_reason) == ("paused", "auth expired")
    assert [(e.state, e.paused_reason) for e in Enrollment.select()] == [("paused", "auth expired")] * 3
    calls_while_paused = len(h.provider.calls)
    h.run(days=1)
    assert len(h.provider.calls) == calls_while_paused  # a paused sender is neither polled nor used

    h.sandbox.restore_auth("acc-alice")
    out = resume_with_cli(h, monkeypatch, capsys)
    assert out == "sender alice is active; resumed 3 enrollments\n"
    assert (h.sender_row().status, h.sender_row().paused_reason) == ("active", None)
    assert [(e.state, e.paused_reason, e.due_at) for e in Enrollment.select()] == [("active", None, h.now)] * 3
    reports = h.run(days=3, stop=lambda: all(e.state == "done" for e in Enrollment.select()))
    assert [e.outcome for e in Enrollment.select()] == ["messaged"] * 3
    assert no_errors(reports)


def test_auth_expired_on_an_action_pauses_the_sender_and_the_action_runs_after_resume(
        make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("ben"))
    h.provider.fail("connect", error(ErrorKind.AUTH_EXPIRED, "session expired"))
    reports = h.run(days=1, stop=lambda: h.provider.called("connect") != [])

    sender = h.sender_row()
    assert (sender.status, sender.paused_reason) == ("paused", "auth expired")
    assert [(e.state, e.paused_reason) for e in Enrollment.select()] == [("paused", "auth expired")] * 2
    (refused,) = Action.select()
    assert (refused.status, refused.charged, refused.error_kind) == ("failed", False, "AUTH_EXPIRED")

    assert resume_with_cli(h, monkeypatch, capsys) == "sender alice is active; resumed 2 enrollments\n"
    reports += h.run(days=2, stop=lambda: all(e.state == "done" for e in Enrollment.select()))
    assert [e.outcome for e in Enrollment.select()] == ["messaged"] * 2
    assert no_errors(reports)
    connects = [a for a in Action.select().where(Action.action == "connect").order_by(Action.id)]
    assert [a.status for a in connects] == ["failed", "done", "done"]
    assert len({a.key for a in connects}) == 3


# --- retries --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", [ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED])
def test_retryable_errors_back_off_exponentially_then_fail_with_the_error(
        make_harness: HarnessFactory, kind: ErrorKind) -> None:
    h = make_harness(sequence_yaml("s", CHECK_FIRST), start=OPEN, retry_budget=dt.timedelta(minutes=20))
    h.enroll(lead_row("anna"))
    h.provider.fail("relationship", error(kind, "upstream said no"), times=10)
    rt = h.engine.rt
    delays = []
    for attempt in range(1, 5):
        h.tick()
        enr = h.enrollment("anna")
        assert (enr.state, enr.attempt) == ("active", attempt)
        delay = enr.due_at - h.now
        nominal = rt.backoff_base * 2 ** (attempt - 1)
        assert delay == flow.backoff(rt, attempt, key=f"{enr.id}:check")
        assert nominal * 0.5 <= delay < nominal * 1.5  # jitter around the doubling base
        delays.append(delay)
        h.clock.now = enr.due_at
    assert delays[2] > delays[0] and delays[3] > delays[1]  # doubling beats any jitter over two steps
    assert sum(delays, dt.timedelta()) <= rt.retry_budget
    # The fifth failure's backoff would end after the 20-minute budget: the lead fails, error kept.
    assert sum(delays, dt.timedelta()) + flow.backoff(rt, 5, key=f"{enr.id}:check") > rt.retry_budget
    h.tick()
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.due_at) == ("failed", "failed", None)
    assert enr.last_error == f"{kind.value}: upstream said no (gave up after 5 attempts and 11 min of backoff; the retry budget is 20 min)"
    assert len(h.provider.called("relationship")) == 5


def test_a_run_of_transient_errors_within_the_budget_does_not_fail_the_lead(make_harness: HarnessFactory) -> None:
    # Seven failures in a row (the old fixed count gave up after five, within minutes): the default
    # budget of 24 hours rides them out.
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "gateway timeout"), times=7)
    reports = h.run(days=2, stop=lambda: h.enrollment("anna").step_id != "connect")
    enr = h.enrollment("anna")
    assert (enr.state, enr.step_id, enr.last_error) == ("active", "accepted", None)
    assert "retries" not in enr.facts and "retry_seconds" not in enr.facts
    assert len(h.provider.called("connect")) == 8 and h.sandbox.calls["connect"] == 1
    assert no_errors(reports)


def test_backoff_is_capped(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CHECK_FIRST), start=OPEN)
    rt = h.engine.rt
    for attempt in (8, 12, 30):
        assert rt.backoff_cap * 0.5 <= flow.backoff(rt, attempt, key="1:check") < rt.backoff_cap * 1.5


def test_rate_limited_waits_at_least_until_retry_at(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CHECK_FIRST), start=OPEN)
    h.enroll(lead_row("anna"))
    later = OPEN + dt.timedelta(minutes=10)
    h.provider.fail("relationship", error(ErrorKind.RATE_LIMITED, "too many requests", retry_at=later))
    h.tick()
    assert h.enrollment("anna").due_at == later
    h.tick(later)
    enr = h.enrollment("anna")
    assert (enr.step_id, enr.attempt, enr.last_error) == ("connect", 0, None)


def test_transient_after_the_action_happened_is_reconciled_without_a_second_send(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "response lost"), after=True)
    until_called(h, "connect")
    (act,) = h.actions("anna")
    enr = h.enrollment("anna")
    assert (act.status, act.charged, enr.facts["inflight"], enr.attempt) == ("in_flight", True, act.key, 1)
    assert h.sandbox.calls["connect"] == 1

    h.tick(enr.due_at)
    methods = [c.method for c in h.provider.calls]
    assert methods[methods.index("connect") + 1:] == ["find_action"]  # reconciled first, nothing resent
    assert h.provider.called("find_action")[0]["key"] == act.key
    (act,) = h.actions("anna")
    assert (act.status, act.charged) == ("done", True)
    assert h.sandbox.calls["connect"] == 1
    assert h.used("connect", "2026-03-02") == 1
    enr = h.enrollment("anna")
    assert (enr.step_id, "inflight" in enr.facts) == ("accepted", False)


def test_transient_before_the_action_happened_is_retried_once_under_a_new_key(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "gateway timeout"))
    reports = h.run(days=1, stop=lambda: h.enrollment("anna").step_id != "connect")

    lost, done = h.actions("anna")
    assert (lost.key, lost.status, lost.charged) == ("1:connect:0:0", "failed", False)
    assert lost.error_message == "not performed (reconciled after an interruption)"
    assert (done.key, done.status) == ("1:connect:0:1", "done")
    assert [c["key"] for c in h.provider.called("connect")] == ["1:connect:0:0", "1:connect:0:1"]
    assert h.sandbox.calls["connect"] == 1
    assert h.used("connect", "2026-03-02") == 1
    assert no_errors(reports)


def test_transient_on_every_attempt_fails_the_lead_when_the_budget_is_spent(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), retry_budget=dt.timedelta(hours=2))
    h.enroll(lead_row("anna"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "gateway timeout"), times=50)
    reports = h.run(days=2, stop=lambda: h.enrollment("anna").state != "active")

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("failed", "failed")
    assert enr.last_error == "TRANSIENT: gateway timeout (gave up after 7 attempts and 1.1 h of backoff; the retry budget is 2 h)"
    acts = h.actions("anna")
    assert [a.key for a in acts] == [f"1:connect:0:{n}" for n in range(7)]
    assert {a.status for a in acts} == {"failed"} and not any(a.charged for a in acts)
    assert acts[-1].error_message == "gateway timeout (gave up after 7 attempts and 1.1 h of backoff; the retry budget is 2 h)"
    assert dt.timedelta(hours=1) < dt.timedelta(seconds=enr.facts["retry_seconds"]) <= dt.timedelta(hours=2)
    assert h.sandbox.calls["connect"] == 0 and len(h.provider.called("connect")) == 7
    assert h.used("connect", "2026-03-02") == 0
    assert no_errors(reports)
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_sandbox_injected_errors_never_break_a_promise(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW + ""), sandbox={
        "errors": {"TRANSIENT": 0.15, "STATUS_429": 0.1, "LIMIT_REACHED": 0.02}, "accept_rate": 0.8})
    h.enroll(*[lead_row(f"lead-{i:02d}") for i in range(12)])
    reports = h.run(days=10)
    assert no_errors(reports)
    assert sum(h.sandbox.injected_errors.values()) > 0
    assert audit.violations(h.sequences, h.engine.rt) == []
    for enr in Enrollment.select():
        assert enr.state in ("active", "done", "failed")
        if enr.state == "failed":
            assert enr.last_error
    keys = [a.key for a in Action.select()]
    assert len(keys) == len(set(keys))


def test_not_connected_while_the_invite_is_pending_fails_instead_of_spinning(make_harness: HarnessFactory) -> None:
    # No wait_for between connect and message: going back to `connect` would skip the pending invite
    # and come straight back to the message, again and again.
    h = make_harness(sequence_yaml("s", """\
  - {id: connect, action: connect}
  - {id: hello, action: message, template: intro.j2}
  - end: messaged
"""), sandbox={"accept_rate": 0.0})
    h.enroll(lead_row("anna"))
    reports = h.run(days=1)
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("failed", "failed")
    assert enr.last_error == ("NOT_CONNECTED: anna is not a 1st-degree connection (the invitation is still "
                              "pending: wait for it with `wait_for: accepted` before messaging)")
    assert [(a.action, a.status) for a in h.actions("anna")] == [("connect", "done"), ("message", "failed")]
    assert len(h.provider.called("send_message")) == 1
    assert no_errors(reports)


def test_limit_reached_holds_the_senders_other_leads_too(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(*[lead_row(name) for name in ("anna", "ben", "chloe")])
    h.provider.fail("connect", error(ErrorKind.LIMIT_REACHED, "daily limit reached", retry_at=TUESDAY_MIDNIGHT))
    h.run(days=1)
    # One refusal is enough: the other leads wait for the provider's retry time instead of asking.
    assert len(h.provider.called("connect")) == 1
    assert all(h.enrollment(name).due_at >= TUESDAY_MIDNIGHT for name in ("anna", "ben", "chloe"))


def test_an_event_that_cannot_be_applied_does_not_stop_the_leads(make_harness: HarnessFactory) -> None:
    from runner.providers.base import PollResult
    from runner.store import SyncCursor
    from runner.store.models import InboxEvent

    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    bad = ProviderEvent(event_id="e1", kind="accepted", occurred_at=dt.datetime(2026, 3, 2, 9, 0),  # naive: unusable
                        lead_key="anna")
    h.provider.poll_events = lambda account, since: PollResult(events=(bad,), synced_until=h.now)  # type: ignore[method-assign]
    h.run(days=1, stop=lambda: bool(h.provider.called("connect")))
    assert len(h.provider.called("connect")) == 1  # the lead went on
    # The event is stored dead with its reason, and the cursor moved on: nothing is held up by it.
    assert SyncCursor.select().count() == 1
    (dead,) = InboxEvent.select()
    assert (dead.event_id, dead.state, dead.source, dead.occurred_at, dead.error) == (
        "e1", "dead", "poll", None,
        "ValueError: naive datetime datetime.datetime(2026, 3, 2, 9, 0): seqrun stores only timezone-aware times")
    assert Event.select().count() == 0  # never applied


def test_an_expiry_seen_after_the_session_was_renewed_does_not_pause_the_resumed_sender(
        make_harness: HarnessFactory, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # The session expires on a call; the paused sender is not polled, so the expiry event is still
    # unread when the user renews the session and resumes it. The next poll brings the old expiry
    # and the renewal together: the sender stays active.
    # (Polls 12 hours apart: the invite's paced slot falls somewhere in the day's window.)
    h = make_harness(sequence_yaml("s", FLOW), start=OPEN, poll_every=dt.timedelta(hours=12))
    h.enroll(lead_row("anna"))
    h.tick()  # the first poll, before anything expired
    h.sandbox.expire_auth("acc-alice")
    h.run(days=1, stop=lambda: h.sender_row().status == "paused")
    assert h.now < OPEN + dt.timedelta(hours=12)  # paused by a call for the lead, before the next poll
    h.clock.now = h.now + dt.timedelta(hours=1)
    h.sandbox.restore_auth("acc-alice")
    assert resume_with_cli(h, monkeypatch, capsys) == "sender alice is active; resumed 1 enrollment\n"
    # On until the invite went out and the next poll brought both events.
    h.run(days=1, stop=lambda: h.actions("anna", action="connect") != [] and Event.select().count() >= 2)
    assert (h.sender_row().status, h.sender_row().paused_reason) == ("active", None)
    assert [e.kind for e in Event.select().order_by(Event.occurred_at) if e.kind.startswith("auth")] == [
        "auth_expired", "auth_restored"]
    assert h.actions("anna", action="connect")[-1].status == "done"


def test_time_waiting_for_the_window_does_not_count_against_the_retry_budget(make_harness: HarnessFactory) -> None:
    # One error on Friday evening, the window closes, one more on Monday morning: two errors and
    # three minutes of backoff, well inside a one-hour budget, although 64 hours passed between them.
    friday = dt.datetime(2026, 3, 6, 15, 59, tzinfo=UTC)  # 16:59 in Berlin; the window closes at 17:00
    h = make_harness(sequence_yaml("s", FLOW), start=friday, retry_budget=dt.timedelta(hours=1))
    h.enroll(lead_row("anna"))
    h.provider.fail("relationship", error(ErrorKind.TRANSIENT, "gateway timeout"))
    h.provider.fail("connect", error(ErrorKind.TRANSIENT, "gateway timeout"))
    h.run(days=4, stop=lambda: h.enrollment("anna").step_id != "connect" or h.enrollment("anna").state != "active")
    enr = h.enrollment("anna")
    assert (enr.state, enr.step_id, enr.last_error) == ("active", "accepted", None)
    connects = h.actions("anna", action="connect")
    assert [a.status for a in connects] == ["failed", "done"]
    assert connects[0].started_at.astimezone(dt.timezone(dt.timedelta(hours=1))).strftime("%a") == "Mon"
