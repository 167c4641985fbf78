"""Daily caps, pacing, warm-up and business hours: checked on what the engine actually performed."""
from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections import Counter
from zoneinfo import ZoneInfo

import pytest

from runner import audit
from runner.holds import SENDER, find_target, pause, resume
from runner.leads import import_leads
from runner.project.leadsfile import read_leads
from runner.store import Action, Enrollment, Usage, open_store

from .conftest import ACCEPTING, ALICE, MONDAY, UTC, EngineHarness, HarnessFactory, lead_row, sequence_yaml

BERLIN = ZoneInfo("Europe/Berlin")

CONNECT_ONLY = """\
  - {id: connect, action: connect}
  - end: invited
"""

FULL = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: first_message, action: message, template: intro.j2}
  - wait: 1 business day
  - {id: follow_up, action: message, template: follow_up.j2}
  - end: no_reply
"""


def performed(action: str | None = None) -> list[Action]:
    query = Action.select().where(Action.status == "done").order_by(Action.performed_at)
    if action is not None:
        query = query.where(Action.action == action)
    return list(query)


def per_day(actions: list[Action], zone: ZoneInfo = BERLIN) -> dict[str, int]:
    return dict(sorted(Counter(a.performed_at.astimezone(zone).strftime("%a %m-%d") for a in actions).items(),
                       key=lambda kv: kv[0][4:]))


def leads(n: int, **fields: str) -> list[dict[str, str]]:
    return [lead_row(f"lead-{i:03d}", **fields) for i in range(n)]


def assert_clean(h: EngineHarness) -> None:
    assert audit.violations(h.sequences, h.engine.rt) == []


# --- caps -----------------------------------------------------------------------------------------

def test_the_sequence_cap_is_reached_every_day_and_never_exceeded(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits="limits:\n  connect: 5\n"))
    h.enroll(*leads(28))
    h.run(days=8)
    assert per_day(performed("connect")) == {
        "Mon 03-02": 5, "Tue 03-03": 5, "Wed 03-04": 5, "Thu 03-05": 5, "Fri 03-06": 5, "Mon 03-09": 3}
    assert [h.used("connect", f"2026-03-0{d}") for d in (2, 3, 4, 5, 6)] == [5] * 5
    assert Enrollment.select().where(Enrollment.outcome == "invited").count() == 28
    assert_clean(h)


def test_two_sequences_never_exceed_the_senders_own_cap_together(make_harness: HarnessFactory, tmp_path) -> None:
    # The sender's cap (4) binds before either sequence's (5): together they may not pass it.
    alice = dataclasses.replace(ALICE, limits={"connect": 4})
    one = sequence_yaml("one", CONNECT_ONLY, limits="limits:\n  connect: 5\n")
    two = sequence_yaml("two", CONNECT_ONLY, limits="limits:\n  connect: 5\n")
    h = make_harness({"one": one, "two": two}, senders=(alice,))
    for name in ("one", "two"):
        csv = tmp_path / f"{name}.csv"
        csv.write_text("linkedin_profile_url\n" + "".join(
            f"https://www.linkedin.com/in/{name}-{i:02d}\n" for i in range(12)), encoding="utf-8")
        import_leads(read_leads(str(csv)), h.sequences[name], h.config, now=MONDAY)
    h.run(days=3)

    done = performed("connect")
    assert per_day(done) == {"Mon 03-02": 4, "Tue 03-03": 4, "Wed 03-04": 4}
    by_sequence = Counter((a.sequence, a.performed_at.astimezone(BERLIN).day) for a in done)
    assert max(by_sequence.values()) <= 5
    assert_clean(h)


# --- pacing ---------------------------------------------------------------------------------------

def test_pacing_spreads_connects_over_the_window_and_keeps_the_min_gap(make_harness: HarnessFactory) -> None:
    limits = "limits:\n  connect: {daily: 20, min_gap: 30 minutes}\n  jitter: 10 minutes\n"
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits=limits))
    h.enroll(*leads(40))
    h.run(days=1)

    times = [a.performed_at for a in performed("connect")]
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]
    assert len(times) >= 12
    assert min(gaps) >= 30, gaps
    local = [t.astimezone(BERLIN) for t in times]
    assert all(dt.time(9) <= t.time() < dt.time(17) for t in local)
    assert local[0].time() > dt.time(9)  # not at the opening bell
    assert local[-1].time() >= dt.time(15)  # reaches into the afternoon
    assert sum(1 for t in local if t.time() < dt.time(10)) <= 2


def test_pacing_without_min_gap_follows_the_nominal_gap(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits="limits:\n  connect: 16\n"))
    h.enroll(*leads(16))
    h.run(days=1)
    times = [a.performed_at for a in performed("connect")]
    assert len(times) == 16
    nominal = 8 * 60 / 16  # minutes of window per connect
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]
    # default jitter is 20% of the gap either side
    assert all(nominal * 0.8 <= g <= nominal * 1.2 for g in gaps), gaps
    assert times[-1].astimezone(BERLIN).time() >= dt.time(15, 30)


def test_warm_up_ramps_a_new_sender_from_the_start_share_to_the_full_cap(make_harness: HarnessFactory) -> None:
    limits = "limits:\n  connect: 8\n  warmup: {days: 4, start: 0.25}\n"
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits=limits))
    h.enroll(*leads(40))
    h.run(days=7)
    # ceil(8 * (0.25 + 0.75 * n / 4)) for n = 0..3, then the full 8
    assert per_day(performed("connect")) == {
        "Mon 03-02": 2, "Tue 03-03": 4, "Wed 03-04": 5, "Thu 03-05": 7, "Fri 03-06": 8}
    assert h.sender_row().first_action_at == performed("connect")[0].performed_at
    assert_clean(h)


# --- windows --------------------------------------------------------------------------------------

def test_business_hours_follow_each_leads_zone_with_the_fallback(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FULL))
    zones = {"new-york": "America/New_York", "tokyo": "Asia/Tokyo", "nozone": "", "mars": "Mars/Olympus_Mons"}
    h.enroll(*[lead_row(name, **({"timezone": tz} if tz else {})) for name, tz in zones.items()])
    h.run(days=6)

    expected = {"new-york": "America/New_York", "tokyo": "Asia/Tokyo", "nozone": "Europe/Berlin", "mars": "Europe/Berlin"}
    for name, zone in expected.items():
        acts = [a for a in h.actions(name) if a.status == "done"]
        assert [a.action for a in acts] == ["connect", "message", "message"], name
        for a in acts:
            local = a.performed_at.astimezone(ZoneInfo(zone))
            assert local.weekday() < 5 and dt.time(9) <= local.time() < dt.time(17), (name, a.action, local)
    ny_connect = h.actions("new-york", action="connect")[0].performed_at
    assert ny_connect >= dt.datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # 09:00 in New York, not in Berlin
    tokyo_connect = h.actions("tokyo", action="connect")[0].performed_at
    assert tokyo_connect < dt.datetime(2026, 3, 2, 8, 0, tzinfo=UTC) + dt.timedelta(days=1)
    assert_clean(h)


@pytest.mark.parametrize("start", [
    dt.datetime(2026, 3, 25, 22, 0, tzinfo=UTC),   # Thursday before Berlin springs forward (29 March)
    dt.datetime(2026, 10, 21, 22, 0, tzinfo=UTC),  # Thursday before Berlin falls back (25 October)
], ids=["spring-forward", "fall-back"])
def test_a_dst_week_keeps_every_action_inside_nine_to_five_local(make_harness: HarnessFactory,
                                                                 start: dt.datetime) -> None:
    limits = "limits:\n  connect: 6\n  message: 12\n"
    h = make_harness(sequence_yaml("s", FULL, limits=limits), start=start,
                     senders=(dataclasses.replace(ALICE, timezone="UTC"),))
    h.enroll(*leads(24, timezone="Europe/Berlin"))
    h.run(days=8)

    done = performed()
    local = [a.performed_at.astimezone(BERLIN) for a in done]
    outside = [t for t in local if t.weekday() >= 5 or not dt.time(9) <= t.time() < dt.time(17)]
    assert outside == []
    offsets = {t.utcoffset() for t in local}
    assert offsets == {dt.timedelta(hours=1), dt.timedelta(hours=2)}  # both sides of the change
    monday = [a.performed_at for a in done if a.performed_at.astimezone(BERLIN).weekday() == 0]
    first_monday_open = min(monday).astimezone(BERLIN)
    assert first_monday_open.time() >= dt.time(9)
    assert len(done) > 30
    assert_clean(h)


@pytest.mark.parametrize("how", ["auth-expired", "seqrun-pause"])
def test_leads_resumed_after_a_pause_keep_their_pacing(make_harness: HarnessFactory, how: str) -> None:
    limits = "limits:\n  connect: {daily: 10, min_gap: 30 minutes}\n"
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits=limits))
    h.enroll(*leads(8, timezone="Europe/Berlin"))
    h.tick()
    assert Enrollment.select().where(Enrollment.due_at > MONDAY).count() == 8  # each sleeps for its slot
    if how == "auth-expired":
        h.sandbox.expire_auth("acc-alice")
        h.tick(MONDAY + dt.timedelta(minutes=15))
    else:
        pause(find_target(SENDER, "alice"), "lunch", h.now)
    assert {e.state for e in Enrollment.select()} == {"paused"}
    h.sandbox.restore_auth("acc-alice")

    # Resumed at 13:00 in Berlin: every slot before then has passed while the leads were paused.
    resumed_at = h.clock.now = dt.datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    resume(find_target(SENDER, "alice"), resumed_at)
    h.run(days=2)
    times = [a.performed_at for a in performed("connect")]
    assert len(times) == 8
    gaps = [(b - a).total_seconds() / 60 for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 30, gaps  # not a burst at the moment of the resume
    assert times[0] > resumed_at
    assert Usage.select().where(Usage.reserved != 0).count() == 0
    assert_clean(h)


def test_a_second_store_in_the_same_process_starts_with_empty_days(make_harness: HarnessFactory, tmp_path) -> None:
    h = make_harness(sequence_yaml("s", CONNECT_ONLY, limits="limits:\n  connect: 1\n"))
    h.enroll(*leads(4))
    h.run(days=2)
    assert per_day(performed("connect")) == {"Mon 03-02": 1, "Tue 03-03": 1}  # and two leads wait for Wed, Thu

    # Same sender id, same sequence name, a new database: its Monday is empty, whatever the first knew.
    open_store(str(tmp_path / "other.db"), durable=False)
    other = EngineHarness(h.root, start=MONDAY, sandbox={"seed": 1, **ACCEPTING}, senders=(ALICE,), knobs={})
    assert other.sender_id() == h.sender_id()
    other.enroll(lead_row("zed"))
    other.run(days=1)
    assert per_day(performed("connect")) == {"Mon 03-02": 1}
