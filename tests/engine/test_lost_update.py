"""The lost update (issue 8): an event applied from another connection while the lead's provider
call is in flight must survive the lead's next save, and a reply must stop the lead.

Two threads, two connections to one SQLite file: the lead's run (its provider call blocks on a
`threading.Event`) and a delivery of `replied` from elsewhere while that call is in flight.
"""
from __future__ import annotations

import threading
from typing import Any

from runner.providers.base import ProviderEvent
from runner.store import Event, db

from .conftest import BERLIN_10AM, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: hello, action: message, template: intro.j2}
  - end: done
"""
WAIT_S = 30  # a bound on waiting for the other thread, never a fixed sleep


def test_a_reply_delivered_during_a_provider_call_is_not_overwritten_by_the_leads_save(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), start=BERLIN_10AM)  # inside the window
    h.enroll(lead_row("anna"))
    in_call, go = threading.Event(), threading.Event()
    inner = h.provider.connect

    def connect(account: Any, lead: Any, **kwargs: Any) -> Any:
        in_call.set()
        assert go.wait(WAIT_S), "the test never let the provider call finish"
        return inner(account, lead, **kwargs)

    h.provider.connect = connect  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def run_lead() -> None:
        try:
            h.run(days=1, stop=go.is_set)  # until its connect went out (paced: not at once)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            db.close()  # this thread's own connection (Postgres warns about one left open)

    lead_thread = threading.Thread(target=run_lead)
    lead_thread.start()
    try:
        assert in_call.wait(WAIT_S), "the lead never called connect"
        reply = ProviderEvent("reply-1", "replied", h.now, "acc-alice", "anna")
        h.engine.apply_event(reply, h.now, source="webhook")  # this thread: another connection
    finally:
        go.set()
        lead_thread.join(WAIT_S)
    assert not lead_thread.is_alive() and errors == []

    assert Event.select().where(Event.event_id == "reply-1").count() == 1
    assert h.enrollment("anna").facts.get("replied") is True  # the fact survived the lead's save
    h.run(days=3)
    enr = h.enrollment("anna")
    assert (enr.state, enr.outcome) == ("done", "replied")
    assert h.provider.called("send_message") == []  # nothing after the reply
