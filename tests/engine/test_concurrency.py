"""Another process (`seqrun pause`, `seqrun leads block`) acting while the engine works on a lead.

peewee keeps one connection per thread, so a thread here is another connection, like another process.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from runner.holds import LEAD, SENDER, Target, pause
from runner.leads import block_profiles
from runner.store import db

from .conftest import HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: hello, action: message, template: intro.j2}
  - end: done
"""


def elsewhere(fn: Callable[[], Any]) -> Any:
    box: list[Any] = []
    def work() -> None:
        try:
            box.append(fn())
        finally:
            db.close()  # this thread's own connection

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return box[0]


@pytest.mark.parametrize("what", ["pause", "pause-sender", "block"])
def test_a_pause_or_block_during_a_provider_call_stops_the_lead(make_harness: HarnessFactory, what: str) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    lead_id = h.lead("anna").id
    inner = h.provider.relationship
    calls: list[int] = []

    def relationship(account: Any, lead: Any) -> Any:
        calls.append(1)
        # The block lands in the run that would send (the second pre-check); pauses in the first.
        if len(calls) == (2 if what == "block" else 1):
            if what == "pause":
                elsewhere(lambda: pause(Target(LEAD, lead_id, "lead anna"), "talking on the phone", h.now))
            elif what == "pause-sender":
                elsewhere(lambda: pause(Target(SENDER, h.sender_id(), "sender alice"), "on holiday", h.now))
            else:
                elsewhere(lambda: block_profiles([("anna", "https://www.linkedin.com/in/anna")], "asked us to stop",
                                                 h.now))
        return inner(account, lead)

    h.provider.relationship = relationship  # type: ignore[method-assign]
    h.run(days=3)
    enr = h.enrollment("anna")
    assert h.provider.called("connect") == []
    if what == "block":
        assert (enr.state, enr.outcome) == ("done", "blocked")
    else:
        assert enr.state == "paused"
        assert enr.paused_reason == ("lead paused: talking on the phone" if what == "pause" else "sender paused: on holiday")
    assert [a.status for a in h.actions("anna")] == []


@pytest.mark.parametrize("action", ["notify", "tag"])
def test_a_block_made_since_the_lead_woke_up_stops_a_tag_or_notify(make_harness: HarnessFactory, action: str) -> None:
    # The docs promise the block list is read again right before every action, tag and notify
    # included: a CRM must not hear about a lead who asked to be left alone a moment ago.
    step = ('{id: out, action: notify, url: "https://crm.example.com/hook"}' if action == "notify"
            else "{id: out, action: tag, tags: [hot]}")
    steps = f"""\
  - id: check
    branch:
      - when: connected
        end: connected
      - default: next
  - {step}
  - end: done
"""
    h = make_harness(sequence_yaml("s", steps))
    h.enroll(lead_row("anna"))
    inner = h.provider.relationship

    def relationship(account: Any, lead: Any) -> Any:  # the branch's lookup, after the wake-up's exit check
        elsewhere(lambda: block_profiles([("anna", "https://www.linkedin.com/in/anna")], "asked us to stop", h.now))
        return inner(account, lead)

    h.provider.relationship = relationship  # type: ignore[method-assign]
    h.tick()
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome, enr.step_id) == ("done", "blocked", "out")
    assert h.notified == [] and h.actions("anna") == [] and h.lead("anna").tags == []
