"""Invariants of the interpreter over random sequences, calendars, limits and simulated LinkedIns.

Sequences come from a small grammar (visit, connect with or without a note, message, tag, waits,
wait_for with a timeout, branches on facts, end). Every jump goes forward, so no sequence can spin
without a wait, and every generated file must load cleanly. Each example is simulated for a few days
through `runner.simulate.run_simulation` (the code path of `seqrun simulate`) and then audited:
nothing outside a window, no cap exceeded, nothing sent after a reply, no step entry performed
twice; and every lead is still running or ended with a named outcome.
"""
from __future__ import annotations

import datetime as dt
import pathlib
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.backends import BACKENDS, fresh_store_url

from runner import audit
from runner.project.config import Config, SenderConfig
from runner.project.discovery import load_sequences
from runner.simulate import SimOptions, run_simulation
from runner.store import Action, Enrollment, Event, db, open_store

from .conftest import HarnessFactory, lead_row, sequence_yaml, write_project

UTC = dt.UTC
ZONES = ["Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC"]
FACT_CONDITIONS = [
    "connected", "invite_pending", "accepted", "invited_with_note", "conversation_exists", "replied",
    "lead_messaged_first", "messages_sent > 0", "'hot' in tags", "not connected and not invite_pending",
    "days_since_last_message is not none and days_since_last_message < 3",
]
DURATIONS = ["30 minutes", "3 hours", "1 day", "2 days", "1 business day", "4 business hours", "PT90M"]
OUTCOMES = ["done_early", "not_accepted", "timed_out", "skipped", "no_reply"]
#: Mondays to Thursdays around both of Berlin's DST changes, and ordinary weeks.
STARTS = [dt.datetime(2026, m, d, h, tzinfo=UTC) for m, d, h in
          ((3, 2, 0), (3, 26, 6), (10, 22, 13), (6, 15, 21), (12, 21, 9))]


@st.composite
def targets(draw: st.DrawFn, index: int, count: int) -> str | None:
    """A forward jump from step `index`: `goto: sK` with K > index + 1, `end: OUTCOME`, or None."""
    kind = draw(st.sampled_from(["none", "none", "goto", "end"]))
    if kind == "goto" and index + 2 < count:
        return f"goto: s{draw(st.integers(index + 2, count - 1))}"
    if kind == "end":
        return f"end: {draw(st.sampled_from(OUTCOMES))}"
    return None


@st.composite
def steps(draw: st.DrawFn) -> str:
    count = draw(st.integers(2, 9))
    lines = []
    for i in range(count):
        kind = draw(st.sampled_from(["visit", "connect", "connect_note", "message", "message_pair", "tag",
                                     "wait", "wait_for", "branch", "end"]))
        then = draw(targets(i, count))
        suffix = f", {then}" if then else ""
        if kind == "visit":
            lines.append(f"  - {{id: s{i}, action: visit{suffix}}}")
        elif kind == "connect":
            lines.append(f"  - {{id: s{i}, action: connect{suffix}}}")
        elif kind == "connect_note":
            lines.append(f"  - {{id: s{i}, action: connect, note: note.j2{suffix}}}")
        elif kind == "message":
            lines.append(f"  - {{id: s{i}, action: message, template: intro.j2{suffix}}}")
        elif kind == "message_pair":
            lines.append(f"  - {{id: s{i}, action: message, template: {{with_note: thanks.j2, "
                         f"without_note: follow_up.j2}}{suffix}}}")
        elif kind == "tag":
            lines.append(f"  - {{id: s{i}, action: tag, tags: [hot]{suffix}}}")
        elif kind == "wait":
            lines.append(f"  - {{id: s{i}, wait: {draw(st.sampled_from(DURATIONS))}{suffix}}}")
        elif kind == "wait_for":
            event = draw(st.sampled_from(["accepted", "replied"]))
            timeout = draw(st.sampled_from(["2 hours", "1 day", "3 days", "2 business days"]))
            on_timeout = draw(targets(i, count))
            on = "" if on_timeout is None else (
                f", on_timeout: s{on_timeout.split()[1][1:]}" if on_timeout.startswith("goto")
                else f", on_timeout: {{{on_timeout}}}")
            lines.append(f"  - {{id: s{i}, wait_for: {event}, timeout: {timeout}{on}{suffix}}}")
        elif kind == "branch":
            cases = []
            for _ in range(draw(st.integers(1, 2))):
                target = draw(targets(i, count)) or f"end: {draw(st.sampled_from(OUTCOMES))}"
                cases.append(f"      - {{when: \"{draw(st.sampled_from(FACT_CONDITIONS))}\", {target}}}")
            default = draw(st.sampled_from(["next", "{end: no_reply}"]))
            lines.append(f"  - id: s{i}\n    branch:\n" + "\n".join(cases) + f"\n      - {{default: {default}}}")
        else:
            lines.append(f"  - {{id: s{i}, end: {draw(st.sampled_from(OUTCOMES))}}}")
    return "\n".join(lines) + "\n"


@st.composite
def calendars(draw: st.DrawFn) -> str:
    zone = draw(st.sampled_from(["lead", "lead", "sender", *ZONES]))
    days = draw(st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                         min_size=1, max_size=7, unique=True))
    first = draw(st.integers(0, 16))
    end = draw(st.integers(first + 1, min(first + 9, 24)))
    hours = [f"{first:02d}:00-{end:02d}:00"]
    if end <= 20 and draw(st.booleans()):
        later = draw(st.integers(end + 1, 22))
        hours.append(f"{later:02d}:30-{draw(st.integers(later + 1, 24)):02d}:00")
    holidays = draw(st.sampled_from([[], ["2026-03-03"], ["2026-10-26", "2026-12-24"]]))
    return (f"calendar:\n  timezone: {zone}\n  fallback: {draw(st.sampled_from(ZONES))}\n"
            f"  days: [{', '.join(days)}]\n  hours: [{', '.join(repr(h) for h in hours)}]\n"
            f"  holidays: [{', '.join(holidays)}]\n")


@st.composite
def limits(draw: st.DrawFn) -> str:
    lines = ["limits:"]
    for action in ("visit", "connect", "message", "withdraw"):
        if draw(st.booleans()):
            daily = draw(st.integers(1, 12))
            if action == "connect" and draw(st.booleans()):
                lines.append(f"  connect: {{daily: {daily}, min_gap: {draw(st.sampled_from(['5 minutes', '1 hour']))}}}")
            else:
                lines.append(f"  {action}: {daily}")
    if draw(st.booleans()):
        lines.append(f"  jitter: {draw(st.sampled_from(['1 minute', '10 minutes', '1 hour']))}")
    if draw(st.booleans()):
        lines.append(f"  warmup: {{days: {draw(st.integers(1, 10))}, start: {draw(st.sampled_from([0.1, 0.5]))}}}")
    return "\n".join(lines) + "\n" if len(lines) > 1 else ""


@st.composite
def worlds(draw: st.DrawFn) -> dict[str, Any]:
    rates = st.sampled_from([0.0, 0.0, 0.05, 0.15])  # five of them may not add up to more than 1
    median = draw(st.sampled_from([0.5, 3.0, 20.0]))
    world: dict[str, Any] = {
        "accept_rate": draw(st.sampled_from([0.0, 0.5, 1.0])),
        "accept_delay_hours": (median, median * draw(st.sampled_from([1, 4, 30]))),
        "reply_rate": draw(st.sampled_from([0.0, 0.3, 1.0])),
        "reply_delay_hours": (median, median * draw(st.sampled_from([1, 10]))),
        "connected_rate": draw(rates), "pending_rate": draw(rates), "messaged_first_rate": draw(rates),
        "recent_conversation_rate": draw(rates), "inaccessible_rate": draw(st.sampled_from([0.0, 0.1])),
    }
    if draw(st.booleans()):
        world["errors"] = {"TRANSIENT": 0.1, "STATUS_429": 0.05, "LIMIT_REACHED": 0.03, "NOT_CONNECTED": 0.02,
                           "AUTH_EXPIRED": draw(st.sampled_from([0.0, 0.01]))}
    return world


SENDERS = (
    SenderConfig(name="alice", provider="sandbox", account_id="acc-alice", timezone="Europe/Berlin",
                 limits={"connect": 8, "message": 10, "visit": 12}),
    SenderConfig(name="bob", provider="sandbox", account_id="acc-bob", timezone="America/Los_Angeles"),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@pytest.mark.parametrize("backend", BACKENDS)
@given(body=steps(), calendar=calendars(), caps=limits(), world=worlds(), seed=st.integers(0, 10_000),
       senders=st.integers(1, 2), leads=st.integers(2, 10), days=st.integers(3, 9),
       start=st.sampled_from(STARTS), poll_hours=st.sampled_from([0.5, 2, 6]))
def test_random_sequences_keep_every_promise(backend: str, body: str, calendar: str, caps: str, world: dict[str, Any], seed: int,
                                             senders: int, leads: int, days: int, start: dt.datetime,
                                             poll_hours: float) -> None:
    text = (f"version: 1\nname: prop\nfields:\n  full_name: optional\n  timezone: optional\n{calendar}{caps}"
            f"exit_when: [replied, blocked]\nsteps:\n{body}")
    with tempfile.TemporaryDirectory(prefix="seqrun-prop-") as tmp:
        root = write_project(pathlib.Path(tmp) / "project", text)
        seq = load_sequences([str(root / "sequences")])["prop"]
        config = Config(path=None, root=str(root), database=None, senders=SENDERS[:senders], sandbox=world)
        with fresh_store_url(backend, tmp, "sim.db") as url:
            open_store(url, durable=False)
            try:
                options = SimOptions(leads=leads, days=days, seed=seed, start=start,
                                     poll_every=dt.timedelta(hours=poll_hours))
                report = run_simulation(seq, config, options)
                assert report.violations == []
                check_leads()
            finally:
                db.close()


def check_leads() -> None:
    for enr in Enrollment.select():
        if enr.state in ("active", "paused"):
            assert enr.outcome is None and enr.finished_at is None
        elif enr.state == "done":
            assert enr.outcome and enr.outcome != "failed" and enr.due_at is None
        else:
            assert (enr.state, enr.outcome) == ("failed", "failed") and enr.last_error
    keys = [a.key for a in Action.select()]
    assert len(keys) == len(set(keys))
    # No lead spins: a handful of steps over a few days cannot need more outbox rows than this.
    busiest = db.execute_sql("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM action GROUP BY enrollment_id) AS per_lead").fetchone()[0]
    assert (busiest or 0) <= 60


def test_the_audit_sees_broken_promises(make_harness: HarnessFactory) -> None:
    """The property above is only as good as the audit: a doctored ledger must be reported."""
    h = make_harness(sequence_yaml("s", "  - {id: s0, action: connect}\n  - end: invited\n",
                                   limits="limits:\n  connect: 2\n"))
    h.enroll(*[lead_row(f"lead-{i}", timezone="Europe/Berlin") for i in range(3)])
    h.run(days=1)
    assert audit.violations(h.sequences, h.engine.rt) == []
    first, second = Action.select().where(Action.status == "done").order_by(Action.id)
    # The audit judges an action at `started_at`, when seqrun sent it.
    Action.update(started_at=dt.datetime(2026, 3, 2, 6, 30, tzinfo=UTC)).where(Action.id == first.id).execute()
    entry = second.key.rsplit(":", 1)[0]
    Action.create(key=f"{entry}:7", enrollment=second.enrollment_id, lead=second.lead_id, sender=second.sender_id,
                  sequence="s", step_id="s0", action="connect", status="done", planned_at=second.planned_at,
                  started_at=second.started_at, performed_at=second.performed_at)
    Event.create(event_id="r1", kind="replied", source="poll", lead=second.lead_id, occurred_at=second.planned_at,
                 received_at=second.planned_at, data={})
    Action.create(key=f"{second.enrollment_id}:late:1:0", enrollment=second.enrollment_id, lead=second.lead_id,
                  sender=second.sender_id, sequence="s", step_id="s0", action="message", status="done",
                  planned_at=second.planned_at, started_at=second.started_at + dt.timedelta(minutes=5),
                  performed_at=second.performed_at + dt.timedelta(minutes=5))

    found = audit.violations(h.sequences, h.engine.rt)
    assert found == [
        "connect for lead-0 at 2026-03-02T06:30:00+00:00 is outside the window (Europe/Berlin local Mon 07:30)",
        f"message to lead-1 at {(second.started_at + dt.timedelta(minutes=5)).isoformat()} after the lead "
        f"replied at {second.planned_at.isoformat()}",
        "sender alice: 3 connect actions in sequence s on 2026-03-02; the limit is 2",
        # The doubled action went out at the same moment: 8 h / 2 / 4 is the least spacing.
        f"sender alice: connect at {second.started_at.isoformat()} came 0 s after the one at "
        f"{second.started_at.isoformat()}; they must be at least 1 h 0 min 0 s apart",
        f"step entry {entry} was performed 2 times",
    ]
