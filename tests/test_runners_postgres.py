"""Three `seqrun run` processes started at once on one database (issue 8, section 5): on Postgres
they share the due work; on SQLite they take turns at the write lock. Either way nothing is claimed
twice, no cap or spacing is exceeded, no idempotency key is used twice, and every lead moves on.

The leads are thank-you messages right after an acceptance (the fast lane, which acts at once
instead of at a paced slot later in the day): the sandbox's senders may each send one now, and
the spacing that a daily limit of 3 gives (one message every 2 hours) makes each later lead of the
same sender book a later moment of the day, or wake on the next day once the day has none left (so
how many book depends on the hour the test runs; the test works that out from when each sender's
message was charged). Three runners race for each sender's one message. The sandbox
takes real time per call (`sleep_ms`), so that the runners' calls overlap. Real processes; the
test waits for them with a deadline and never sleeps.
"""
from __future__ import annotations

import datetime as dt
import itertools
import os
import pathlib
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import pytest
from tests.backends import fresh_store_url

from runner import audit
from runner.project.discovery import build_runtime, open_project, project_sequences, real_provider_for, sync_senders
from runner.store import Action, Enrollment, db, open_store
from runner.store.enrollments import set_facts
from runner.store.sender_calls import calls_in_flight

DEADLINE = 120.0  # seconds a run may take before the test fails; nothing sleeps
SENDERS = 5
LEADS_PER_SENDER = 4
RUNNERS = 3
SPACING = dt.timedelta(hours=2)  # a quarter of the nominal gap: 24 hours open / a daily limit of 3 / 4

SEQRUN_YAML = "version: 1\nsenders:\n" + "".join(
    f"  - {{name: s{i}, provider: sandbox, account_id: acc-s{i}}}\n" for i in range(1, SENDERS + 1)) + """\
sandbox:
  seed: 3
  connected_rate: 1.0
  pending_rate: 0.0
  messaged_first_rate: 0.0
  recent_conversation_rate: 0.0
  inaccessible_rate: 0.0
  reply_rate: 0.0
  sleep_ms: 50
  state_path: linkedin.sandbox
"""
SEQUENCE = """\
version: 1
name: thanks
fields: {full_name: optional}
calendar: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: ["00:00-24:00"]}
limits: {message: 3}
exit_when: [replied]
steps:
  - {id: thanks, action: message, template: thanks.j2}
  - wait: 30 days
  - end: thanked
"""
TEMPLATE = "Thanks for accepting, {{ lead.full_name | first_name | fallback('there') }}!\n"


@pytest.fixture
def url(backend: str, tmp_path: pathlib.Path) -> Iterator[str]:
    with fresh_store_url(backend, tmp_path, "seqrun.db") as store:
        yield store


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    (tmp_path / "sequences" / "thanks.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "templates" / "thanks.j2").write_text(TEMPLATE, encoding="utf-8")
    rows = [f"https://www.linkedin.com/in/lead-{i:03d},Lead {i}" for i in range(SENDERS * LEADS_PER_SENDER)]
    (tmp_path / "leads.csv").write_text("linkedin_profile_url,full_name\n" + "\n".join(rows) + "\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    return tmp_path


def seqrun(root: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SEQRUN_DB"}
    return subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=DEADLINE)
    return proc.returncode, out, err


def accepted_a_moment_ago(url: str) -> None:
    """Every lead's invite was just accepted (what the poll or a webhook would have told the run)."""
    open_store(url)
    try:
        now = dt.datetime.now(dt.UTC).isoformat()
        with db.atomic():
            for enrollment in Enrollment.select():
                set_facts(enrollment.id, {"connected": True, "accepted": True, "accepted_at": now,
                                          "invite_pending": False})
    finally:
        db.close()


def test_three_runs_started_at_once_do_the_due_work_once(project: pathlib.Path, url: str) -> None:
    code, out, err = finish(seqrun(project, "leads", "import", "leads.csv", "--sequence", "thanks", "--db", url))
    assert (code, err) == (0, ""), err
    assert out.startswith(f"sequence thanks: imported {SENDERS * LEADS_PER_SENDER}, updated 0, skipped 0\n")
    accepted_a_moment_ago(url)

    runs = [seqrun(project, "run", "--once", "--db", url) for _ in range(RUNNERS)]
    results = [finish(run) for run in runs]
    assert [(code, err) for code, _, err in results] == [(0, "")] * RUNNERS, results
    counts = [re.fullmatch(r"(\d+) lead\(s\) processed; (\d+) step\(s\); 0 event\(s\)\n", out) for _, out, _ in results]
    assert all(counts), results
    processed = [int(m.group(1)) for m in counts if m]
    # Every lead once: no lead claimed twice. (How the three shared it depends on when each process
    # got going; that a working runner leaves the backlog to others is
    # tests/engine/test_sender_calls.py's test_a_second_runner_shares_the_backlog_of_a_working_one.)
    assert sum(processed) == SENDERS * LEADS_PER_SENDER

    open_store(url)
    try:
        config, _, _ = open_project()
        sequences = project_sequences(config)
        now = dt.datetime.now(dt.UTC)
        runtime = build_runtime(config, sequences, sync_senders(config, now), provider_for=real_provider_for(config),
                                notifier=lambda *args: None)
        messages = list(Action.select().order_by(Action.id))
        enrollments = list(Enrollment.select())
        # One thank-you per sender went out now; the spacing sent the sender's other leads later.
        assert sorted(Counter(a.sender_id for a in messages).values()) == [1] * SENDERS
        assert {(a.action, a.status, a.charged) for a in messages} == {("message", "done", True)}
        assert len({a.key for a in messages}) == len(messages)  # no idempotency key twice
        assert len({a.enrollment_id for a in messages}) == len(messages)  # no lead messaged twice
        assert audit.violations(sequences, runtime) == []  # caps, spacing, windows, steps performed twice
        sent = {a.enrollment_id for a in messages}
        sent_at = {a.sender_id: a.planned_at for a in messages}  # when its point was charged
        booked: dict[int, list[dt.datetime]] = {s: [] for s in sent_at}
        for enrollment in enrollments:  # every lead moved on: thanked, or waiting for a later moment
            assert enrollment.state == "active" and enrollment.lease_owner is None
            if enrollment.id in sent:
                assert enrollment.step_id != "thanks"
                continue
            assert enrollment.step_id == "thanks"
            today = sent_at[enrollment.sender_id].date()  # the calendar and the senders are in UTC
            slot = enrollment.facts.get("slot")
            if slot is not None:  # a later moment of today's window, booked
                assert (slot["action"], slot["day"], slot["at"]) == ("message", today.isoformat(),
                                                                     enrollment.due_at.isoformat())
                assert enrollment.due_at > now + dt.timedelta(minutes=30)
                booked[enrollment.sender_id].append(enrollment.due_at)
            else:  # today's window had no moment left: the fast lane wakes at a random moment of the
                # next day (which may come sooner than 30 minutes when the test runs just before midnight)
                assert enrollment.due_at > now and enrollment.due_at.date() > today
        # How many book today depends on the hour the test runs (runner.engine.limits.plan_first): each
        # later lead takes the moment the spacing frees after the one before, while that is still today.
        for s, t in sent_at.items():
            fit = sum((t + k * SPACING).date() == t.date() for k in range(1, LEADS_PER_SENDER))
            points = sorted([t, *booked[s]])
            assert len(booked[s]) == fit, (t, booked[s])
            assert all(b - a >= SPACING for a, b in itertools.pairwise(points)), points
        repeated = db.execute_sql("SELECT enrollment_id, step_id, COUNT(*) FROM transition "
                                  "GROUP BY enrollment_id, step_id HAVING COUNT(*) > 1").fetchall()
        assert repeated == []
        assert calls_in_flight() == []
        assert db.execute_sql("SELECT state, COUNT(*) FROM runner GROUP BY state").fetchall() == [("stopped", RUNNERS)]
    finally:
        db.close()
