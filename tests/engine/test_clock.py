"""A long pass judges windows and limits at the time each lead is reached, not when the pass began."""
from __future__ import annotations

import dataclasses
import datetime as dt

from runner import audit
from runner.store import Enrollment

from .conftest import ALICE, UTC, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: visit, action: visit}
  - end: done
"""
LATENCY = dt.timedelta(seconds=4)


def test_a_pass_that_outlasts_the_window_stops_acting_when_it_closes(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW), senders=(dataclasses.replace(ALICE, account_type="sales_navigator"),))
    h.enroll(*[lead_row(f"lead{i:03d}") for i in range(1000)])
    for name in ("relationship", "conversation", "visit", "find_action"):
        inner = getattr(h.provider, name)

        def slow(*args: object, _inner=inner, **kwargs: object) -> object:  # type: ignore[no-untyped-def]
            h.clock.now += LATENCY  # every call takes time, as a real API does
            return _inner(*args, **kwargs)

        setattr(h.provider, name, slow)
    h.run(until=dt.datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    # The runner was down for three hours; one pass at 16:55 Berlin has a backlog it cannot finish by 17:00.
    h.clock.now = start = dt.datetime(2026, 3, 2, 15, 55, tzinfo=UTC)
    report = h.engine.tick(start, clock=h.clock)
    assert h.now >= dt.datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # the pass ran into closing time (17:00 Berlin)
    assert report.processed > 0
    assert audit.violations(h.sequences, h.engine.rt) == []
    waiting = Enrollment.select().where(Enrollment.state == "active", Enrollment.step_id == "visit").count()
    assert waiting > 0  # the rest wait for the next window instead of being visited after hours
