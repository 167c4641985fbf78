"""`seqrun pause|resume` and `seqrun senders list|resume`, on real SQLite files."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from runner.cli.main import main
from runner.leads import import_leads
from runner.project.config import load_config
from runner.project.discovery import load_sequence_by_name
from runner.project.leadsfile import read_leads
from runner.store import Enrollment, Sender, db, open_store

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)

CONFIG = """\
version: 1
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
  - {name: bob, provider: sandbox, account_id: acc-bob, account_type: sales_navigator, timezone: Europe/Berlin}
"""
SEQUENCE = """\
version: 1
name: {name}
steps:
  - {{id: visit, action: visit}}
"""


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """Two sequences; a-1..a-3 in `one` (alice, bob, alice), b-1 in `two` (bob)."""
    (tmp_path / "sequences").mkdir()
    (tmp_path / "seqrun.yaml").write_text(CONFIG, encoding="utf-8")
    for name in ("one", "two"):
        (tmp_path / "sequences" / f"{name}.yaml").write_text(SEQUENCE.format(name=name), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    config = load_config(tmp_path)
    open_store(str(tmp_path / "seqrun.db"))
    for name, keys in (("one", ["a-1", "a-2", "a-3"]), ("two", ["b-1"])):
        path = tmp_path / f"{name}.csv"
        path.write_text("linkedin_profile_url\n" + "".join(f"https://www.linkedin.com/in/{k}\n" for k in keys),
                        encoding="utf-8")
        seq, _ = load_sequence_by_name(name, str(tmp_path))
        import_leads(read_leads(str(path)), seq, config, now=NOW)
    db.close()
    yield tmp_path
    if not db.is_closed():
        db.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def states(project: pathlib.Path) -> dict[str, tuple[str, str | None]]:
    open_store(str(project / "seqrun.db"))
    out = {e.lead.key: (e.state, e.paused_reason) for e in Enrollment.select()}
    db.close()
    return out


def sender_status(project: pathlib.Path, name: str) -> tuple[str, str | None]:
    open_store(str(project / "seqrun.db"))
    sender = Sender.get(Sender.name == name)
    db.close()
    return sender.status, sender.paused_reason


def test_fixture_assignment(project: pathlib.Path) -> None:
    open_store(str(project / "seqrun.db"))
    assert {e.lead.key: e.sender.name for e in Enrollment.select()} == {
        "a-1": "alice", "a-2": "bob", "a-3": "alice", "b-1": "bob"}


def test_pause_and_resume_a_sender(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "pause", "--sender", "bob", "--reason", "on holiday") == (
        0, "paused 2 enrollments of sender bob\nsender bob gets no new leads until resumed\n", "")
    assert states(project) == {"a-1": ("active", None), "a-2": ("paused", "sender paused: on holiday"),
                               "a-3": ("active", None), "b-1": ("paused", "sender paused: on holiday")}
    assert sender_status(project, "bob") == ("paused", "on holiday")
    before = dt.datetime.now(dt.UTC)
    assert run(capsys, "resume", "--sender", "bob") == (
        0, "resumed 2 enrollments of sender bob, due now\n", "")
    assert sender_status(project, "bob") == ("active", None)
    assert set(states(project).values()) == {("active", None)}
    open_store(str(project / "seqrun.db"))
    assert all(e.due_at >= before for e in Enrollment.select().where(Enrollment.sender == Sender.get(name="bob")))


def test_pause_and_resume_a_lead(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "https://de.linkedin.com/in/A-1/"
    assert run(capsys, "pause", "--lead", url) == (
        0, "paused 1 enrollment of lead https://www.linkedin.com/in/a-1\n", "")
    assert states(project)["a-1"] == ("paused", "lead paused")
    assert run(capsys, "pause", "--lead", url)[1] == (
        "paused 0 enrollments of lead https://www.linkedin.com/in/a-1\n1 already paused (lead paused: 1)\n")
    assert run(capsys, "resume", "--lead", url) == (
        0, "resumed 1 enrollment of lead https://www.linkedin.com/in/a-1, due now\n", "")
    assert states(project)["a-1"] == ("active", None)


def test_resume_lifts_only_its_own_kind_of_pause(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "pause", "--lead", "https://www.linkedin.com/in/a-1", "--reason", "on the phone")
    run(capsys, "pause", "--sequence", "one")
    assert states(project) == {"a-1": ("paused", "lead paused: on the phone"), "a-2": ("paused", "sequence paused"),
                               "a-3": ("paused", "sequence paused"), "b-1": ("active", None)}
    run(capsys, "pause", "--sender", "alice")
    assert run(capsys, "resume", "--sequence", "one") == (0, (
        "resumed 1 enrollment of sequence one, due now\n"
        "2 stay paused (sender alice is paused: 2)\n"), "")
    assert states(project)["a-2"] == ("active", None)
    assert run(capsys, "resume", "--sender", "alice")[1] == (
        "resumed 0 enrollments of sender alice\n2 stay paused (lead paused: 1, sequence paused: 1)\n")
    assert run(capsys, "resume", "--sequence", "one")[1] == (
        "resumed 1 enrollment of sequence one, due now\n1 stays paused (lead paused: 1)\n")
    assert run(capsys, "resume", "--lead", "https://www.linkedin.com/in/a-1")[1] == (
        "resumed 1 enrollment of lead https://www.linkedin.com/in/a-1, due now\n")
    assert set(states(project).values()) == {("active", None)}


def test_exactly_one_selector(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "pause")
    assert (code, err.splitlines()[-1]) == (2, "Error: give exactly one of --lead, --sender, --sequence")
    code, _, err = run(capsys, "resume", "--sender", "bob", "--sequence", "one")
    assert (code, err.splitlines()[-1]) == (2, "Error: give exactly one of --lead, --sender, --sequence")


def test_unknown_selector_values(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "pause", "--sender", "dave") == (1, "", 'error: unknown sender "dave" (known: alice, bob)\n')
    assert run(capsys, "pause", "--sequence", "three") == (
        1, "", 'error: no leads in sequence "three" (sequences with leads: one, two)\n')
    assert run(capsys, "resume", "--lead", "https://www.linkedin.com/in/zed-z") == (
        1, "", "error: no lead https://www.linkedin.com/in/zed-z in the database\n")
    assert run(capsys, "pause", "--lead", "https://example.com/x") == (
        1, "", 'error: "https://example.com/x" is not a LinkedIn profile URL '
               '(host "example.com" is not linkedin.com)\n')


def test_senders_resume_after_auth_expired(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "pause", "--lead", "https://www.linkedin.com/in/a-2")
    open_store(str(project / "seqrun.db"))
    bob = Sender.get(Sender.name == "bob")
    # What the engine does on AUTH_EXPIRED (runner.engine.steps.pause_sender).
    Sender.update(status="paused", paused_reason="auth expired").where(Sender.id == bob.id).execute()
    Enrollment.update(state="paused", paused_reason="auth expired").where(
        Enrollment.sender == bob.id, Enrollment.state == "active").execute()
    db.close()
    code, out, _ = run(capsys, "senders", "list")
    assert out.splitlines() == [
        "NAME   PROVIDER  ACCOUNT          TIMEZONE       STATUS                ACTIVE  PAUSED  DONE",
        "alice  sandbox   classic          UTC            active                2       0       0",
        "bob    sandbox   sales_navigator  Europe/Berlin  paused: auth expired  0       2       0"]
    before = dt.datetime.now(dt.UTC)
    assert run(capsys, "senders", "resume", "bob") == (
        0, "sender bob is active; resumed 1 enrollment\n1 stays paused (lead paused: 1)\n", "")
    assert states(project) == {"a-1": ("active", None), "a-2": ("paused", "lead paused"),
                               "a-3": ("active", None), "b-1": ("active", None)}
    open_store(str(project / "seqrun.db"))
    assert Enrollment.get(Enrollment.lead == 4).due_at >= before
    db.close()
    listed = json.loads(run(capsys, "senders", "list", "--json")[1])
    assert listed[1] == {"name": "bob", "provider": "sandbox", "account_type": "sales_navigator",
                         "timezone": "Europe/Berlin", "status": "active", "paused_reason": None,
                         "configured": True, "enrollments": {"active": 1, "paused": 1}}
    assert run(capsys, "senders", "resume", "dave") == (1, "", 'error: unknown sender "dave" (known: alice, bob)\n')


def test_senders_list_marks_senders_removed_from_the_config(project: pathlib.Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    (project / "seqrun.yaml").write_text(CONFIG.split("  - {name: bob")[0], encoding="utf-8")
    out = run(capsys, "senders", "list")[1]
    assert out.splitlines()[2].startswith(
        "bob    sandbox   sales_navigator  Europe/Berlin  active (not in seqrun.yaml)")
