"""The pacing promises of issue 6: exact warm-up, `min_gap` across lanes, no burst after downtime,
no bunching at the window's opening, no capacity left unused while leads wait.

Each promise is checked twice: on what the engine performed, and on the audit (`runner.audit`),
which must see a broken promise when the ledger has one.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

from runner import audit, limits, pacing_audit
from runner.store import Action, Sender, db
from runner.store.rows import insert_action

from .conftest import ALICE, MONDAY, UTC, HarnessFactory, lead_row, sequence_yaml

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
    for (enrollment_id, lead_id), at in zip(rows, times):
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
