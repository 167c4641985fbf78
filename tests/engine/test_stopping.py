"""A run asked to stop (SIGINT/SIGTERM set `Runtime.stop_requested`), and a run that is gone."""
from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

import peewee
import pytest

from runner.engine import leases
from runner.store import Enrollment

from .conftest import HarnessFactory, lead_row, sequence_yaml

POSTS = """\
  - {id: first, action: notify, url: "https://crm.example.com/first"}
  - {id: second, action: notify, url: "https://crm.example.com/second"}
  - end: posted
"""


def test_a_stop_asked_for_during_a_call_commits_that_call_and_makes_no_other(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", POSTS))
    h.enroll(lead_row("anna"), lead_row("ben"), lead_row("chloe"))
    stop = [False]
    posted: list[str] = []

    def notifier(url: str, headers: object, payload: object) -> None:
        posted.append(url)
        stop[0] = True  # Ctrl-C while the POST is in flight

    h.engine.rt.notifier = notifier
    h.engine.rt.stop_requested = lambda: stop[0]
    report = h.tick()
    assert (report.stopped, report.processed) == (True, 0)
    assert posted == ["https://crm.example.com/first"]
    by_lead = {e.lead.key: e for e in Enrollment.select()}
    first = next(e for e in by_lead.values() if e.step_id == "second")
    assert [(a.step_id, a.status) for a in h.actions(first.lead.key)] == [("first", "done")]
    # Every lead is handed back, due at once, owned by nobody: nothing waits for a lease to run out.
    assert {(e.state, e.lease_owner, e.due_at) for e in by_lead.values()} == {("active", None, h.now)}

    stop[0] = False
    h.engine.rt.notifier = lambda url, headers, payload: posted.append(url)
    assert h.tick().processed == 3
    assert len(posted) == 6


def test_a_ctrl_c_that_surfaces_as_a_database_error_still_stops_the_pass(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: connect, action: connect}\n  - end: invited\n"))
    h.enroll(lead_row("anna"), lead_row("ben"))
    # What a KeyboardInterrupt during a commit looks like once the rollback that follows fails too.
    error = peewee.OperationalError("cannot rollback - no transaction is active")
    error.__context__ = KeyboardInterrupt()
    h.provider.fail("relationship", error)
    with pytest.raises(KeyboardInterrupt):
        h.tick()
    # The pass did not go on to ben.
    assert [c.method for c in h.provider.calls if c.method != "poll_events"] == ["relationship"]
    assert {e.last_error for e in Enrollment.select()} == {None}  # and it is nobody's failure


def test_a_damaged_database_file_stops_the_pass_and_is_no_leads_failure(make_harness: HarnessFactory) -> None:
    import sqlite3

    h = make_harness(sequence_yaml("s", "  - {id: connect, action: connect}\n  - end: invited\n"))
    h.enroll(lead_row("anna"), lead_row("ben"))
    # What SQLite raises when a page the step writes is damaged (peewee wraps it).
    cause = sqlite3.DatabaseError("database disk image is malformed")
    cause.sqlite_errorname = "SQLITE_CORRUPT"  # type: ignore[attr-defined]
    error = peewee.DatabaseError(cause)
    error.__context__ = cause
    h.provider.fail("relationship", error)
    with pytest.raises(peewee.DatabaseError):
        h.tick()
    assert [c.method for c in h.provider.calls if c.method != "poll_events"] == ["relationship"]
    assert {(e.attempt, e.last_error) for e in Enrollment.select()} == {(0, None)}


def test_take_back_leases_frees_the_leads_of_runners_that_are_gone_only(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", POSTS))
    h.enroll(*(lead_row(name) for name in ("anna", "ben", "chloe", "dana", "emil")))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = leases.this_host()
    owners = {
        "anna": f"{host}:{dead.stdout.strip()}:0d0d0d0d",  # a run of this host whose process has ended
        "ben": f"{host}:{os.getpid()}:1e1e1e1e",  # an earlier run inside this very process
        "chloe": f"{host}:{os.getppid()}:2f2f2f2f",  # a process that is still running
        "dana": f"elsewhere:{os.getpid()}:3a3a3a3a",  # another host: nothing here can tell
        "emil": "a1b2c3d4e5f6",  # an older seqrun's identity
    }
    lease_end = h.now + dt.timedelta(minutes=10)
    for name, owner in owners.items():
        Enrollment.update(lease_owner=owner, due_at=lease_end).where(Enrollment.id == h.enrollment(name).id).execute()
    assert h.engine.take_back_leases(h.now) == {owners["anna"]: 1, owners["ben"]: 1, owners["emil"]: 1}
    assert {name: (h.enrollment(name).lease_owner, h.enrollment(name).due_at) for name in owners} == {
        "anna": (None, h.now), "ben": (None, h.now), "chloe": (owners["chloe"], lease_end),
        "dana": (owners["dana"], lease_end), "emil": (None, h.now)}


def test_a_stop_asked_for_during_a_check_records_and_sends_nothing_more(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: visit, action: visit}\n  - {id: hello, action: message, "
                                        "template: intro.j2, inmail: true, subject: Hello}\n  - end: sent\n"))
    h.enroll(lead_row("anna"))
    h.run(days=2, stop=lambda: h.enrollment("anna").step_id == "hello")
    stop = [False]
    inner = h.provider.conversation

    def conversation(account: object, lead: object) -> object:
        stop[0] = True  # SIGTERM while seqrun reads the thread before sending
        return inner(account, lead)

    h.provider.conversation = conversation  # type: ignore[method-assign]
    h.engine.rt.stop_requested = lambda: stop[0]
    h.run(days=2, stop=lambda: stop[0])
    assert h.provider.called("send_message") == []
    assert [(a.step_id, a.status) for a in h.actions("anna")] == [("visit", "done")]
    enr = h.enrollment("anna")
    assert (enr.state, enr.step_id, enr.lease_owner) == ("active", "hello", None)
