"""`seqrun leads import|block|unblock|list` and the import logic below them, on real SQLite files."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from runner.cli.main import main
from runner.leads import block_profiles, import_leads
from runner.project.config import load_config
from runner.project.discovery import load_sequence_by_name
from runner.project.leadsfile import read_leads
from runner.store import Block, Enrollment, Lead, Sender, db, open_store

NOW = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)

CONFIG = """\
version: 1
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
  - {name: bob, provider: sandbox, account_id: acc-bob}
  - {name: carol, provider: sandbox, account_id: acc-carol}
"""
FOUNDERS = """\
version: 1
name: founders-q1
senders: [alice, bob]
fields: {full_name: required, company_name: optional, timezone: optional}
steps:
  - {id: visit, action: visit}
  - wait: 1 day
  - {action: message, template: intro.j2}
"""
OTHER = """\
version: 1
name: other
steps:
  - {action: visit}
"""
HEADER = "linkedin_profile_url,full_name,company_name\n"


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "sequences" / "founders.yaml").write_text(FOUNDERS, encoding="utf-8")
    (tmp_path / "sequences" / "other.yaml").write_text(OTHER, encoding="utf-8")
    (tmp_path / "templates" / "intro.j2").write_text("Hi {{ lead.full_name | first_name }}", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    yield tmp_path
    if not db.is_closed():
        db.close()


def csv(project: pathlib.Path, body: str, name: str = "leads.csv") -> str:
    (project / name).write_text(HEADER + body, encoding="utf-8")
    return name


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def api_import(project: pathlib.Path, path: str, sequence: str, now: dt.datetime, **options: object) -> object:
    """Import through the API with a fixed clock (the CLI reads the real one)."""
    config = load_config(project)
    seq, _ = load_sequence_by_name(sequence, str(project))
    open_store(str(project / "seqrun.db"))
    leads = read_leads(path, required_fields=[f.name for f in seq.fields if f.required])
    return import_leads(leads, seq, config, now=now, **options)  # type: ignore[arg-type]


def reopen(project: pathlib.Path) -> None:
    open_store(str(project / "seqrun.db"))


ROWS = ("https://www.linkedin.com/in/jane-doe,Jane Doe,Acme\n"
        "https://de.linkedin.com/in/Bob-Roe/?trk=x,Bob Roe,\n"
        "https://www.linkedin.com/in/carla-diaz,Carla Díaz,Initech\n")


def test_import_enrolls_every_row(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv(project, ROWS)
    before = dt.datetime.now(dt.UTC)
    code, out, err = run(capsys, "leads", "import", path, "--sequence", "founders-q1")
    after = dt.datetime.now(dt.UTC)
    assert (code, err) == (0, "")
    assert out == "sequence founders-q1: imported 3, updated 0, skipped 0\nsenders: alice 2, bob 1\n"
    reopen(project)
    seq, _ = load_sequence_by_name("founders-q1", str(project))
    leads = {lead.key: lead for lead in Lead.select()}
    assert sorted(leads) == ["bob-roe", "carla-diaz", "jane-doe"]
    assert leads["bob-roe"].profile_url == "https://www.linkedin.com/in/bob-roe"
    assert leads["bob-roe"].fields == {"full_name": "Bob Roe"}
    assert leads["carla-diaz"].fields == {"full_name": "Carla Díaz", "company_name": "Initech"}
    enrollments = list(Enrollment.select().order_by(Enrollment.id))
    assert [(e.lead.key, e.sender.name) for e in enrollments] == [
        ("jane-doe", "alice"), ("bob-roe", "bob"), ("carla-diaz", "alice")]
    for e in enrollments:
        assert (e.sequence, e.state, e.step_id, e.sequence_hash, e.attempt) == (
            "founders-q1", "active", "visit", seq.source_hash, 0)
        assert before <= e.due_at <= after
        assert e.step_entered_at == e.due_at == e.created_at
    assert [s.name for s in Sender.select().order_by(Sender.name)] == ["alice", "bob", "carol"]


def test_nothing_is_written_when_a_row_is_bad(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv(project, ROWS + "htps://x,X,\nhttps://www.linkedin.com/in/dan-ek,,\n"
               "https://www.linkedin.com/in/jane-doe/,Jane again,\n")
    code, out, err = run(capsys, "leads", "import", path, "--sequence", "founders-q1")
    assert (code, out) == (1, "")
    assert err == (
        'leads.csv:5: error: row 5: linkedin_profile_url "htps://x" is not a LinkedIn profile URL '
        '(expected an http(s) URL, got scheme "htps")\n'
        "leads.csv:6: error: row 6: required field full_name is empty\n"
        "leads.csv:7: error: row 7: duplicate of row 2 (https://www.linkedin.com/in/jane-doe)\n"
        "error: nothing imported: 3 of 6 rows rejected; fix them, or use --skip-invalid to import the 3 good rows\n")
    reopen(project)
    assert (Lead.select().count(), Enrollment.select().count()) == (0, 0)


def test_skip_invalid_imports_the_good_rows(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv(project, ROWS + "htps://x,X,\nhttps://www.linkedin.com/in/dan-ek,,\n"
               "https://www.linkedin.com/in/jane-doe/,Jane again,\n")
    code, out, err = run(capsys, "leads", "import", path, "--sequence", "founders-q1", "--skip-invalid")
    assert code == 0
    assert err.splitlines() == [
        'leads.csv:5: error: row 5: linkedin_profile_url "htps://x" is not a LinkedIn profile URL '
        '(expected an http(s) URL, got scheme "htps")',
        "leads.csv:6: error: row 6: required field full_name is empty",
        "leads.csv:7: error: row 7: duplicate of row 2 (https://www.linkedin.com/in/jane-doe)"]
    assert out.splitlines()[0] == ("sequence founders-q1: imported 3, updated 0, skipped 3 (invalid URL: 1, "
                                   "missing required field: 1, duplicate in file: 1)")
    reopen(project)
    assert Enrollment.select().count() == 3
    assert Lead.get(Lead.key == "jane-doe").fields == {"full_name": "Jane Doe", "company_name": "Acme"}


def test_conflicts_with_the_store_name_the_sequence_and_date(project: pathlib.Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    first = csv(project, "https://www.linkedin.com/in/jane-doe,Jane Doe,Acme\n", "first.csv")
    api_import(project, first, "founders-q1", NOW)
    other = csv(project, "https://www.linkedin.com/in/bob-roe,Bob,\n", "other.csv")
    api_import(project, other, "other", NOW)
    Enrollment.update(state="done", outcome="completed", finished_at=LATER).where(
        Enrollment.sequence == "other").execute()
    block_profiles([("carla-diaz", "https://www.linkedin.com/in/carla-diaz")], "asked not to be contacted", NOW)
    db.close()
    path = csv(project, ROWS)
    code, out, err = run(capsys, "leads", "import", path, "--sequence", "other")
    assert code == 1
    assert err == (
        'leads.csv:2: error: row 2: already in active sequence "founders-q1" (since 2026-11-02)\n'
        'leads.csv:3: error: row 3: already went through this sequence (ended "completed" on 2026-11-20)\n'
        "leads.csv:4: error: row 4: blocked since 2026-11-02 (asked not to be contacted)\n"
        "error: nothing imported: 3 of 3 rows rejected; fix them, or use --skip-invalid to import the 0 good rows\n")
    code, out, err = run(capsys, "leads", "import", path, "--sequence", "founders-q1", "--skip-invalid")
    assert err.splitlines() == [
        "leads.csv:2: error: row 2: already enrolled in this sequence (active since 2026-11-02)",
        "leads.csv:4: error: row 4: blocked since 2026-11-02 (asked not to be contacted)"]
    assert out.splitlines() == [
        "sequence founders-q1: imported 0, updated 1, skipped 2 (already in this sequence: 1, blocked: 1)",
        "senders: bob 1"]


def test_reimport_updates_fields_and_keeps_the_sender(project: pathlib.Path) -> None:
    path = csv(project, "https://www.linkedin.com/in/jane-doe,Jane Doe,Acme\n")
    api_import(project, path, "other", NOW, senders=["carol"])
    Enrollment.update(state="done", outcome="completed").execute()
    (project / "again.csv").write_text("linkedin_profile_url,full_name,timezone\n"
                                       "https://www.linkedin.com/in/JANE-DOE,Jane D.,Europe/Berlin\n",
                                       encoding="utf-8")
    # carol is not a sender of founders-q1, so the lead cannot keep her: balanced instead.
    result = api_import(project, "again.csv", "founders-q1", LATER)
    assert (result.imported, result.updated) == (0, 1)  # type: ignore[attr-defined]
    lead = Lead.get(Lead.key == "jane-doe")
    assert lead.fields == {"full_name": "Jane D.", "company_name": "Acme", "timezone": "Europe/Berlin"}
    assert (lead.timezone, lead.created_at, lead.updated_at) == ("Europe/Berlin", NOW, LATER)
    assert Enrollment.get(Enrollment.sequence == "founders-q1").sender.name == "alice"


def test_assignment_is_sticky_then_balanced(project: pathlib.Path) -> None:
    # bob already worked with ben (finished) and has two active leads elsewhere; alice has one.
    csv(project, "https://www.linkedin.com/in/ben-ab,Ben,\n", "ben.csv")
    api_import(project, "ben.csv", "other", NOW, senders=["bob"])
    Enrollment.update(state="done", outcome="completed").execute()
    csv(project, "".join(f"https://www.linkedin.com/in/busy-{i},B,\n" for i in range(2)), "busy.csv")
    api_import(project, "busy.csv", "other", NOW, senders=["bob"])
    csv(project, "https://www.linkedin.com/in/alma-x,A,\n", "alma.csv")
    api_import(project, "alma.csv", "other", NOW, senders=["alice"])
    new = "".join(f"https://www.linkedin.com/in/new-{i},N,\n" for i in range(4))
    csv(project, new + "https://www.linkedin.com/in/ben-ab,Ben,\n", "new.csv")
    result = api_import(project, "new.csv", "founders-q1", LATER)
    got = {e.lead.key: e.sender.name for e in Enrollment.select().where(Enrollment.sequence == "founders-q1")}
    # loads: alice 1, bob 2 -> new-0 alice (2,2) -> new-1 alice by name (3,2) -> new-2 bob (3,3)
    # -> new-3 alice (4,3); ben sticks to bob.
    assert got == {"new-0": "alice", "new-1": "alice", "new-2": "bob", "new-3": "alice", "ben-ab": "bob"}
    assert dict(result.assigned) == {"alice": 3, "bob": 2}  # type: ignore[attr-defined]


def test_paused_senders_get_no_new_leads_but_keep_theirs(project: pathlib.Path) -> None:
    csv(project, "https://www.linkedin.com/in/ben-ab,Ben,\n", "ben.csv")
    api_import(project, "ben.csv", "other", NOW, senders=["bob"])
    Enrollment.update(state="done", outcome="completed").execute()
    Sender.update(status="paused", paused_reason="auth expired").where(Sender.name == "bob").execute()
    csv(project, "https://www.linkedin.com/in/ben-ab,Ben,\nhttps://www.linkedin.com/in/new-1,N,\n", "new.csv")
    api_import(project, "new.csv", "founders-q1", LATER)
    got = {e.lead.key: e.sender.name for e in Enrollment.select().where(Enrollment.sequence == "founders-q1")}
    assert got == {"ben-ab": "bob", "new-1": "alice"}


def test_every_allowed_sender_paused_is_an_error(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    reopen(project)
    from runner.project.discovery import sync_senders
    sync_senders(load_config(project), NOW)
    Sender.update(status="paused", paused_reason="auth expired").execute()
    db.close()
    path = csv(project, ROWS)
    code, _, err = run(capsys, "leads", "import", path, "--sequence", "founders-q1")
    assert (code, err) == (1, "error: every sender that could take these leads is paused: alice (auth expired), "
                              "bob (auth expired); resume one with `seqrun senders resume NAME`\n")


def test_sender_options(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv(project, ROWS)
    code, out, _ = run(capsys, "leads", "import", path, "-s", "founders-q1", "--sender", "bob")
    assert (code, out.splitlines()[1]) == (0, "senders: bob 3")
    assert run(capsys, "leads", "import", path, "-s", "other", "--sender", "dave")[2] == (
        'error: unknown sender "dave" (configured: alice, bob, carol)\n')
    assert run(capsys, "leads", "import", path, "-s", "founders-q1", "--sender", "carol")[2] == (
        'error: sender "carol" is not one of the senders of sequence founders-q1 (alice, bob)\n')


def test_unknown_sequence_lists_the_known_ones(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv(project, ROWS)
    assert run(capsys, "leads", "import", path, "--sequence", "nope") == (
        1, "", 'error: no sequence named "nope" in sequences (known: founders-q1, other)\n')


def test_sequence_with_errors_is_reported(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sequences" / "other.yaml").write_text(OTHER.replace("visit}", "vist}"), encoding="utf-8")
    code, _, err = run(capsys, "leads", "import", csv(project, ROWS), "--sequence", "other")
    assert code == 1
    assert err.splitlines()[-1] == ('error: no valid sequence named "other" in sequences (valid: founders-q1); '
                                    "some files have errors, shown above")
    assert err.startswith("sequences/other.yaml:4:")


def test_unreadable_file_is_fatal_even_with_skip_invalid(project: pathlib.Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    (project / "bad.csv").write_text("name,email\nx,y\n", encoding="utf-8")
    code, _, err = run(capsys, "leads", "import", "bad.csv", "--sequence", "founders-q1", "--skip-invalid")
    assert (code, err) == (1, 'bad.csv:1: error: header: no linkedin_profile_url column (found: "name", "email"); '
                              "name the column holding profile URLs linkedin_profile_url\n"
                              "error: nothing imported: the file cannot be read as a lead list\n")


def test_semicolon_utf16_file_imports(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "LinkedIn Profile URL;Full Name\r\nhttps://www.linkedin.com/in/jürgen-m;Jürgen Müller\r\n"
    (project / "excel.csv").write_bytes(text.encode("utf-16"))
    code, out, _ = run(capsys, "leads", "import", "excel.csv", "--sequence", "founders-q1")
    assert (code, out.splitlines()[0]) == (0, "sequence founders-q1: imported 1, updated 0, skipped 0")
    reopen(project)
    assert Lead.get().profile_url == "https://www.linkedin.com/in/j%C3%BCrgen-m"


def test_db_option_and_env(project: pathlib.Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    path = csv(project, ROWS)
    assert run(capsys, "leads", "import", path, "-s", "founders-q1", "--db", "sqlite:///custom.db")[0] == 0
    monkeypatch.setenv("SEQRUN_DB", str(project / "env.db"))
    assert run(capsys, "leads", "import", path, "-s", "founders-q1")[0] == 0
    assert (project / "custom.db").is_file() and (project / "env.db").is_file()
    assert not (project / "seqrun.db").exists()


def test_block_unblock_and_list(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = csv(project, ROWS)
    run(capsys, "leads", "import", path, "--sequence", "founders-q1")
    assert run(capsys, "leads", "block", "https://www.linkedin.com/in/Jane-Doe/", "--reason", "asked") == (
        0, 'blocked 1 profile\n1 lead in a running sequence will end with outcome "blocked" at the next step\n', "")
    (project / "dnc.csv").write_text("linkedin_profile_url\nhttps://www.linkedin.com/in/jane-doe\n"
                                     "https://www.linkedin.com/in/zed-z\nlinkedin.com/in/zed-z\n", encoding="utf-8")
    assert run(capsys, "leads", "block", "dnc.csv") == (0, "blocked 1 profile (1 already blocked)\n"
                                                          '1 lead in a running sequence will end with outcome '
                                                          '"blocked" at the next step\n', "")
    reopen(project)
    assert {b.key: b.reason for b in Block.select()} == {"jane-doe": "asked", "zed-z": None}
    db.close()
    code, out, _ = run(capsys, "leads", "list", "--json")
    listed = json.loads(out)
    assert [(r["profile_url"], r["sequence"], r["state"], r["step"], r["blocked"]) for r in listed] == [
        ("https://www.linkedin.com/in/jane-doe", "founders-q1", "active", "visit", True),
        ("https://www.linkedin.com/in/bob-roe", "founders-q1", "active", "visit", False),
        ("https://www.linkedin.com/in/carla-diaz", "founders-q1", "active", "visit", False)]
    assert run(capsys, "leads", "unblock", "linkedin.com/in/zed-z") == (
        0, "unblocked https://www.linkedin.com/in/zed-z\n", "")
    assert run(capsys, "leads", "unblock", "linkedin.com/in/zed-z") == (
        1, "", "error: https://www.linkedin.com/in/zed-z is not blocked\n")
    assert run(capsys, "leads", "block", "htps://x") == (
        1, "", 'error: "htps://x" is not a LinkedIn profile URL (expected an http(s) URL, got scheme "htps")\n')


def test_block_csv_with_bad_rows_blocks_nothing(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "dnc.csv").write_text("linkedin_profile_url\nhttps://www.linkedin.com/in/zed-z\nnope\n",
                                     encoding="utf-8")
    assert run(capsys, "leads", "block", "dnc.csv") == (1, "", (
        'dnc.csv:3: error: row 3: linkedin_profile_url "nope" is not a LinkedIn profile URL '
        '(host "nope" is not linkedin.com)\nerror: nothing blocked: fix the rows above first\n'))
    reopen(project)
    assert Block.select().count() == 0


def test_block_csv_ignores_control_characters_outside_the_url(project: pathlib.Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # A do-not-contact list is about profiles: a stray escape in a name must not keep them reachable.
    (project / "dnc.csv").write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/zed-z,Zed\x1b[0m\n",
                                     encoding="utf-8")
    assert run(capsys, "leads", "block", "dnc.csv") == (0, "blocked 1 profile\n", "")
    reopen(project)
    assert [b.key for b in Block.select()] == ["zed-z"]


def test_list_table_and_filters(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv(project, "https://www.linkedin.com/in/jane-doe,Jane Doe,Acme\n", "a.csv")
    api_import(project, "a.csv", "founders-q1", NOW)
    csv(project, "https://www.linkedin.com/in/bob-roe,Bob,\n", "b.csv")
    api_import(project, "b.csv", "other", NOW)
    Enrollment.update(state="paused", paused_reason="lead paused: on the phone").where(
        Enrollment.sequence == "other").execute()
    db.close()
    code, out, _ = run(capsys, "leads", "list")
    assert out.splitlines() == [
        "PROFILE                               NAME      SEQUENCE     STATE   STEP   SENDER  DUE / OUTCOME / REASON",
        "https://www.linkedin.com/in/jane-doe  Jane Doe  founders-q1  active  visit  alice   2026-11-02 09:30 UTC",
        "https://www.linkedin.com/in/bob-roe   Bob       other        paused  start  bob     lead paused: on the phone"]
    out = run(capsys, "leads", "list", "--state", "paused", "--json")[1]
    assert [r["profile_url"] for r in json.loads(out)] == ["https://www.linkedin.com/in/bob-roe"]
    out = run(capsys, "leads", "list", "--sequence", "founders-q1", "--json")[1]
    assert [r["profile_url"] for r in json.loads(out)] == ["https://www.linkedin.com/in/jane-doe"]
    assert run(capsys, "leads", "list", "--sequence", "nope")[1] == "no leads\n"


def test_hundred_thousand_rows_import_in_one_go(project: pathlib.Path) -> None:
    body = "".join(f"https://www.linkedin.com/in/lead-{i},Lead {i},Co\n" for i in range(100_000))
    path = csv(project, body)
    result = api_import(project, path, "founders-q1", NOW)
    assert result.imported == 100_000  # type: ignore[attr-defined]
    assert dict(result.assigned) == {"alice": 50_000, "bob": 50_000}  # type: ignore[attr-defined]
    assert Enrollment.select().where(Enrollment.state == "active").count() == 100_000


def test_a_stray_quote_imports_nothing_even_with_skip_invalid(project: pathlib.Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rows = "".join(f"https://www.linkedin.com/in/lead-{i},Lead {i},Co\n" for i in range(30))
    path = csv(project, ROWS + 'https://www.linkedin.com/in/dan-ek,"Dan Ek,Co\n' + rows)
    for extra in ((), ("--skip-invalid",)):
        code, out, err = run(capsys, "leads", "import", path, "--sequence", "founders-q1", *extra)
        assert (code, out) == (1, "")
        assert err == (
            'leads.csv:5: error: row 5: the quote (") that opens the cell in column full_name is never closed, so '
            "the cell runs to the end of the file and takes in 30 more lines; close the quote, or remove it\n"
            "error: nothing imported: the file cannot be read as a lead list\n")
    reopen(project)
    assert (Lead.select().count(), Enrollment.select().count()) == (0, 0)
