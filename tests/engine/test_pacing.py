"""The pacing promises of issue 6: exact warm-up, `min_gap` across lanes, no burst after downtime,
no bunching at the window's opening, no capacity left unused while leads wait.

Each promise is checked twice: on what the engine performed, and on the audit (`runner.audit`),
which must see a broken promise when the ledger has one.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections import Counter
from zoneinfo import ZoneInfo

from runner import audit
from runner.engine import limits
from runner.language.model import Duration, Limit
from runner.leads import block_profiles
from runner.store import Action, Enrollment, Sender, db
from runner.store.rows import insert_action

from .conftest import MONDAY, UTC, HarnessFactory, lead_row, sequence_yaml

BERLIN = ZoneInfo("Europe/Berlin")

EVERY_DAY = """\
calendar:
  timezone: lead
  fallback: Europe/Berlin
  days: [mon, tue, wed, thu, fri, sat, sun]
  hours: ["09:00-17:00"]
"""

CONNECT_ONLY = """\
  - {id: connect, action: connect}
  - end: invited
"""


def performed(action: str | None = None) -> list[Action]:
    query = Action.select().where(Action.status == "done").order_by(Action.started_at)
    if action is not None:
        query = query.where(Action.action == action)
    return list(query)


def leads(n: int, prefix: str = "lead", **fields: str) -> list[dict[str, str]]:
    return [lead_row(f"{prefix}-{i:03d}", **fields) for i in range(n)]


# --- 3. warm-up in exact arithmetic ---------------------------------------------------------------

WARMUP_20 = "limits:\n  connect: 20\n  warmup: {days: 14, start: 0.2}\n"


def test_day_seven_of_a_fourteen_day_ramp_from_0_2_allows_exactly_three_fifths_of_the_cap(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, calendar=EVERY_DAY, limits=WARMUP_20))
    caps = dataclasses.replace(h.engine.rt.senders[h.sender_id()].caps, first_action_at=MONDAY)
    day = MONDAY.date()
    # 0.2 + 0.8 * 7/14 is 0.6000000000000001 in binary floating point: 20 * that rounds up to 13.
    assert limits.caps_for(h.seq, caps, "connect", day + dt.timedelta(days=7)) == (12, 15)
    assert [limits.caps_for(h.seq, caps, "connect", day + dt.timedelta(days=n))[0] for n in range(15)] == [
        4, 6, 7, 8, 9, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20]


def test_kept_caps_and_spacing_follow_the_sequence_the_sender_and_the_day(make_harness: HarnessFactory) -> None:
    # `caps_for` and `spacing_seconds` keep their answers (issue 6): by what they depend on, never
    # by a name that another sequence or sender could share.
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, calendar=EVERY_DAY, limits=WARMUP_20))
    fresh = dataclasses.replace(h.engine.rt.senders[h.sender_id()].caps, first_action_at=None)
    caps = dataclasses.replace(fresh, first_action_at=MONDAY)
    day = MONDAY.date() + dt.timedelta(days=7)
    assert limits.caps_for(h.seq, caps, "connect", day) == (12, 15)
    assert limits.caps_for(h.seq, fresh, "connect", day) == (4, 5)  # not acted yet: starts on `day`
    assert limits.caps_for(h.seq, fresh, "connect", day, MONDAY.date()) == (12, 15)
    assert limits.caps_for(h.seq, caps, "connect", day) == (12, 15)
    assert limits.spacing_seconds(h.seq, caps, "connect") == 8 * 3600 / 20 / 4
    tighter = dataclasses.replace(h.seq, limits=dataclasses.replace(
        h.seq.limits, per_action={"connect": Limit(daily=10, min_gap=Duration(text="1 hour", seconds=3600))}))
    assert limits.caps_for(tighter, caps, "connect", day) == (6, 15)
    assert limits.spacing_seconds(tighter, caps, "connect") == 3600
    smaller = dataclasses.replace(caps, caps={**caps.caps, "connect": 8})
    assert limits.caps_for(h.seq, smaller, "connect", day) == (5, 5)
    assert limits.spacing_seconds(h.seq, smaller, "connect") == 8 * 3600 / 8 / 4
    assert limits.spacing_seconds(h.seq, caps, "connect") == 8 * 3600 / 20 / 4


def test_a_ramping_sender_sends_exactly_the_ramped_cap_each_day(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, calendar=EVERY_DAY, limits=WARMUP_20))
    h.enroll(*leads(80))
    h.run(days=8)
    per_day = Counter(a.started_at.astimezone(BERLIN).date().isoformat() for a in performed("connect"))
    assert [per_day[(MONDAY.date() + dt.timedelta(days=n)).isoformat()] for n in range(8)] == [
        4, 6, 7, 8, 9, 10, 11, 12]
    assert audit.violations(h.sequences, h.engine.rt) == []


def ledger(h, action: str, times: list[dt.datetime], sequence: str = "s") -> None:  # type: ignore[no-untyped-def]
    """Done actions in the store, one per enrolled lead not used yet, as if the engine had performed them."""
    used = db.execute_sql("SELECT COUNT(*) FROM action").fetchone()[0]
    rows = db.execute_sql("SELECT id, lead_id FROM enrollment ORDER BY id").fetchall()[used:]
    assert len(rows) >= len(times), "enroll more leads"
    for (enrollment_id, lead_id), at in zip(rows, times, strict=False):
        insert_action(key=f"{enrollment_id}:connect:1:0", enrollment=enrollment_id, lead=lead_id,
                      sender=h.sender_id(), sequence=sequence, step_id="connect", action=action, status="done",
                      charged=True, planned_at=at, started_at=at, performed_at=at)


def test_the_audit_sees_one_action_too_many_on_a_warm_up_day(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, calendar=EVERY_DAY, limits=WARMUP_20))
    Sender.update(first_action_at=MONDAY + dt.timedelta(hours=2)).where(Sender.id == h.sender_id()).execute()
    day7 = dt.datetime(2026, 3, 9, 8, 0, tzinfo=UTC)  # 09:00 in Berlin, a week after the first action
    h.enroll(*leads(13))
    ledger(h, "connect", [day7 + dt.timedelta(minutes=30 * i) for i in range(12)])
    assert audit.violations(h.sequences, h.engine.rt) == []
    ledger(h, "connect", [day7 + dt.timedelta(minutes=30 * 12)])
    assert audit.violations(h.sequences, h.engine.rt) == [
        "sender alice: 13 connect actions in sequence s on 2026-03-09; the limit is 12"]


# --- 1. min_gap holds between any two actions of a kind, whichever lane ---------------------------

HELLO = """\
  - id: start
    branch:
      - when: connected
        goto: hello
      - default: next
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: hello, action: message, template: intro.j2}
  - end: messaged
"""


def gaps(times: list[dt.datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


def test_min_gap_holds_between_the_fast_lane_and_the_queue(make_harness: HarnessFactory) -> None:
    # Half the leads are connected already (their message queues); the others accept an invite two
    # hours after it went out, and their first message takes the fast lane ahead of the queue.
    limits_yaml = "limits:\n  connect: 40\n  message: {daily: 40, min_gap: 20 minutes}\n"
    h = make_harness(sequence_yaml("s", HELLO, limits=limits_yaml), sandbox={"connected_rate": 0.5})
    h.enroll(*leads(60, timezone="Europe/Berlin"))
    h.run(days=3)
    messages = performed("message")
    lanes = Counter("fast" if h.enrollment(a.lead.key).facts.get("accepted_at") else "queue" for a in messages)
    assert lanes["fast"] > 5 and lanes["queue"] > 5
    assert min(gaps([a.started_at for a in messages])) >= 20 * 60
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_the_audit_sees_two_messages_closer_than_min_gap(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", HELLO, limits="limits:\n  message: {daily: 40, min_gap: 20 minutes}\n"))
    h.enroll(*leads(2))
    first = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    ledger(h, "message", [first, first + dt.timedelta(minutes=1, seconds=38)])
    assert audit.violations(h.sequences, h.engine.rt) == [
        "sender alice: message at 2026-03-02T10:01:38+00:00 came 1 min 38 s after the one at "
        "2026-03-02T10:00:00+00:00; they must be at least 20 min 0 s apart"]


# --- 5. no burst after downtime ---------------------------------------------------------------------

VISIT_ONLY = """\
  - {id: visit, action: visit}
  - end: visited
"""


def test_overdue_slots_after_downtime_are_paced_again_over_what_remains_of_the_window(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", VISIT_ONLY, limits="limits:\n  visit: 60\n"))
    h.enroll(*leads(200, timezone="Europe/Berlin"))
    h.run(until=dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # 10:00 in Berlin; then the process dies
    before = len(performed("visit"))
    assert before == 8  # one every 8 minutes since 09:00

    back = dt.datetime(2026, 3, 2, 13, 0, tzinfo=UTC)  # 14:00 in Berlin: four hours of slots missed
    h.tick(back)  # `seqrun run --once`
    assert len(performed("visit")) - before <= 1  # not the 30 visits whose slots passed

    h.run(until=dt.datetime(2026, 3, 2, 17, 0, tzinfo=UTC))
    monday = [a.started_at for a in performed("visit")]
    after = [t for t in monday if t >= back]
    floor = 8 * 3600 / 60 / 4  # a quarter of the nominal gap
    assert min(gaps(monday)) >= floor
    # Two slots were missed by less than 15 minutes and go out at the spacing floor; the others
    # share what is left of the day's points (three hours of 60 a day), and the rest moves to Tuesday.
    assert len(after) == 2 + 22
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_the_audit_sees_a_burst(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", VISIT_ONLY, limits="limits:\n  visit: 60\n"))
    h.enroll(*leads(3))
    at = dt.datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
    ledger(h, "visit", [at, at + dt.timedelta(seconds=2), at + dt.timedelta(seconds=4)])
    assert audit.violations(h.sequences, h.engine.rt) == [
        "sender alice: visit at 2026-03-02T13:00:02+00:00 came 2 s after the one at 2026-03-02T13:00:00+00:00; "
        "they must be at least 2 min 0 s apart",
        "sender alice: visit at 2026-03-02T13:00:04+00:00 came 2 s after the one at 2026-03-02T13:00:02+00:00; "
        "they must be at least 2 min 0 s apart"]


# --- 6. spread over the window in the lead's zone, not bunched at the opening ----------------------

ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Los_Angeles", "Asia/Singapore")

CONNECT_THEN_MESSAGE = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: hello, action: message, template: intro.j2}
  - end: messaged
"""


def first_tenth(actions: list[Action]) -> float:
    """The share of `actions` in the first tenth of their day's 09:00-17:00 window, in the lead's zone."""
    early = 0
    for a in actions:
        local = a.started_at.astimezone(ZoneInfo(a.lead.timezone))
        assert dt.time(9) <= local.time() < dt.time(17)
        early += local.time() < dt.time(9, 48)
    return early / len(actions)


def test_actions_are_spread_over_each_leads_window(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_THEN_MESSAGE, limits="limits:\n  connect: 20\n  message: 40\n"),
                     sandbox={"accept_delay_hours": (1, 30)})
    h.enroll(*[lead_row(f"lead-{i:03d}", timezone=ZONES[i % len(ZONES)]) for i in range(200)])
    h.run(days=7)
    connects, messages = performed("connect"), performed("message")
    assert len(connects) == 108 and len(messages) > 60  # 20 a weekday, and Friday afternoon in Los Angeles
    assert first_tenth(connects) <= 0.13
    assert first_tenth(messages) <= 0.13
    for kind in (connects, messages):
        assert len({a.started_at for a in kind}) == len(kind)  # never two at the same instant
    assert audit.violations(h.sequences, h.engine.rt) == []


# --- 7. no capacity left unused while leads wait -------------------------------------------------------

def test_every_weekday_uses_the_whole_cap_while_leads_wait(make_harness: HarnessFactory) -> None:
    # Leads in five zones, a third of them already connected or invited (skipped when reached: their
    # booked slot is given back) and one in Los Angeles, whose window runs past Berlin's.
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits="limits:\n  connect: 20\n"),
                     sandbox={"connected_rate": 0.2, "pending_rate": 0.15})
    h.enroll(*[lead_row(f"lead-{i:03d}", timezone=ZONES[i % len(ZONES)]) for i in range(200)])
    h.run(days=5)
    per_day = Counter(a.started_at.astimezone(BERLIN).date().isoformat() for a in performed("connect"))
    assert [per_day[f"2026-03-0{d}"] for d in range(2, 7)] == [20, 20, 20, 20, 20]
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_capacity_a_booked_lead_gives_back_goes_to_the_next_lead_in_line(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits="limits:\n  connect: 5\n"))
    h.enroll(*leads(12, timezone="Europe/Berlin"))
    h.tick()  # 08:00 in Berlin: five leads booked for Monday, five for Tuesday, two for Wednesday
    booked = {e.lead.key: e.facts["slot"]["day"] for e in Enrollment.select()}
    assert Counter(booked.values()) == {"2026-03-02": 5, "2026-03-03": 5, "2026-03-04": 2}
    # Two of Monday's leads are blocked: they give their slots back when they wake.
    monday = sorted(k for k, day in booked.items() if day == "2026-03-02")[:2]
    block_profiles([(key, f"https://www.linkedin.com/in/{key}") for key in monday], "asked us to stop", h.now)
    h.run(until=dt.datetime(2026, 3, 2, 23, 0, tzinfo=UTC))
    assert {k: h.enrollment(k).outcome for k in monday} == {k: "blocked" for k in monday}
    assert h.used("connect", "2026-03-02") == 5  # two of Tuesday's leads moved into the freed capacity
    assert audit.violations(h.sequences, h.engine.rt) == []


def test_a_days_draws_with_the_head_hashed_once_are_those_of_unit() -> None:
    from runner.engine import pacing_grid

    for head in (("Europe/Berlin", dt.date(2026, 3, 29)), ("America/New_York", dt.date(2026, 11, 1)), ("UTC",)):
        draw = pacing_grid.unit_draws(*head)
        assert [draw(i) for i in (0, 1, 9, 10, 59, 300)] == [pacing_grid.unit(*head, i) for i in (0, 1, 9, 10, 59, 300)]
    assert pacing_grid.unit("UTC", 7) != pacing_grid.unit("UTC", 8)
