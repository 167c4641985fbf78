"""`seqrun export` never writes over a file seqrun owns and never leaves half a file; a damaged
database is an error (exit 1, the file named, `PRAGMA integrity_check` suggested) for export, status
and `leads list`, never a shorter export with exit 0. The databases are real SQLite files in tmp_path,
damaged by overwriting their pages."""
from __future__ import annotations

import datetime as dt
import hashlib
import os
import pathlib
import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest

from runner.cli.main import main
from runner.store import Action, Enrollment, Lead, Sender, db, open_store

NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)
LEADS = 300
CONFIG = """\
version: 1
database: seqrun.db
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
sandbox:
  state_path: sandbox-state.db
"""
SEQUENCE = "version: 1\nname: intro\nsteps:\n  - {id: connect, action: connect}\n"


def build_db(path: pathlib.Path, leads: int = LEADS) -> None:
    """One sender, `leads` leads each with an enrollment and a done connect; every table's rows carry a
    marker (LEADMARK, ENRMARK, ACTIONMARK) so that a test can find and damage that table's pages."""
    open_store(str(path))
    with db.atomic():
        sender = Sender.create(name="alice", provider="sandbox", account_id="acc-alice", created_at=NOW)
        for i in range(leads):
            lead = Lead.create(key=f"lead-{i}", profile_url=f"https://www.linkedin.com/in/lead-{i}",
                               fields={"full_name": f"LEADMARK {i} " + "l" * 100}, created_at=NOW, updated_at=NOW)
            enr = Enrollment.create(lead=lead, sequence="intro", sequence_hash="h", sender=sender, step_id="connect",
                                    last_error=f"ENRMARK {i} " + "e" * 100, created_at=NOW, updated_at=NOW)
            Action.create(key=f"{enr.id}:connect:0:0", enrollment=enr, lead=lead, sender=sender, sequence="intro",
                          step_id="connect", action="connect", status="done", planned_at=NOW, performed_at=NOW,
                          content=f"ACTIONMARK {i} " + "x" * 200)
    db.close()  # the last connection checkpoints the WAL into the file


def damage(path: pathlib.Path, marker: bytes, *, whole_page: bool = True) -> None:
    """Overwrite one page holding `marker`, in the middle of its table, with 0xff bytes: the whole page
    (no page can start like that), or only its second half (cells pointing nowhere)."""
    data = path.read_bytes()
    page_size = int.from_bytes(data[16:18], "big")
    pages = sorted({m.start() // page_size for m in re.finditer(re.escape(marker), data)})
    assert len(pages) > 4, pages
    victim = pages[len(pages) // 2]
    start = 0 if whole_page else page_size // 2
    with open(path, "r+b") as fh:
        fh.seek(victim * page_size + start)
        fh.write(b"\xff" * (page_size - start))


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    (tmp_path / "seqrun.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "sequences").mkdir()
    (tmp_path / "sequences" / "intro.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "note.j2").write_text("Hi", encoding="utf-8")
    (tmp_path / "sandbox-state.db").write_bytes(b"state")
    build_db(tmp_path / "seqrun.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    yield tmp_path
    if not db.is_closed():
        db.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def leftovers(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


# --- files seqrun owns ----------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "what"), [
    ("seqrun.db", "the database"),
    ("./sequences/../seqrun.db", "the database"),
    ("seqrun.db-wal", "the database's write-ahead log"),
    ("seqrun.db-shm", "the database's shared-memory file"),
    ("seqrun.db-journal", "the database's rollback journal"),
    ("seqrun.db.lock", "the database's lock file"),
    ("seqrun.yaml", "the project's configuration"),
    ("sandbox-state.db", "the sandbox state file"),
    ("sandbox-state.db-wal", "the sandbox state file's write-ahead log"),
    ("sequences/intro.yaml", "in the project's sequences/ directory"),
    ("sequences/actions.csv", "in the project's sequences/ directory"),
    ("templates/note.j2", "in the project's templates/ directory"),
    ("link.csv", "the database"),
])
def test_export_never_writes_over_a_file_seqrun_owns(project: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                     target: str, what: str) -> None:
    (project / "link.csv").symlink_to(project / "seqrun.db")
    before = {p.name: digest(p) for p in project.iterdir() if p.is_file()}
    code, out, err = run(capsys, "export", "actions", "-o", target)
    assert (code, out) == (1, "")
    assert err == f"error: will not write the export to {target}: it is {what}; choose another file\n"
    assert {p.name: digest(p) for p in project.iterdir() if p.is_file()} == before
    assert not (project / "sequences" / "actions.csv").exists()
    assert run(capsys, "export", "actions", "-o", "actions.csv")[0] == 0


def test_export_to_the_database_given_with_db_is_refused(project: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("elsewhere") / "other.db"
    build_db(other, leads=3)
    code, out, err = run(capsys, "export", "actions", "--db", str(other), "-o", str(other))
    assert (code, out, err) == (1, "", f"error: will not write the export to {other}: it is the database; "
                                       "choose another file\n")
    assert run(capsys, "export", "actions", "--db", str(other), "-o", str(project / "seqrun.db"))[0] == 1


@pytest.mark.parametrize("target", ["seqrun.db.sandbox", "seqrun.db.sandbox-wal", "other.db.sandbox"])
def test_export_never_writes_over_the_default_sandbox_state_file(project: pathlib.Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                target: str) -> None:
    # Without sandbox.state_path, the sandbox keeps its simulated LinkedIn beside the database in use.
    (project / "seqrun.yaml").write_text(CONFIG.replace("sandbox:\n  state_path: sandbox-state.db\n", ""),
                                         encoding="utf-8")
    build_db(project / "other.db", leads=3)
    for name in ("seqrun.db.sandbox", "seqrun.db.sandbox-wal", "other.db.sandbox"):
        (project / name).write_bytes(b"state")
    args = ("--db", "other.db") if target.startswith("other") else ()
    what = "the sandbox state file" + ("'s write-ahead log" if target.endswith("-wal") else "")
    assert run(capsys, "export", "actions", *args, "-o", target) == (
        1, "", f"error: will not write the export to {target}: it is {what}; choose another file\n")
    assert (project / target).read_bytes() == b"state"


def test_export_with_seqrun_db_set_still_never_writes_over_the_project_database(
        project: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # README: `SEQRUN_DB=/tmp/trial.db seqrun ...` tries something without touching the real database.
    build_db(project / "trial.db", leads=3)
    monkeypatch.setenv("SEQRUN_DB", str(project / "trial.db"))
    before = digest(project / "seqrun.db")
    for target in ("seqrun.db", "seqrun.db-wal", "trial.db"):
        code, out, err = run(capsys, "export", "actions", "-o", target)
        assert (code, out) == (1, "")
        assert err.startswith(f"error: will not write the export to {target}: it is the database")
    assert digest(project / "seqrun.db") == before


def test_export_into_a_missing_directory_is_a_user_error(project: pathlib.Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "export", "actions", "-o", "/nonexistent/dir/out.csv") == (
        1, "", "error: cannot write /nonexistent/dir/out.csv: the directory /nonexistent/dir does not exist\n")


# --- whole files or nothing -----------------------------------------------------------------------


def test_an_export_replaces_the_file_whole_with_the_usual_permissions(project: pathlib.Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    old_umask = os.umask(0o022)
    try:
        assert run(capsys, "export", "actions", "-o", "actions.csv") == (0, "", "")
    finally:
        os.umask(old_umask)
    lines = (project / "actions.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + LEADS
    assert (project / "actions.csv").stat().st_mode & 0o777 == 0o644
    (project / "actions.csv").chmod(0o600)
    assert run(capsys, "export", "events", "-o", "actions.csv") == (0, "", "")
    assert (project / "actions.csv").read_text(encoding="utf-8").startswith("event_id,")
    assert (project / "actions.csv").stat().st_mode & 0o777 == 0o600
    assert leftovers(project) == []


def test_a_failed_export_leaves_the_previous_file_and_no_half_file(project: pathlib.Path,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from runner import report

    real = report.export_rows

    def fail_midway(kind: str, sequences: Any) -> Iterator[dict[str, Any]]:
        rows = real(kind, sequences)
        for _ in range(LEADS // 2):
            yield next(rows)
        raise RuntimeError("boom")

    monkeypatch.setattr("runner.cli.commands.export.export_rows", fail_midway)
    (project / "old.csv").write_text("previous export\n", encoding="utf-8")
    assert run(capsys, "export", "actions", "-o", "old.csv")[0] == 3
    assert (project / "old.csv").read_text(encoding="utf-8") == "previous export\n"
    assert run(capsys, "export", "actions", "-o", "new.csv")[0] == 3
    assert not (project / "new.csv").exists()
    assert leftovers(project) == []


# --- a damaged database -----------------------------------------------------------------------------


def check_hint(path: pathlib.Path) -> str:
    return f'check it with: sqlite3 {path} "PRAGMA integrity_check"'


@pytest.mark.parametrize(("whole_page", "problem"), [
    (False, "is damaged (SQLite's quick_check found problems)"),  # the check lists what it found
    (True, "cannot be read: database disk image is malformed"),  # the check itself cannot read it
])
def test_a_damaged_database_exports_nothing(project: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                            whole_page: bool, problem: str) -> None:
    damage(project / "seqrun.db", b"ACTIONMARK", whole_page=whole_page)
    (project / "old.csv").write_text("previous export\n", encoding="utf-8")
    db_path = project / "seqrun.db"
    for args in (("-o", "old.csv"), ("-o", "new.csv"), ("--format", "jsonl")):
        assert run(capsys, "export", "actions", *args) == (1, "", (
            f"error: the database {db_path} {problem}; nothing was exported; {check_hint(db_path)}\n"))
    assert (project / "old.csv").read_text(encoding="utf-8") == "previous export\n"
    assert not (project / "new.csv").exists()
    assert leftovers(project) == []


def test_a_read_error_midway_is_an_error_not_a_shorter_export(project: pathlib.Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Damage that the quick check does not see (here: the check is skipped) still stops the export
    # at the first row that cannot be read.
    monkeypatch.setattr("runner.store.health.quick_check", lambda *args: None)
    damage(project / "seqrun.db", b"ACTIONMARK")
    db_path = project / "seqrun.db"
    message = (f"error: the database {db_path} cannot be read: database disk image is malformed; nothing was "
               f"exported; {check_hint(db_path)}\n")
    (project / "old.csv").write_text("previous export\n", encoding="utf-8")
    assert run(capsys, "export", "actions", "-o", "old.csv") == (1, "", message)
    assert (project / "old.csv").read_text(encoding="utf-8") == "previous export\n"
    code, out, err = run(capsys, "export", "actions")
    assert (code, err) == (1, message)
    assert 1 < len(out.splitlines()) < 1 + LEADS  # stdout got the rows read before the damaged page
    assert leftovers(project) == []


def test_actions_whose_lead_is_missing_make_the_export_fail(project: pathlib.Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    # Rows lost without SQLite noticing (here: leads deleted behind the foreign keys' back) would
    # silently drop their actions from the join.
    with sqlite3.connect(project / "seqrun.db") as conn:
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("DELETE FROM lead WHERE id % 25 = 0")
    conn.close()
    db_path = project / "seqrun.db"
    assert run(capsys, "export", "actions", "-o", "out.csv") == (1, "", (
        f"error: the database {db_path} is inconsistent: only 288 of 300 actions could be read; nothing was "
        f'exported; check it with: sqlite3 {db_path} "PRAGMA integrity_check" "PRAGMA foreign_key_check"\n'))
    assert not (project / "out.csv").exists()


@pytest.mark.parametrize(("marker", "args"), [
    (b"ENRMARK", ("status",)),
    (b"ENRMARK", ("status", "--json")),
    (b"LEADMARK", ("leads", "list")),
    (b"LEADMARK", ("leads", "list", "--json")),
])
def test_status_and_leads_list_on_a_damaged_database(project: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                     marker: bytes, args: tuple[str, ...]) -> None:
    damage(project / "seqrun.db", marker)
    db_path = project / "seqrun.db"
    assert run(capsys, *args) == (1, "", f"error: the database {db_path} cannot be read: database disk image is "
                                         f"malformed; {check_hint(db_path)}\n")


# --- secrets --------------------------------------------------------------------------------------


def test_urls_in_an_export_are_redacted(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Rows written before the store redacted them (or by another tool) still leave redacted.
    with sqlite3.connect(project / "seqrun.db") as conn:
        conn.execute("UPDATE action SET content = 'https://crm.example.com/h?api_key=sk_live_1&x=1', "
                     "error_message = 'failed for https://u:p@crm.example.com/h' WHERE id = 1")
        conn.execute("INSERT INTO event (event_id, kind, source, sender_id, lead_id, occurred_at, received_at, data) "
                     "VALUES ('e1', 'accepted', 'webhook', 1, 1, '2026-03-03T10:00:00+00:00', "
                     "'2026-03-03T10:00:00+00:00', '{\"callback\": \"https://x.example/cb?token=t0k\"}')")
    conn.close()
    code, out, _ = run(capsys, "export", "actions")
    assert code == 0 and "sk_live_1" not in out and "u:p@" not in out
    assert "https://crm.example.com/h?api_key=***&x=1" in out and "failed for https://***@crm.example.com/h" in out
    code, out, _ = run(capsys, "export", "actions", "--format", "jsonl")
    assert code == 0 and "sk_live_1" not in out and "https://crm.example.com/h?api_key=***&x=1" in out
    for fmt in ("csv", "jsonl"):
        code, out, _ = run(capsys, "export", "events", "--format", fmt)
        assert code == 0 and "t0k" not in out and "https://x.example/cb?token=***" in out


@pytest.mark.parametrize("dry_run", [(), ("--dry-run",)])
def test_run_on_a_damaged_database_stops_with_the_check_to_run(project: pathlib.Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                dry_run: tuple[str, ...]) -> None:
    from runner.language.loader import load_sequence
    from runner.versions import remember

    seq, _ = load_sequence(str(project / "sequences" / "intro.yaml"))
    assert seq is not None
    open_store(str(project / "seqrun.db"))
    with db.atomic():  # every lead due, on the version in the file
        remember(seq, NOW)
        Enrollment.update(sequence_hash=seq.source_hash, due_at=NOW, state="active").execute()
        Action.delete().execute()  # the fixture's invites, which these leads have not sent yet
    db.close()
    damage(project / "seqrun.db", b"LEADMARK")
    (project / "sandbox-state.db").unlink()  # the fixture's stand-in: the sandbox makes a real one
    db_path = project / "seqrun.db"
    code, out, err = run(capsys, "run", "--once", *dry_run)
    assert (code, out) == (1, "")
    assert err == (f"error: the database {db_path} cannot be read: database disk image is malformed; "
                   f"{check_hint(db_path)}\n")
    with sqlite3.connect(project / "seqrun.db") as conn:  # no lead was charged an attempt for it
        assert conn.execute("SELECT COUNT(*) FROM enrollment WHERE attempt > 0 OR last_error LIKE '%malformed%'"
                            ).fetchone() == (0,)
    conn.close()


def test_an_export_to_a_pipe_writes_into_it_and_leaves_it_a_pipe(project: pathlib.Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # A named pipe, a device (/dev/null, /dev/stdout): written into, never replaced by a file (as
    # root, a rename over /dev/null would replace the device).
    import stat

    fifo = project / "actions.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so that the writer's open does not wait
    try:
        build_db(project / "small.db", leads=3)
        assert run(capsys, "export", "actions", "--db", "small.db", "-o", str(fifo)) == (0, "", "")
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert os.read(reader, 65536).decode("utf-8").count("\r\n") == 4  # the header and 3 actions
    finally:
        os.close(reader)
    assert leftovers(project) == []
