"""Seed 000 and seed 001 end to end: whole sequences on the sandbox, on a virtual clock."""
from __future__ import annotations

import datetime as dt
import pathlib
from zoneinfo import ZoneInfo

from runner import audit
from runner.providers.base import Account, LeadRef
from runner.store import Event

from .conftest import ACCEPTING, MONDAY, EngineHarness, HarnessFactory, lead_row, sequence_yaml

BERLIN = ZoneInfo("Europe/Berlin")
ALICE_ACCOUNT = Account(sender="alice", account_id="acc-alice")
ANNA = LeadRef(key="anna", profile_url="https://www.linkedin.com/in/anna")

SEED_000 = """\
  - {{id: connect, action: connect{note}}}
  - {{id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {{end: not_accepted}}}}
  - id: first_message
    action: message
    template: {{with_note: thanks.j2, without_note: intro.j2}}
  - end: messaged
"""

SEED_001 = """\
  - id: check
    branch:
      - when: lead_messaged_first
        goto: hand_over
      - when: conversation_exists and days_since_last_message < 3
        goto: cool_down
      - default: next
  - {id: connect, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: withdraw}
  - id: first_message
    action: message
    template: {with_note: thanks.j2, without_note: intro.j2}
  - wait: 1 day
  - {id: follow_up, action: message, template: follow_up.j2}
  - wait: 1 day
  - {id: last_touch, action: message, template: follow_up.j2}
  - end: no_reply
  - {id: withdraw, action: withdraw}
  - end: not_accepted
  - {id: cool_down, wait: 3 days, goto: check}
  - {id: hand_over, action: tag, tags: [needs-human], end: replied}
"""


def berlin(t: dt.datetime) -> str:
    return t.astimezone(BERLIN).strftime("%a %H:%M")


def in_berlin_window(t: dt.datetime) -> bool:
    local = t.astimezone(BERLIN)
    return local.weekday() < 5 and dt.time(9) <= local.time() < dt.time(17)


def finished(h: EngineHarness, name: str = "anna") -> bool:
    return h.enrollment(name).state != "active"


def assert_clean(h: EngineHarness) -> None:
    assert audit.violations(h.sequences, h.engine.rt) == []


# --- seed 000: the first message depends on how the invite was sent --------------------------------

def test_invite_without_note_then_first_message_starts_a_new_conversation(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_000.format(note="")))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=2, stop=lambda: finished(h))

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.last_error) == ("done", "messaged", None)
    connect, message = h.actions("anna")
    assert (connect.action, connect.status, connect.content, connect.template) == ("connect", "done", None, None)
    assert h.provider.called("connect")[0]["note"] is None
    # Enrolled before Monday's window opened: the invite takes one of Monday's points, which are
    # spread over the whole window (8 h / 25 apart), not bunched at the opening.
    assert berlin(connect.performed_at) >= "Mon 09:00" and berlin(connect.performed_at) < "Mon 17:00"
    opening = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
    share = 8 * 3600 / 25
    offset = (connect.performed_at - opening).total_seconds()
    assert abs(offset - (round(offset / share - 0.5) + 0.5) * share) <= 0.1 * share + 1  # the middle of a share, give or take half the jitter
    (sent,) = h.provider.called("send_message")
    assert sent["conversation_id"] is None  # no note, no thread: the message starts one (seed 000)
    assert sent["text"] == "Hi Anna, I'm Alice Example."
    assert (message.status, message.template, message.content) == ("done", "intro.j2", "Hi Anna, I'm Alice Example.")
    # The thread the first message opened is remembered for the follow-ups.
    thread = h.sandbox.conversation(ALICE_ACCOUNT, ANNA).conversation_id
    assert thread is not None and message.conversation_id == thread and enr.facts["conversation_id"] == thread
    accepted = dt.datetime.fromisoformat(enr.facts["accepted_at"])
    assert accepted == connect.performed_at + dt.timedelta(hours=2)
    assert accepted < message.performed_at < accepted + dt.timedelta(minutes=30)
    assert enr.facts["invited_with_note"] is False
    assert_clean(h)


def test_invite_with_note_then_first_message_goes_into_the_invite_thread(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_000.format(note=", note: note.j2")))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=2, stop=lambda: finished(h))

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "messaged")
    connect, message = h.actions("anna")
    assert (connect.status, connect.template, connect.content) == ("done", "note.j2", "Hi Anna, let's connect.")
    assert h.provider.called("connect")[0]["note"] == "Hi Anna, let's connect."
    thread = h.sandbox.conversation(ALICE_ACCOUNT, ANNA).conversation_id
    assert thread is not None
    (accepted,) = Event.select().where(Event.kind == "accepted")
    (sent,) = h.provider.called("send_message")
    assert sent["conversation_id"] == thread  # the thread the note opened on acceptance
    assert sent["text"] == "Thanks for accepting, Anna!"
    assert (message.template, message.conversation_id) == ("thanks.j2", thread)
    assert accepted.occurred_at == connect.performed_at + dt.timedelta(hours=2)
    assert enr.facts["invited_with_note"] is True
    assert_clean(h)


# --- seed 001: the edge cases up front, then the flow ----------------------------------------------

def test_already_connected_skips_the_invite_without_charging_and_messages(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"connected_rate": 1.0})
    h.enroll(lead_row("anna"))
    h.run(days=1, stop=lambda: h.actions("anna", action="message") != [])

    connect, message = h.actions("anna")
    assert (connect.action, connect.status, connect.charged, connect.error_message) == (
        "connect", "skipped", False, "already connected")
    assert h.provider.called("connect") == []
    assert h.used("connect", "2026-03-02") == 0
    assert (message.action, message.status, message.template) == ("message", "done", "intro.j2")
    assert h.provider.called("send_message")[0]["conversation_id"] is None
    assert h.used("message", "2026-03-02") == 1
    facts = h.enrollment("anna").facts
    assert (facts["connected"], facts.get("invited", False)) == (True, False)
    assert h.enrollment("anna").step_id == "first_message+1"


def test_recent_conversation_cools_down_then_messages_in_that_conversation(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"recent_conversation_rate": 1.0})
    h.enroll(lead_row("anna"))
    h.tick()
    enr = h.enrollment("anna")
    assert (enr.step_id, enr.due_at) == ("cool_down", MONDAY + dt.timedelta(days=3))
    last = dt.datetime.fromisoformat(enr.facts["last_message_at"])
    assert MONDAY - dt.timedelta(days=3) < last < MONDAY
    assert h.actions("anna") == []

    h.run(days=4, stop=lambda: h.actions("anna", action="message") != [])
    connect, message = h.actions("anna")
    assert connect.status == "skipped" and connect.planned_at == MONDAY + dt.timedelta(days=3)
    thread = h.sandbox.conversation(ALICE_ACCOUNT, ANNA).conversation_id
    assert h.provider.called("send_message")[0]["conversation_id"] == thread
    assert (message.status, message.template, message.conversation_id) == ("done", "intro.j2", thread)
    assert in_berlin_window(message.performed_at)


def test_lead_who_messaged_first_is_tagged_and_handed_over(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"messaged_first_rate": 1.0})
    h.enroll(lead_row("anna"))
    h.run(days=1)

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.step_id) == ("done", "replied", "hand_over")
    assert enr.facts["lead_messaged_first"] is True
    assert h.lead("anna").tags == ["needs-human"]
    (tag,) = h.actions("anna")
    assert (tag.action, tag.status, tag.content) == ("tag", "done", "needs-human")
    sent = [c.method for c in h.provider.calls if c.method in ("visit", "connect", "send_message", "withdraw")]
    assert sent == []


def test_pending_invite_skips_connect_and_waits_for_acceptance(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"pending_rate": 1.0})
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.tick()
    connect, = h.actions("anna")
    assert (connect.status, connect.charged, connect.error_message) == ("skipped", False, "invitation already pending")
    enr = h.enrollment("anna")
    assert (enr.step_id, enr.due_at) == ("accepted", MONDAY + dt.timedelta(days=14))
    assert h.provider.called("connect") == []

    # The old invite is accepted two hours after first sight; the next poll wakes the lead.
    h.run(days=1, stop=lambda: h.actions("anna", action="message") != [])
    message = h.actions("anna", action="message")[0]
    enr = h.enrollment("anna")
    assert enr.facts["accepted_at"] == (MONDAY + dt.timedelta(hours=2)).isoformat()
    assert (message.template, h.provider.called("send_message")[0]["conversation_id"]) == ("intro.j2", None)
    assert MONDAY + dt.timedelta(hours=2) <= message.performed_at < MONDAY + dt.timedelta(hours=2, minutes=30)
    assert h.used("connect", "2026-03-02") == 0


def test_invite_not_accepted_in_14_days_is_withdrawn(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"accept_rate": 0.0}, poll_every=dt.timedelta(hours=6))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=20, stop=lambda: finished(h))

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "not_accepted")
    connect, withdraw = h.actions("anna")
    assert (withdraw.action, withdraw.status) == ("withdraw", "done")
    assert withdraw.performed_at >= connect.performed_at + dt.timedelta(days=14)
    assert withdraw.performed_at < connect.performed_at + dt.timedelta(days=15)
    assert in_berlin_window(withdraw.performed_at)
    (call,) = h.provider.called("withdraw")
    assert call["invitation_id"] == connect.provider_id
    assert enr.facts["withdrawn"] is True and enr.facts["invite_pending"] is False
    assert h.provider.called("send_message") == []
    assert_clean(h)


def test_reply_during_follow_ups_caught_by_a_poll_ends_the_sequence(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001),
                     sandbox={**ACCEPTING, "reply_rate": 1.0, "reply_delay_hours": (30, 30)})
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=6, stop=lambda: finished(h))

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "replied")
    messages = h.actions("anna", action="message")
    # first message, then follow-up a day later; the reply 30 h after the first lands before the last touch
    assert [m.step_id for m in messages] == ["first_message", "follow_up"]
    replied_at = messages[0].performed_at + dt.timedelta(hours=30)
    (reply,) = Event.select().where(Event.kind == "replied")
    assert (reply.occurred_at, reply.source) == (replied_at, "poll")
    assert replied_at <= enr.finished_at <= replied_at + dt.timedelta(minutes=15)
    assert len(h.provider.called("send_message")) == 2
    assert_clean(h)


def test_reply_after_the_last_poll_is_caught_by_sync_before_send(make_harness: HarnessFactory) -> None:
    # Polls only every 3 days: Monday 07:00 and Thursday 07:00. The lead accepts on Monday, the first
    # message goes out on Thursday after that poll, the reply comes 2 hours later, and the follow-up
    # is due on Friday with no poll in between: only the sync before the send can see the reply.
    h = make_harness(sequence_yaml("s", SEED_001),
                     sandbox={**ACCEPTING, "reply_rate": 1.0, "reply_delay_hours": (2, 2)},
                     poll_every=dt.timedelta(days=3))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=4, stop=lambda: h.actions("anna", action="message") != [])
    (first,) = h.actions("anna", action="message")
    assert berlin(first.performed_at).startswith("Thu 09:")
    replied_at = first.performed_at + dt.timedelta(hours=2)

    h.run(days=2, stop=lambda: finished(h))
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "replied")
    assert enr.finished_at == first.performed_at + dt.timedelta(days=1)  # when the follow-up was due
    assert Event.select().where(Event.kind == "replied").count() == 0  # no poll saw it
    assert enr.facts["replied_at"] == replied_at.isoformat()
    assert len(h.provider.called("send_message")) == 1
    assert h.provider.calls[-1].method == "conversation"  # the sync that stopped the send
    assert [a.step_id for a in h.actions("anna")] == ["connect", "first_message"]
    assert_clean(h)


def test_timeout_does_not_withdraw_an_invite_the_sequence_did_not_send(make_harness: HarnessFactory) -> None:
    # An invite was already pending (sent by hand or another tool): connect is skipped, and the
    # withdraw after the timeout leaves that invite alone (the docs: "the pending invite this
    # sequence sent").
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"pending_rate": 1.0, "accept_rate": 0.0},
                     poll_every=dt.timedelta(hours=6))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=20, stop=lambda: finished(h))

    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "not_accepted")
    connect, withdraw = h.actions("anna")
    assert (connect.status, connect.error_message) == ("skipped", "invitation already pending")
    assert (withdraw.action, withdraw.status, withdraw.charged, withdraw.error_message) == (
        "withdraw", "skipped", False,
        "the pending invitation was not sent by this sequence (`invite: any` withdraws it anyway)")
    assert h.provider.called("withdraw") == []
    assert enr.facts["invite_pending"] is True and "withdrawn" not in enr.facts
    assert h.used("withdraw", "2026-03-16") == 0


def test_withdraw_with_invite_any_removes_an_invite_sent_elsewhere(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_001.replace("{id: withdraw, action: withdraw}",
                                                         "{id: withdraw, action: withdraw, invite: any}")),
                     sandbox={"pending_rate": 1.0, "accept_rate": 0.0}, poll_every=dt.timedelta(hours=6))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=20, stop=lambda: finished(h))

    connect, withdraw = h.actions("anna")
    assert (withdraw.action, withdraw.status, withdraw.charged) == ("withdraw", "done", True)
    assert len(h.provider.called("withdraw")) == 1
    assert h.enrollment("anna").facts["invite_pending"] is False


def test_wait_for_accepted_counts_the_acceptance_of_an_invite_sent_elsewhere(make_harness: HarnessFactory) -> None:
    # Decided and documented: the lead is connected either way, which is what the next message
    # needs. Seen at the timeout's last look (no poll in between), it is an acceptance all the same.
    h = make_harness(sequence_yaml("s", SEED_001), sandbox={"pending_rate": 1.0},
                     poll_every=dt.timedelta(days=30))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=16, stop=lambda: h.actions("anna", action="message") != [])

    enr = h.enrollment("anna")
    assert (enr.facts["accepted"], enr.facts.get("invited")) == (True, None)
    assert enr.facts["accepted_at"] == (MONDAY + dt.timedelta(hours=2)).isoformat()  # when LinkedIn says
    assert [a.action for a in h.actions("anna")] == ["connect", "message"]


def test_shipped_edges_flow_sends_a_lead_with_a_pending_invite_straight_to_waiting_for_acceptance(
        make_harness: HarnessFactory) -> None:
    # A lead whose invite was already pending (sent before the sequence) must not queue behind
    # weeks of visits: it waits for the acceptance at once, and is thanked soon after it.
    repo = pathlib.Path(__file__).resolve().parents[2]
    templates = {p.name: p.read_text(encoding="utf-8").rstrip("\n") for p in (repo / "templates").glob("*.j2")}
    h = make_harness({"edges-full-flow": (repo / "sequences" / "edges-full-flow.yaml").read_text(encoding="utf-8")},
                     templates=templates, sandbox={"pending_rate": 1.0, "accept_delay_hours": (5, 5)})
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.tick()
    enr = h.enrollment("anna")
    assert enr.step_id == "pending" and h.actions("anna") == []
    h.run(days=2, stop=lambda: h.actions("anna", action="message") != [])
    (message,) = h.actions("anna")
    accepted = dt.datetime.fromisoformat(h.enrollment("anna").facts["accepted_at"])
    assert (message.step_id, message.status) == ("first_message", "done")
    assert accepted <= message.performed_at < accepted + dt.timedelta(minutes=30)
    assert h.provider.called("visit") == [] and h.provider.called("connect") == []


def test_notify_runs_at_any_hour_unless_the_step_asks_for_the_window(make_harness: HarnessFactory) -> None:
    # MONDAY is 08:00 in Berlin, an hour before the window opens.
    steps = """\
  - {id: crm, action: notify, url: "https://crm.example.com/hook"}
  - {id: crm_in_hours, action: notify, url: "https://crm.example.com/hook2", in_window: true}
  - {id: mark, action: tag, tags: [synced], in_window: true}
  - end: synced
"""
    h = make_harness(sequence_yaml("s", steps))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.tick()
    assert [url for url, _ in h.notified] == ["https://crm.example.com/hook"]  # at 08:00: any hour
    enr = h.enrollment("anna")
    assert (enr.step_id, enr.due_at) == ("crm_in_hours", MONDAY + dt.timedelta(hours=1))  # 09:00 Berlin
    h.run(days=1, stop=lambda: finished(h))
    assert [url for url, _ in h.notified] == ["https://crm.example.com/hook", "https://crm.example.com/hook2"]
    second, tag = h.actions("anna")[1:]
    assert second.performed_at == tag.performed_at == MONDAY + dt.timedelta(hours=1)


def test_without_the_replied_exit_a_replied_lead_goes_on_until_a_message_step(make_harness: HarnessFactory) -> None:
    # As documented: no message ever goes to a lead who replied, but without `replied` in
    # `exit_when` the other steps go on (a sequence may handle replies itself).
    from runner.providers.base import ProviderEvent

    steps = """\
  - wait: 2 hours
  - {id: look, action: visit}
  - {id: hello, action: message, template: intro.j2}
  - end: messaged
"""
    h = make_harness(sequence_yaml("s", steps, exits=""), start=MONDAY + dt.timedelta(hours=2))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.tick()
    h.engine.apply_event(ProviderEvent("ev-1", "replied", h.now, "acc-alice", "anna"), h.now, source="webhook")
    h.run(days=1, stop=lambda: finished(h))
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.step_id) == ("done", "replied", "hello")
    assert [(a.action, a.status) for a in h.actions("anna")] == [("visit", "done")]
    assert h.provider.called("send_message") == []


def test_a_blocked_lead_ends_at_its_next_wake_up_whatever_exit_when_says(make_harness: HarnessFactory) -> None:
    from runner.leads import block_profiles

    steps = """\
  - {id: pause, wait: 2 hours}
  - {id: look, action: visit}
  - end: visited
"""
    h = make_harness(sequence_yaml("s", steps, exits=""))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.tick()
    block_profiles([("anna", "https://www.linkedin.com/in/anna")], None, h.now)
    h.run(days=1, stop=lambda: finished(h))
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.step_id) == ("done", "blocked", "pause")
    assert h.actions("anna") == []
