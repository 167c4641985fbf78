"""No interleaving of event delivery with lead runs loses an event, and nothing is done after a reply.

A reply is delivered from another thread (another connection to the SQLite file, like another
process) at a point hypothesis picks: before a run claims the lead, while one of its provider
calls is in flight, or as a call returns (the delivery then waits for the lead's write lock and
lands between the call and the lead's save, or just after it). Afterwards the reply is in the
ledger once, its inbox row is applied, the lead holds the fact and has stopped if it was still
running when the reply was committed, and no action was recorded after that commit.
"""
from __future__ import annotations

import datetime as dt
import pathlib
import tempfile
import threading
from typing import Any, Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from runner.providers.base import ProviderEvent
from runner.store import Action, Enrollment, Event, db, open_store
from runner.store import inbox as store_inbox
from runner.store.inbox import Received
from runner.store.models import InboxEvent

from .conftest import ACCEPTING, ALICE, BERLIN_10AM, EngineHarness, lead_row, sequence_yaml, write_project

FLOW = sequence_yaml("s", """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: hello, action: message, template: intro.j2}
  - {id: pause, wait: 1 day}
  - id: check
    branch:
      - when: replied
        end: answered
      - default: next
  - {id: follow_up, action: message, template: follow_up.j2}
  - end: done
""")
CALLS = ("relationship", "conversation", "connect", "send_message", "find_action")
WAIT_S = 30


class Delivery:
    """Delivers the reply once, from another thread, and notes what was true when it committed."""

    def __init__(self, h: EngineHarness, via: str) -> None:
        self.h, self.via = h, via
        self.thread: threading.Thread | None = None
        self.actions_before: int | None = None  # the last Action id committed before the reply
        self.running: bool | None = None  # whether the lead was still running then
        self.errors: list[BaseException] = []

    def start(self) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._deliver)
            self.thread.start()

    def wait(self) -> None:
        if self.thread is not None:
            self.thread.join(WAIT_S)
            assert not self.thread.is_alive(), "the delivery never committed"

    def _deliver(self) -> None:
        try:
            at = self.h.clock.now
            event = ProviderEvent("reply-1", "replied", at, "acc-alice", "anna")
            if self.via == "engine":
                self.h.engine.apply_event(event, at, source="webhook")
            else:  # a receiver in another process only appends
                store_inbox.append([Received(event, "{}")], source="webhook", provider="sandbox", received_at=at)
            with db.atomic():  # what was committed by the time the reply was
                self.actions_before = Action.select().count() and max(a.id for a in Action.select(Action.id))
                self.running = Enrollment.get().state in ("active", "paused")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            db.close()


def wrap(h: EngineHarness, name: str, before: Callable[[int], None], after: Callable[[int], None]) -> None:
    inner = getattr(h.provider, name)
    count = [0]

    def call(*args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        before(count[0])
        try:
            return inner(*args, **kwargs)
        finally:
            after(count[0])

    setattr(h.provider, name, call)


# The sharpest case: the reply lands during the sync-before-send right before a message, in the
# same run that would send it.
@example(point="during_call", call="conversation", nth=2, tick=1, via="append")
@example(point="as_call_returns", call="conversation", nth=2, tick=1, via="engine")
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(point=st.sampled_from(["before_claim", "during_call", "as_call_returns"]),
       call=st.sampled_from(CALLS), nth=st.integers(1, 3), tick=st.integers(1, 12),
       via=st.sampled_from(["engine", "append"]))
def test_no_event_is_lost_and_nothing_happens_after_a_reply(point: str, call: str, nth: int, tick: int,
                                                            via: str) -> None:
    with tempfile.TemporaryDirectory(prefix="seqrun-inbox-prop-") as tmp:
        root = write_project(pathlib.Path(tmp) / "project", FLOW)
        open_store(str(pathlib.Path(tmp) / "t.db"), durable=False)
        try:
            h = EngineHarness(root, start=BERLIN_10AM, sandbox={"seed": 1, **ACCEPTING}, senders=(ALICE,),
                              knobs={"poll_every": dt.timedelta(hours=3)})
            h.enroll(lead_row("anna"))
            delivery = Delivery(h, via)
            if point == "before_claim":
                ticks = [0]
                inner_tick = h.engine.tick

                def tick_then(now: dt.datetime, **kwargs: Any) -> Any:
                    ticks[0] += 1
                    if ticks[0] == tick:
                        delivery.start()
                        delivery.wait()
                    return inner_tick(now, **kwargs)

                h.engine.tick = tick_then  # type: ignore[method-assign]
            else:
                def before(n: int) -> None:
                    if point == "during_call" and n == nth:
                        delivery.start()
                        delivery.wait()  # committed while the call is in flight

                def after(n: int) -> None:
                    if point == "as_call_returns" and n == nth:
                        delivery.start()  # blocks on the lead's write lock until it saves

                wrap(h, call, before, after)
            h.run(days=4)
            delivery.wait()
            assert delivery.errors == []
            if delivery.thread is None:
                return  # the point never came (the lead ended first): nothing to check
            h.run(days=1)  # whatever the last pass left pending

            assert Event.select().where(Event.event_id == "reply-1").count() == 1
            assert [r.state for r in InboxEvent.select().where(InboxEvent.event_id == "reply-1")] == ["applied"]
            enr = h.enrollment("anna")
            if delivery.running:
                assert enr.facts.get("replied") is True
                # Stopped by the reply, or at its end already (the reply came during its last call).
                assert enr.state == "done" and enr.outcome in {"replied", "answered", "done"}
            later = Action.select().where(Action.id > (delivery.actions_before or 0),
                                          Action.action.in_(("connect", "message")))
            assert [(a.step_id, a.action) for a in later] == []  # nothing recorded after the reply
        finally:
            db.close()
