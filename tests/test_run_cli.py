"""`seqrun run --once` and `--dry-run` on a project in tmp_path, with the clock fixed by the test."""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import pathlib
import sqlite3
from collections.abc import Callable, Iterator

import pytest

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.sandbox import SandboxProvider
from runner.store import Action, Enrollment, db, open_store

UTC = dt.UTC
#: Tuesday 3 March 2026, 10:00 UTC: 11:00 in Berlin, 05:00 in New York.
NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=UTC)

SEQRUN_YAML = """\
version: 1
database: seqrun.db
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice, timezone: Europe/Berlin, full_name: Alice Example}
sandbox:
  seed: 3
  accept_rate: 1.0
  accept_delay_hours: [2, 2]
  reply_rate: 0.0
  connected_rate: 0.0
  pending_rate: 0.0
  messaged_first_rate: 0.0
  recent_conversation_rate: 0.0
  inaccessible_rate: 0.0
"""
SEQUENCE = """\
version: 1
name: intro
fields:
  full_name: required
  timezone: optional
calendar:
  timezone: lead
  fallback: Europe/Berlin
  hours: ["09:00-17:00"]
exit_when: [replied, blocked]
steps:
  - {id: connect, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: thanks, action: message, template: thanks.j2}
  - end: messaged
"""
LEADS = """\
linkedin_profile_url,full_name,timezone
https://www.linkedin.com/in/anna-meyer,Anna Meyer,Europe/Berlin
https://www.linkedin.com/in/ben-okafor,"=HYPERLINK(""http://evil.example"")",America/New_York
https://www.linkedin.com/in/chloe-dubois,Chloé Dubois,
"""


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


def write_project(root: pathlib.Path) -> None:
    (root / "sequences").mkdir()
    (root / "templates").mkdir()
    (root / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    (root / "sequences" / "intro.yaml").write_text(SEQUENCE, encoding="utf-8")
    (root / "templates" / "note.j2").write_text("{{ lead.full_name }}, let's connect.\n", encoding="utf-8")
    (root / "templates" / "thanks.j2").write_text("Thanks, {{ lead.full_name | first_name }}!\n", encoding="utf-8")
    (root / "leads.csv").write_text(LEADS, encoding="utf-8")


def start_project(root: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """A project with three leads imported (through the CLI) at NOW; every clock the CLI reads is the
    returned one, the sandbox's included."""
    write_project(root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    clock = Clock(NOW)
    for module in ("run", "leads", "senders"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    monkeypatch.setitem(PROVIDERS, "sandbox", lambda **options: SandboxProvider(clock=clock, **options))
    assert main(["leads", "import", "leads.csv", "--sequence", "intro"]) == 0
    return clock


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run `seqrun ARGS`: (exit code, stdout, stderr)."""
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def clock(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    clock = start_project(tmp_path, monkeypatch)
    yield clock
    if not db.is_closed():
        db.close()


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    capsys.readouterr()
    return lambda *args: invoke(capsys, *args)


def dump(path: pathlib.Path) -> list[str]:
    """Everything in the database, as SQL (read through its own connection, WAL included)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        return list(connection.iterdump())


def enrollments(root: pathlib.Path) -> dict[str, Enrollment]:
    open_store(str(root / "seqrun.db"))
    return {e.lead.key: e for e in Enrollment.select()}


def test_run_once_paces_the_invites_then_sends_each_at_its_slot(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    assert run("run", "--once") == (0, "3 lead(s) processed; 3 step(s); 0 event(s)\n", "")
    waiting = enrollments(tmp_path)
    assert Action.select().count() == 0  # slots are reserved across the window, none is now
    assert {e.step_id for e in waiting.values()} == {"connect"}
    assert all(e.due_at > NOW for e in waiting.values())
    # Ben is in New York: his slot cannot open before 09:00 there (14:00 UTC).
    assert waiting["ben-okafor"].due_at >= dt.datetime(2026, 3, 3, 14, 0, tzinfo=UTC)

    slots = sorted((e.due_at, k) for k, e in waiting.items())
    assert [k for _, k in slots] == ["chloe-dubois", "anna-meyer", "ben-okafor"]
    db.close()

    # Each invite goes out at its own slot, one run each, never all at once. Chloe's acceptance two
    # hours later is seen at Anna's slot, while Berlin is still open: her thank-you takes the fast
    # lane and goes out at once; Anna's acceptance is seen at Ben's slot, after Berlin closed.
    outputs = []
    for at, _ in slots:
        clock.now = at
        code, out, _ = run("run", "--once")
        outputs.append((code, out))
    assert outputs == [(0, "1 lead(s) processed; 2 step(s); 0 event(s)\n"),
                       (0, "2 lead(s) processed; 5 step(s); 1 event(s); ended: messaged 1\n"),
                       (0, "2 lead(s) processed; 4 step(s); 1 event(s)\n")]
    open_store(str(tmp_path / "seqrun.db"))
    acts = {(a.lead.key, a.action): a for a in Action.select()}
    assert {k: (a.status, a.performed_at) for k, a in acts.items()} == {
        **{(key, "connect"): ("done", at) for at, key in slots},
        ("chloe-dubois", "message"): ("done", slots[1][0])}
    assert acts[("anna-meyer", "connect")].content == "Anna Meyer, let's connect."
    assert (tmp_path / "seqrun.db.sandbox").is_file()  # the simulated LinkedIn outlives the process
    db.close()

    # Two hours after the last invite the sandbox reports Ben's acceptance, after 17:00 in New York.
    # A thank-you for an acceptance seen outside the window goes at a random moment of the lead's
    # next open day, not at the opening.
    clock.now = slots[-1][0] + dt.timedelta(hours=2)
    assert run("run", "--once") == (0, "1 lead(s) processed; 2 step(s); 1 event(s)\n", "")
    after = enrollments(tmp_path)
    assert {k: (e.state, e.step_id) for k, e in after.items()} == {
        "anna-meyer": ("active", "thanks"), "ben-okafor": ("active", "thanks"), "chloe-dubois": ("done", "thanks+1")}
    berlin_opening = dt.datetime(2026, 3, 4, 8, 0, tzinfo=UTC)  # Wednesday 09:00 in Berlin
    new_york_opening = dt.datetime(2026, 3, 4, 14, 0, tzinfo=UTC)  # Wednesday 09:00 in New York
    assert berlin_opening + dt.timedelta(hours=1) < after["anna-meyer"].due_at < berlin_opening + dt.timedelta(hours=8)
    assert new_york_opening + dt.timedelta(hours=1) < after["ben-okafor"].due_at < new_york_opening + dt.timedelta(hours=8)


def test_dry_run_prints_what_is_due_and_changes_nothing(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    database = tmp_path / "seqrun.db"
    before = dump(database)
    assert run("run", "--once", "--dry-run") == (0, (
        "later    connect  https://www.linkedin.com/in/chloe-dubois  at 2026-03-03 12:57 UTC "
        "(paced inside the window and the daily limit)\n"
        "later    connect  https://www.linkedin.com/in/anna-meyer  at 2026-03-03 15:49 UTC "
        "(paced inside the window and the daily limit)\n"
        "later    connect  https://www.linkedin.com/in/ben-okafor  at 2026-03-03 20:16 UTC "
        "(paced inside the window and the daily limit)\n"
        "dry run: 0 action(s) would be performed now and 3 paced for later, for 3 due lead(s); "
        "nothing was sent or saved\n"), "")
    assert dump(database) == before  # not even the pacing reservations or the senders' sync
    assert not (tmp_path / "seqrun.db.sandbox").exists()

    assert run("run", "--once")[0] == 0
    chloe = enrollments(tmp_path)["chloe-dubois"]
    clock.now = chloe.due_at
    db.close()
    before = dump(database)
    sandbox_before = dump(tmp_path / "seqrun.db.sandbox")
    assert run("run", "--once", "--dry-run") == (0, (
        "would connect  https://www.linkedin.com/in/chloe-dubois  (as alice)\n"
        "    Chloé Dubois, let's connect.\n"
        "dry run: 1 action(s) would be performed now and 0 paced for later, for 1 due lead(s); "
        "nothing was sent or saved\n"), "")
    assert dump(database) == before
    assert dump(tmp_path / "seqrun.db.sandbox") == sandbox_before

    assert run("run", "--once") == (0, "1 lead(s) processed; 2 step(s); 0 event(s)\n", "")
    open_store(str(database))
    assert [(a.lead.key, a.action, a.status) for a in Action.select()] == [("chloe-dubois", "connect", "done")]


def test_an_old_lock_file_beside_the_database_is_no_obstacle(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    # Runners no longer lock a file (several may share a database, see test_several_runners.py).
    database = tmp_path / "seqrun.db"
    with open(str(database) + ".lock", "a+") as other_runner:
        fcntl.flock(other_runner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run("run", "--once") == (0, "3 lead(s) processed; 3 step(s); 0 event(s)\n", "")


def test_run_recovers_an_action_left_in_flight(tmp_path: pathlib.Path, clock: Clock, run: Run,
                                               caplog: pytest.LogCaptureFixture) -> None:
    assert run("run", "--once")[0] == 0
    anna = enrollments(tmp_path)["anna-meyer"]
    key = f"{anna.id}:connect:0:0"
    Action.create(key=key, enrollment=anna.id, lead=anna.lead_id, sender=anna.sender_id, sequence="intro",
                  step_id="connect", action="connect", status="in_flight", charged=True, planned_at=NOW, started_at=NOW)
    # What a run killed mid-call leaves: the row in flight, the lead's reservation turned into it.
    facts = {k: v for k, v in anna.facts.items() if k != "slot"}
    # What a run killed mid-action leaves: the row in flight and its lease still on the lead.
    Enrollment.update(facts={**facts, "inflight": key}, due_at=NOW + dt.timedelta(minutes=10), lease_owner="killed-run").where(
        Enrollment.id == anna.id).execute()
    db.close()
    clock.now = NOW + dt.timedelta(minutes=1)
    code, out, _ = run("run", "--once")
    assert code == 0
    assert "1 action(s) were left in flight by an earlier run; reconciling them first" in caplog.text
    open_store(str(tmp_path / "seqrun.db"))
    lost = Action.get(Action.key == key)
    assert (lost.status, lost.error_message) == ("failed", "not performed (reconciled after an interruption)")
    assert Enrollment.get_by_id(anna.id).attempt == 1


def test_run_without_sequences_is_a_user_error(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, run: Run) -> None:
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert run("run", "--once") == (1, "", f"error: no sequences found in {tmp_path / 'sequences'}\n")
