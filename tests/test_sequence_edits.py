"""Editing a sequence while leads are in it: versions, the report before a run, `leads migrate`, status.

The project is test_run_cli's (three leads, one sandbox sender that accepts every invite after two
hours), with a sequence whose steps after the acceptance have positional ids (`accepted+1`, ...).
`at_the_wait` brings every lead to `accepted+2`, the wait after the thank-you message.
"""
from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from runner.cli.main import main
from runner.engine import presence
from runner.providers import PROVIDERS
from runner.providers.sandbox import SandboxProvider
from runner.store import Action, Enrollment, SequenceVersion, db, open_store
from runner.store.runners import register_runner
from test_run_cli import Clock, Run, invoke, run, write_project  # noqa: F401 - fixtures

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=UTC)

HEAD = """\
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
"""
TAIL = """\
  - {action: message, template: thanks.j2}
  - wait: 3 days
  - {action: message, template: follow_up.j2}
  - end: messaged
"""
V1 = HEAD + TAIL
#: A tag step inserted before the thank-you: every positional id after `accepted` moves by one.
INSERTED = HEAD + "  - {action: tag, tags: [accepted]}\n" + TAIL

KEYS = ("anna-meyer", "ben-okafor", "chloe-dubois")
#: The follow-up as V1's template words it, for the three leads (Ben's name is a formula in the CSV).
OLD_FOLLOW_UPS = {"Any thoughts, Anna?", 'Any thoughts, =HYPERLINK("http://evil.example")?', "Any thoughts, Chloé?"}


def sequence_file(root: pathlib.Path) -> pathlib.Path:
    return root / "sequences" / "intro.yaml"


@pytest.fixture
def clock(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """test_run_cli's project with the sequence V1 and three leads imported at NOW."""
    write_project(tmp_path)
    sequence_file(tmp_path).write_text(V1, encoding="utf-8")
    (tmp_path / "templates" / "follow_up.j2").write_text("Any thoughts, {{ lead.full_name | first_name }}?\n",
                                                         encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    clock = Clock(NOW)
    for module in ("run", "leads", "senders", "pause"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    monkeypatch.setitem(PROVIDERS, "sandbox", lambda **options: SandboxProvider(clock=clock, **options))
    assert main(["leads", "import", "leads.csv", "--sequence", "intro"]) == 0
    yield clock
    if not db.is_closed():
        db.close()


def state(root: pathlib.Path) -> dict[str, tuple[str, str | None]]:
    open_store(str(root / "seqrun.db"))
    try:
        return {e.lead.key: (e.state, e.step_id) for e in Enrollment.select()}
    finally:
        db.close()


def sent(root: pathlib.Path) -> dict[str, list[tuple[str, str | None]]]:
    """Per lead, the actions performed: (action, template), in order."""
    open_store(str(root / "seqrun.db"))
    try:
        out: dict[str, list[tuple[str, str | None]]] = {k: [] for k in KEYS}
        for a in Action.select().where(Action.status == "done").order_by(Action.id):
            out[a.lead.key].append((a.action, a.template))
        return out
    finally:
        db.close()


def next_due(root: pathlib.Path, step: str | None = None) -> dt.datetime:
    """When the last lead (at `step`, if given) is due."""
    open_store(str(root / "seqrun.db"))
    try:
        return max(e.due_at for e in Enrollment.select() if e.due_at is not None and step in (None, e.step_id))
    finally:
        db.close()


def run_until(root: pathlib.Path, clock: Clock, run: Run, end: dt.datetime) -> None:
    """`run --once` at every moment a lead is due, until `end` or until no lead is active."""
    while clock.now < end:
        assert run("run", "--once")[0] == 0
        open_store(str(root / "seqrun.db"))
        try:
            due = [e.due_at for e in Enrollment.select().where(Enrollment.state == "active")]
        finally:
            db.close()
        if not due:
            return
        clock.now = max(min(due), clock.now + dt.timedelta(minutes=1))


def due_times(root: pathlib.Path) -> list[dt.datetime]:
    """When each active lead is next due."""
    open_store(str(root / "seqrun.db"))
    try:
        return [e.due_at for e in Enrollment.select().where(Enrollment.state == "active") if e.due_at is not None]
    finally:
        db.close()


@pytest.fixture
def at_the_wait(tmp_path: pathlib.Path, clock: Clock, run: Run) -> Clock:
    """Invites sent at paced points of each lead's window, accepted two hours later, thank-yous paced in
    the lead's next open time: `run --once` at every moment a lead is due (and at least hourly, to see
    the acceptances) until all three leads wait at accepted+2, which pacing reaches by 5 March."""
    waiting = {k: ("active", "accepted+2") for k in KEYS}
    while state(tmp_path) != waiting:
        assert clock.now < dt.datetime(2026, 3, 5, 9, 0, tzinfo=UTC), state(tmp_path)
        assert run("run", "--once")[0] == 0
        soon = [t for t in due_times(tmp_path) if t <= clock.now + dt.timedelta(hours=1)]
        clock.now = max(min(soon, default=clock.now + dt.timedelta(hours=1)), clock.now + dt.timedelta(minutes=1))
    assert sent(tmp_path) == {k: [("connect", "note.j2"), ("message", "thanks.j2")] for k in KEYS}
    return clock


def test_inserting_a_step_never_sends_the_message_again(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # the 3-day wait is over
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    # Each lead goes on in the version it started on: the follow-up, not the thank-you again.
    assert sent(tmp_path) == {k: [("connect", "note.j2"), ("message", "thanks.j2"), ("message", "follow_up.j2")]
                              for k in KEYS}
    assert state(tmp_path) == {k: ("done", "accepted+4") for k in KEYS}


def contents(root: pathlib.Path, template: str) -> set[str]:
    open_store(str(root / "seqrun.db"))
    try:
        return {a.content for a in Action.select().where(Action.template == template, Action.status == "done")}
    finally:
        db.close()


def test_a_reworded_template_reaches_only_the_leads_that_start_after_it(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                                        run: Run) -> None:
    (tmp_path / "templates" / "follow_up.j2").write_text("New words, {{ lead.full_name | first_name }}.\n",
                                                         encoding="utf-8")
    (tmp_path / "new.csv").write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/dan-roe,Dan Roe\n",
                                      encoding="utf-8")
    assert run("leads", "import", "new.csv", "--sequence", "intro")[0] == 0
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    assert contents(tmp_path, "follow_up.j2") == OLD_FOLLOW_UPS
    open_store(str(tmp_path / "seqrun.db"))
    try:
        versions = {v.hash: v for v in SequenceVersion.select()}
        by_lead = {e.lead.key: e.sequence_hash for e in Enrollment.select()}
    finally:
        db.close()
    assert len(versions) == 2 and by_lead["dan-roe"] != by_lead["anna-meyer"]
    assert versions[by_lead["anna-meyer"]].templates["follow_up.j2"] == "Any thoughts, {{ lead.full_name | first_name }}?\n"
    assert versions[by_lead["dan-roe"]].templates["follow_up.j2"] == "New words, {{ lead.full_name | first_name }}.\n"
    assert versions[by_lead["dan-roe"]].source == V1


def test_leads_go_on_when_a_template_they_need_is_deleted(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(V1.replace("follow_up.j2", "bump.j2"), encoding="utf-8")
    (tmp_path / "templates" / "bump.j2").write_text("Bump, {{ lead.full_name | first_name }}.\n", encoding="utf-8")
    (tmp_path / "templates" / "follow_up.j2").unlink()
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    assert contents(tmp_path, "follow_up.j2") == OLD_FOLLOW_UPS
    assert state(tmp_path) == {k: ("done", "accepted+4") for k in KEYS}


# --- the report before a run ----------------------------------------------------------------------

SUMMARY = ("sequences/intro.yaml:2:7: warning: 3 of the 3 running leads of sequence intro started on an earlier "
           "version of this file and keep to it until moved with `seqrun leads migrate --sequence intro`\n")
SHIFTED = ("sequences/intro.yaml:15:5: warning: steps[id=accepted+2]: 3 leads stand at accepted+2 (wait 3 days) in the "
           "version they started on; in this file accepted+2 is message thanks.j2 (a positional id that moved): they "
           "keep to their version; to move them, map the step: "
           "`seqrun leads migrate --sequence intro --map accepted+2=STEP`\n")
#: V1 with the acceptance step renamed: every id after it is new.
RENAMED = V1.replace("{id: accepted,", "{id: invite_accepted,")


def test_run_reports_the_shifted_positional_ids_before_it_runs(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                               run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    assert run("run", "--once") == (0, "0 lead(s) processed; 0 step(s); 0 event(s)\n", SUMMARY + SHIFTED)


def test_run_reports_leads_on_a_step_the_file_no_longer_has(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                            run: Run) -> None:
    sequence_file(tmp_path).write_text(RENAMED, encoding="utf-8")
    assert run("run", "--once", "--dry-run")[2] == SUMMARY + (
        "sequences/intro.yaml:2:7: warning: 3 leads stand at step accepted+2 (wait 3 days), which this file no longer "
        "has (removed or renamed): they keep to their version; to move them, map the step: "
        "`seqrun leads migrate --sequence intro --map accepted+2=STEP`\n")


def test_a_reworded_template_is_reported_once_for_the_sequence(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                               run: Run) -> None:
    (tmp_path / "templates" / "follow_up.j2").write_text("New words.\n", encoding="utf-8")
    assert run("run", "--once")[2] == SUMMARY  # every step is the same: a move needs no map


def test_nothing_is_reported_while_the_files_are_unchanged(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                           run: Run) -> None:
    assert run("run", "--once")[2] == ""
    assert run("validate", "sequences") == (0, "1 file ok\n", "")


def test_validate_compares_the_files_with_the_project_database(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                               run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    expected = SUMMARY + SHIFTED + "2 warnings in 1 file\n"
    assert run("validate", "sequences") == (0, expected, "")
    assert run("validate", "--strict", "sequences/intro.yaml") == (1, expected, "")
    assert run("validate", "--db", "seqrun.db", "sequences") == (0, expected, "")
    assert run("validate", "--db", "other.db", "sequences") == (0, "1 file ok\n", "")  # none there: nothing to compare
    assert not (tmp_path / "other.db").exists()


def test_validate_without_a_database_creates_none(tmp_path: pathlib.Path, run: Run,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    assert run("validate", "sequences") == (0, "1 file ok\n", "")
    assert not (tmp_path / "seqrun.db").exists()


# --- leads migrate --------------------------------------------------------------------------------

def versions_of(root: pathlib.Path) -> dict[str, str]:
    open_store(str(root / "seqrun.db"))
    try:
        return {e.lead.key: e.sequence_hash for e in Enrollment.select()}
    finally:
        db.close()


def test_migrate_needs_a_map_for_a_shifted_step(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    before = versions_of(tmp_path)
    assert run("leads", "migrate", "--sequence", "intro") == (1, "", (
        "sequences/intro.yaml:15:5: error: steps[id=accepted+2]: 3 leads stand at accepted+2, which is wait 3 days in "
        "their version and message thanks.j2 here: say where they go with --map accepted+2=STEP\n"
        "error: nothing was moved; 3 leads of sequence intro stay on their version\n"))
    assert versions_of(tmp_path) == before


def test_migrate_refuses_a_map_that_would_repeat_the_message(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                             run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    before = versions_of(tmp_path)
    # Onto the tag before the thank-you: from there the lead would meet the thank-you again.
    assert run("leads", "migrate", "--sequence", "intro", "--map", "accepted+2=accepted+1") == (1, "", (
        "sequences/intro.yaml:14:5: error: steps[id=accepted+1]: moving leads here is refused: 3 leads from "
        "accepted+2 would repeat message thanks.j2 at step accepted+2, which they already had\n"
        "error: nothing was moved; 3 leads of sequence intro stay on their version\n"))
    # Onto the thank-you itself: the id they stand on, which now names the message.
    assert run("leads", "migrate", "--sequence", "intro", "--map", "accepted+2=accepted+2") == (1, "", (
        "sequences/intro.yaml:15:5: error: steps[id=accepted+2]: moving leads here is refused: 3 leads from "
        "accepted+2 would repeat message thanks.j2, which they already had\n"
        "error: nothing was moved; 3 leads of sequence intro stay on their version\n"))
    assert versions_of(tmp_path) == before


def test_migrate_moves_the_leads_in_one_go(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    before = versions_of(tmp_path)
    args = ("leads", "migrate", "--sequence", "intro", "--map", "accepted+2=accepted+3")
    moving = "sequence intro: 3 leads on earlier versions\n  accepted+2 -> accepted+3  3 leads\n"
    assert run(*args, "--dry-run") == (0, moving + "dry run: 3 leads would move to the current version; nothing "
                                              "changed\n", "")
    assert versions_of(tmp_path) == before
    assert run(*args) == (0, moving + "moved 3 leads to the current version of intro\n", "")
    assert set(versions_of(tmp_path).values()) != set(before.values())
    assert run(*args) == (0, "sequence intro: no running lead is on an earlier version; nothing to move\n", "")
    assert run("run", "--once")[2] == ""  # nothing left on an earlier version
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    assert sent(tmp_path) == {k: [("connect", "note.j2"), ("message", "thanks.j2"), ("message", "follow_up.j2")]
                              for k in KEYS}
    assert state(tmp_path) == {k: ("done", "accepted+5") for k in KEYS}


def test_migrate_without_a_map_when_every_step_is_the_same(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                           run: Run) -> None:
    (tmp_path / "templates" / "follow_up.j2").write_text("New words, {{ lead.full_name | first_name }}.\n",
                                                         encoding="utf-8")
    assert run("leads", "migrate", "--sequence", "intro") == (0, (
        "sequence intro: 3 leads on earlier versions\n"
        "  accepted+2 -> accepted+2  3 leads\n"
        "moved 3 leads to the current version of intro\n"), "")
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    assert contents(tmp_path, "follow_up.j2") == {"New words, Anna.", 'New words, =HYPERLINK("http://evil.example").',
                                                  "New words, Chloé."}


def test_migrate_a_renamed_step(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(RENAMED, encoding="utf-8")
    assert run("leads", "migrate", "--sequence", "intro") == (1, "", (
        "sequences/intro.yaml:2:7: error: 3 leads stand at step accepted+2 (wait 3 days in their version), which "
        "this file does not have: say where they go with --map accepted+2=STEP\n"
        "error: nothing was moved; 3 leads of sequence intro stay on their version\n"))
    assert run("leads", "migrate", "--sequence", "intro", "--map", "accepted+2=invite_accepted+2")[0] == 0
    assert state(tmp_path) == {k: ("active", "invite_accepted+2") for k in KEYS}
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    assert sent(tmp_path) == {k: [("connect", "note.j2"), ("message", "thanks.j2"), ("message", "follow_up.j2")]
                              for k in KEYS}


def test_migrate_refuses_a_second_invite_and_unknown_steps(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                          run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    refused = "error: nothing was moved; 3 leads of sequence intro stay on their version\n"
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=connect") == (1, "", (
        "sequences/intro.yaml:12:5: error: steps[id=connect]: moving leads here is refused: 3 leads from accepted+2 "
        "would repeat connect note.j2, which they already had\n" + refused))
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=nope", "--map", "nope=accepted+3") == (1, "", (
        'sequences/intro.yaml:2:7: error: --map accepted+2=nope: this file has no step "nope"\n'
        'sequences/intro.yaml:2:7: error: --map nope=accepted+3: no earlier version of sequence intro that leads run '
        'has a step "nope"\n'
        "error: nothing was moved\n"))
    code, out, err = run("leads", "migrate", "-s", "intro", "--map", "accepted+2")
    assert (code, out) == (2, "")
    assert 'Invalid value for --map: "accepted+2": expected OLD=NEW, two step ids' in err


def test_migrate_refuses_leads_with_an_action_in_flight_and_keeps_paused_leads_paused(
        tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    assert run("pause", "--lead", "https://www.linkedin.com/in/ben-okafor")[0] == 0
    open_store(str(tmp_path / "seqrun.db"))
    anna = Enrollment.select().join_from(Enrollment, Enrollment.lead.rel_model).where(
        Enrollment.lead.rel_model.key == "anna-meyer").get()
    Enrollment.update(facts={**anna.facts, "inflight": "k"}).where(Enrollment.id == anna.id).execute()
    db.close()
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=accepted+3") == (1, "", (
        "sequences/intro.yaml:2:7: error: 1 lead at step accepted+2 has an action in flight: run `seqrun run --once` "
        "to settle it, then move it\n"
        "error: nothing was moved; 3 leads of sequence intro stay on their version\n"))
    open_store(str(tmp_path / "seqrun.db"))
    Enrollment.update(facts=anna.facts).where(Enrollment.id == anna.id).execute()
    db.close()
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=accepted+3")[0] == 0
    assert state(tmp_path) == {"anna-meyer": ("active", "accepted+3"), "ben-okafor": ("paused", "accepted+3"),
                               "chloe-dubois": ("active", "accepted+3")}


def test_a_lead_moved_from_a_wait_to_a_wait_keeps_waiting_from_when_it_began(tmp_path: pathlib.Path,
                                                                               at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    open_store(str(tmp_path / "seqrun.db"))
    entered = {e.lead.key: e.step_entered_at for e in Enrollment.select()}
    db.close()
    at_the_wait.now = dt.datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=accepted+3")[0] == 0
    assert run("run", "--once")[0] == 0
    open_store(str(tmp_path / "seqrun.db"))
    due = {e.lead.key: (e.step_id, e.due_at) for e in Enrollment.select()}
    db.close()
    assert due == {k: ("accepted+3", entered[k] + dt.timedelta(days=3)) for k in KEYS}


# --- status ---------------------------------------------------------------------------------------

def test_status_shows_the_leads_on_earlier_versions(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(RENAMED, encoding="utf-8")
    version = versions_of(tmp_path)["anna-meyer"][:12]
    code, out, err = run("status")
    assert (code, err) == (0, "")
    assert out.split("\n\n")[0] == (
        "intro: 3 lead(s) (active 3)\n"
        "  step                     leads here   done  skipped  failed  in flight\n"
        "  connect                           0      3        0       0          0\n"
        "  invite_accepted                   0      0        0       0          0\n"
        "  invite_accepted+1                 0      0        0       0          0\n"
        "  invite_accepted+2                 0      0        0       0          0\n"
        "  invite_accepted+3                 0      0        0       0          0\n"
        "  invite_accepted+4                 0      0        0       0          0\n"
        "  accepted+1 (not in file)          0      3        0       0          0\n"
        "  on earlier versions: 3 lead(s), kept there until moved with `seqrun leads migrate --sequence intro`\n"
        f"    version {version} (2026-03-03 10:00 UTC): accepted+2 3 (not in file)")
    code, out, err = run("status", "--json")
    (report,) = json.loads(out)["sequences"]
    assert report["steps"][-1] == {"id": "accepted+1", "leads_here": 0, "actions": {"done": 3}, "in_file": False}
    assert report["on_earlier_versions"] == 3
    assert report["versions"] == [{"version": version, "current": False, "stored_at": "2026-03-03T10:00:00+00:00",
                                   "leads": 3, "steps": {"accepted+2": 3}, "steps_not_in_file": ["accepted+2"]}]
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=invite_accepted+2")[0] == 0
    code, out, err = run("status")
    assert "earlier versions" not in out
    assert "  invite_accepted+2                 3      0        0       0          0\n" in out


def test_leads_on_an_earlier_version_follow_the_current_calendar(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                                 run: Run) -> None:
    # Hours are a promise about the whole sequence: narrowing them holds for every lead at once.
    sequence_file(tmp_path).write_text(INSERTED.replace('hours: ["09:00-17:00"]', 'hours: ["13:00-14:00"]'),
                                       encoding="utf-8")
    at_the_wait.now = dt.datetime(2026, 3, 8, 9, 0, tzinfo=UTC)
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    open_store(str(tmp_path / "seqrun.db"))
    try:
        follow_ups = [a for a in Action.select() if a.template == "follow_up.j2"]
        local = {a.lead.key: a.performed_at.astimezone(ZoneInfo(a.lead.timezone or "Europe/Berlin")).hour
                 for a in follow_ups}
    finally:
        db.close()
    assert local == {k: 13 for k in KEYS}
    assert sent(tmp_path)["anna-meyer"] == [("connect", "note.j2"), ("message", "thanks.j2"),
                                            ("message", "follow_up.j2")]


def test_leads_on_a_version_that_is_not_stored_wait_to_be_moved(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                                 run: Run) -> None:
    # As if imported by a seqrun that kept no versions, from a file that has changed since.
    open_store(str(tmp_path / "seqrun.db"))
    Enrollment.update(sequence_hash="0123456789abcdef").execute()
    db.close()
    at_the_wait.now = dt.datetime(2026, 3, 9, 9, 0, tzinfo=UTC)
    code, out, err = run("run", "--once")
    assert (code, out) == (0, "3 lead(s) processed; 0 step(s); 0 event(s); ended: paused 3\n")
    assert err == (
        "sequences/intro.yaml:2:7: warning: 3 of the 3 running leads of sequence intro started on an earlier version "
        "of this file and keep to it until moved with `seqrun leads migrate --sequence intro`\n"
        "sequences/intro.yaml:2:7: warning: 3 leads at step accepted+2 run a version of sequence intro that is not "
        "stored (imported before seqrun kept versions); they are paused when due until moved with "
        "`seqrun leads migrate --sequence intro`\n")
    assert run("leads", "list", "--state", "paused")[1].count(
        "the version of sequence \"intro\" this lead started on is not stored; move it with "
        "`seqrun leads migrate --sequence intro`") == 3
    # Without the earlier text only ids the author wrote map by themselves; a positional one is mapped.
    assert run("leads", "migrate", "-s", "intro")[0] == 1
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=accepted+2")[0] == 0
    assert run("resume", "--sequence", "intro")[0] == 0
    run_until(tmp_path, at_the_wait, run, dt.datetime(2026, 3, 12, tzinfo=UTC))
    assert sent(tmp_path) == {k: [("connect", "note.j2"), ("message", "thanks.j2"), ("message", "follow_up.j2")]
                              for k in KEYS}


def test_migrate_waits_for_a_running_seqrun_to_stop(tmp_path: pathlib.Path, at_the_wait: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    database = tmp_path / "seqrun.db"
    before = versions_of(tmp_path)
    open_store(str(database))
    far = "far-host:4242:0a0a0a0a"  # a runner of another machine whose heartbeat is 30 s old
    register_runner(far, "far-host", 4242, "run", at_the_wait.now - dt.timedelta(seconds=30))
    db.close()
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=accepted+3") == (
        1, "", f'error: "seqrun run" is working on {database} (far-host pid 4242, heartbeat 30 s ago); stop it '
        "before moving leads\n")
    assert versions_of(tmp_path) == before
    at_the_wait.now += presence.STALE_AFTER  # no heartbeat since: it is gone
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=accepted+3")[0] == 0


def test_validate_names_an_explicit_id_whose_step_changed(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                          run: Run) -> None:
    sequence_file(tmp_path).write_text(V1.replace("  - wait: 3 days\n", "  - {id: pause, wait: 3 days}\n"),
                                       encoding="utf-8")
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+2=pause")[0] == 0
    sequence_file(tmp_path).write_text(V1.replace("  - wait: 3 days\n", "  - {id: pause, wait: 5 days}\n"),
                                       encoding="utf-8")
    assert run("validate", "sequences") == (0, SUMMARY + (
        "sequences/intro.yaml:15:5: warning: steps[id=pause]: 3 leads stand at pause (wait 3 days) in the version "
        "they started on; in this file pause is wait 5 days (an id whose step changed): they keep to their version; "
        "to move them, map the step: `seqrun leads migrate --sequence intro --map pause=STEP`\n"
        "2 warnings in 1 file\n"), "")


def test_validate_says_when_it_cannot_read_the_database(tmp_path: pathlib.Path, run: Run,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    (tmp_path / "broken.db").write_bytes(b"not a database, " * 64)
    assert run("validate", "--db", "broken.db", "sequences") == (0, (
        'broken.db: warning: the sequences were not compared with the leads in this database: database "broken.db" '
        "cannot be opened: file is not a database\n"
        "1 warning in 1 file\n"), "")


# --- a map onto a moved step that repeats an action other than an invite or a message ---------------

#: The thank-you, then a visit (`accepted+2`), then the 3-day wait (`accepted+3`).
VISITED = HEAD + """\
  - {action: message, template: thanks.j2}
  - {action: visit}
  - wait: 3 days
  - {action: message, template: follow_up.j2}
  - end: messaged
"""
#: A tag inserted before the thank-you: the visit is now `accepted+3`, the id the waiting leads stand on.
VISITED_INSERTED = HEAD + "  - {action: tag, tags: [accepted]}\n" + VISITED[len(HEAD):]


@pytest.fixture
def after_the_visit(tmp_path: pathlib.Path, clock: Clock, run: Run) -> Clock:
    """The project of `clock`, with VISITED in place before the leads start: all at accepted+3 (the wait)."""
    sequence_file(tmp_path).write_text(VISITED, encoding="utf-8")
    open_store(str(tmp_path / "seqrun.db"))
    Enrollment.delete().execute()
    db.close()
    assert run("leads", "import", "leads.csv", "--sequence", "intro")[0] == 0
    waiting = {k: ("active", "accepted+3") for k in KEYS}
    while state(tmp_path) != waiting:  # as at_the_wait: every due moment, at least hourly
        assert clock.now < dt.datetime(2026, 3, 6, 9, 0, tzinfo=UTC), state(tmp_path)
        assert run("run", "--once")[0] == 0
        soon = [t for t in due_times(tmp_path) if t <= clock.now + dt.timedelta(hours=1)]
        clock.now = max(min(soon, default=clock.now + dt.timedelta(hours=1)), clock.now + dt.timedelta(minutes=1))
    assert sent(tmp_path) == {k: [("connect", "note.j2"), ("message", "thanks.j2"), ("visit", None)] for k in KEYS}
    return clock


def test_migrate_refuses_a_map_onto_the_moved_step_of_an_action_they_had(tmp_path: pathlib.Path,
                                                                           after_the_visit: Clock, run: Run) -> None:
    sequence_file(tmp_path).write_text(VISITED_INSERTED, encoding="utf-8")
    before = versions_of(tmp_path)
    # accepted+3 is the wait they stand on in their version and the visit they had in this file.
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+3=accepted+3") == (1, "", (
        "sequences/intro.yaml:16:5: error: steps[id=accepted+3]: moving leads here is refused: 3 leads from "
        "accepted+3 would repeat visit, which they already had\n"
        "error: nothing was moved; 3 leads of sequence intro stay on their version\n"))
    assert versions_of(tmp_path) == before
    assert run("leads", "migrate", "-s", "intro", "--map", "accepted+3=accepted+4")[0] == 0


def test_a_visit_moved_by_an_edit_is_matched_with_the_visit_it_was(tmp_path: pathlib.Path) -> None:
    from runner.language.loader import load_sequence
    from runner.migrate import _counterparts

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "thanks.j2").write_text("Thanks!\n", encoding="utf-8")
    head = ("version: 1\nname: two-visits\nsteps:\n  - {id: first_visit, action: visit}\n"
            "  - {id: connect, action: connect}\n"
            "  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}\n")
    tail = "  - {action: visit}\n  - {action: message, template: thanks.j2}\n  - end: messaged\n"

    def load(name: str, text: str):  # type: ignore[no-untyped-def]
        (tmp_path / name).write_text(text, encoding="utf-8")
        seq, diags = load_sequence(str(tmp_path / name))
        assert seq is not None, diags
        return seq

    old = load("old.yaml", head + tail)
    new = load("new.yaml", head + "  - {action: tag, tags: [accepted]}\n" + tail)
    # The second visit moved from accepted+1 to accepted+2; the first kept its id.
    assert _counterparts(new, old, "accepted+1", "visit") == ["accepted+2"]
    assert _counterparts(new, old, "first_visit", "visit") == ["first_visit"]
    # With one visit less, any visit may be the one the lead had.
    fewer = load("fewer.yaml", head.replace("  - {id: first_visit, action: visit}\n", "") + tail)
    assert _counterparts(fewer, old, "first_visit", "visit") == ["accepted+1"]


def test_the_report_before_a_run_counts_one_lead_in_the_singular(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                                  run: Run) -> None:
    open_store(str(tmp_path / "seqrun.db"))
    Enrollment.update(state="done").where(Enrollment.id != Enrollment.select(Enrollment.id).limit(1)).execute()
    db.close()
    sequence_file(tmp_path).write_text(INSERTED, encoding="utf-8")
    assert run("validate", "sequences")[1] == (
        "sequences/intro.yaml:2:7: warning: 1 of the 1 running lead of sequence intro started on an earlier "
        "version of this file and keeps to it until moved with `seqrun leads migrate --sequence intro`\n"
        "sequences/intro.yaml:15:5: warning: steps[id=accepted+2]: 1 lead stands at accepted+2 (wait 3 days) in the "
        "version it started on; in this file accepted+2 is message thanks.j2 (a positional id that moved): it "
        "keeps to its version; to move it, map the step: "
        "`seqrun leads migrate --sequence intro --map accepted+2=STEP`\n"
        "2 warnings in 1 file\n")
    sequence_file(tmp_path).write_text(RENAMED, encoding="utf-8")
    assert run("validate", "sequences")[1].splitlines()[0] == (
        "sequences/intro.yaml:2:7: warning: 1 lead stands at step accepted+2 (wait 3 days), which this file no longer "
        "has (removed or renamed): it keeps to its version; to move it, map the step: "
        "`seqrun leads migrate --sequence intro --map accepted+2=STEP`")


def test_run_reports_leads_whose_sequence_no_file_defines_any_more(tmp_path: pathlib.Path, at_the_wait: Clock,
                                                                    run: Run) -> None:
    sequence_file(tmp_path).write_text(V1.replace("name: intro\n", "name: intro_v2\n"), encoding="utf-8")
    assert run("run", "--once")[2] == (
        "sequences/intro.yaml: warning: 3 running leads of sequence intro: no file in sequences/ defines that "
        "sequence any more (its file removed, or its name changed?); they are paused when due until a sequence "
        "named intro is back\n")


def test_a_map_onto_an_inmail_the_lead_had_is_a_repeat(tmp_path: pathlib.Path) -> None:
    from runner.language.loader import load_sequence
    from runner.migrate import _first_repeat, _Mapping

    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "pitch.j2").write_text("Hello!\n", encoding="utf-8")
    head = "version: 1\nname: inmail\nsteps:\n  - {id: first, action: visit}\n"
    tail = ('  - {action: message, inmail: true, subject: "A question", template: pitch.j2}\n'
            "  - wait: 3 days\n  - end: pitched\n")

    def load(name: str, text: str):  # type: ignore[no-untyped-def]
        (tmp_path / name).write_text(text, encoding="utf-8")
        seq, diags = load_sequence(str(tmp_path / name))
        assert seq is not None, diags
        return seq

    old = load("old.yaml", head + tail)
    new = load("new.yaml", head + "  - {action: tag, tags: [visited]}\n" + tail)
    # The engine records an InMail as action "inmail"; the lead waits at first+2 in its version.
    ledger = [("first", "visit", None, "done"), ("first+1", "inmail", "pitch.j2", "done")]
    mapping = _Mapping(new, old, {"first+2": "first+2"})
    assert _first_repeat(new, mapping, "first+2", ledger) == ("inmail pitch.j2", "first+2")
    assert _first_repeat(new, mapping, "first+3", ledger) is None
