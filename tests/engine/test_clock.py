"""A long pass judges windows and limits at the time each lead is reached, not when the pass began."""
from __future__ import annotations

import dataclasses
import datetime as dt

from runner import audit
from runner.store import Enrollment

from .conftest import ALICE, UTC, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - id: check
    branch:
      - when: connected
        end: connected
      - default: visit
  - {id: visit, action: visit}
  - end: done
"""
LATENCY = dt.timedelta(seconds=4)


def test_a_pass_that_outlasts_the_window_stops_acting_when_it_closes(make_harness: HarnessFactory) -> None:
    start = dt.datetime(2026, 3, 2, 15, 50, tzinfo=UTC)  # 16:50 in Berlin, ten minutes before closing
    h = make_harness(sequence_yaml("s", FLOW), senders=(dataclasses.replace(ALICE, account_type="sales_navigator"),),
                     start=start)
    h.enroll(*[lead_row(f"lead{i:03d}") for i in range(1000)])
    for name in ("relationship", "conversation", "visit", "find_action"):
        inner = getattr(h.provider, name)

        def slow(*args: object, _inner=inner, **kwargs: object) -> object:  # type: ignore[no-untyped-def]
            h.clock.now += LATENCY  # every call takes time, as a real API does
            return _inner(*args, **kwargs)

        setattr(h.provider, name, slow)
    # One pass over 1,000 new leads, each asking LinkedIn about the lead first: it cannot finish by 17:00.
    report = h.engine.tick(start, clock=h.clock)
    closing = dt.datetime(2026, 3, 2, 16, 0, tzinfo=UTC)
    assert h.now >= closing  # the pass ran into closing time (17:00 Berlin)
    assert report.processed > 0
    assert audit.violations(h.sequences, h.engine.rt) == []
    waiting = list(Enrollment.select().where(Enrollment.state == "active", Enrollment.step_id == "visit"))
    # Leads reached before closing got one of today's last points; the others wait for the next window.
    today = [e for e in waiting if e.due_at < closing]
    later = [e for e in waiting if e.due_at >= closing]
    assert today and later
    assert all(e.due_at >= dt.datetime(2026, 3, 3, 8, 0, tzinfo=UTC) for e in later)
    assert all(e.updated_at < closing for e in today)
