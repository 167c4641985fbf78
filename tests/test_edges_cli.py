"""A new user's path with Edges: the fake on 127.0.0.1, `senders check`, `leads import`, repeated
`run --once` until invites are accepted and first messages go into the right threads; no secret
in any output."""
from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
from tests.providers.edges_harness import CERTAIN, SECRET

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.edges import fake_reads
from runner.providers.edges.driver import EdgesProvider
from runner.providers.edges.fake import EdgesFake
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.http import register_secret
from runner.store import Action, Enrollment, Sender, db, open_store

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday, inside the window

SEQUENCE = """\
version: 1
name: intro
fields:
  full_name: required
calendar:
  timezone: UTC
  hours: ["09:00-17:00"]
limits:
  visit: {daily: 50, min_gap: 1 minute}
  connect: {daily: 20, min_gap: 1 minute}
  message: {daily: 40, min_gap: 1 minute}
exit_when: [replied, blocked]
steps:
  - {id: visit, action: visit}
  - {id: connect, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: thanks, action: message, template: thanks.j2}
  - end: messaged
"""
LEADS = """\
linkedin_profile_url,full_name
https://www.linkedin.com/in/anna-meyer,Anna Meyer
https://www.linkedin.com/in/ben-okafor,Ben Okafor
https://www.linkedin.com/in/chloe-dubois,Chloé Dubois
"""


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[tuple[EdgesFake, FakeHTTPServer, Clock]]:
    clock = Clock(NOW)
    app = EdgesFake(clock=FakeClock(clock), seed=3, api_keys={SECRET}, sandbox=CERTAIN)
    with FakeHTTPServer(app) as server:
        yield app, server, clock


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
            fake: tuple[EdgesFake, FakeHTTPServer, Clock]) -> Iterator[pathlib.Path]:
    app, server, clock = fake
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(f"""\
version: 1
database: seqrun.db
senders:
  - name: alice
    provider: edges
    account_id: 0a92b125-alice
    base_url: {server.url}/v1
    requests_per_minute: 6000
    credentials_env: {{api_key: EDGES_API_KEY}}
""", encoding="utf-8")
    (tmp_path / "sequences" / "intro.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "templates" / "note.j2").write_text("{{ lead.full_name }}, let's connect.\n", encoding="utf-8")
    (tmp_path / "templates" / "thanks.j2").write_text("Thanks, {{ lead.full_name | first_name }}!\n",
                                                      encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.setenv("EDGES_API_KEY", SECRET)
    for module in ("run", "leads", "senders"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    monkeypatch.setitem(PROVIDERS, "edges", lambda **options: EdgesProvider(clock=clock, page_delay=0, **options))
    yield tmp_path
    if not db.is_closed():
        db.close()


def test_senders_check_reports_ready_and_stores_the_own_id(project: pathlib.Path,
                                                           fake: tuple[EdgesFake, FakeHTTPServer, Clock],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    app = fake[0]
    own = fake_reads.me(app, "0a92b125-alice", {}, {}, NOW)["id"]
    assert main(["senders", "check"]) == 0
    assert capsys.readouterr().out == (
        f"alice: ready (edges); credentials ok; account ok; LinkedIn id {own}; "
        "provider limits left: visit 80/80, connect 25/25, message 50/50\n")
    open_store(str(project / "seqrun.db"))
    assert Sender.get(Sender.name == "alice").profile_id == str(own)
    assert main(["senders", "check", "alice", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert (report["ready"], report["credentials"], report["account_status"]) == (True, "ok", "ok")


def test_senders_check_says_what_is_wrong_and_exits_1(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("EDGES_API_KEY", "edg_wrong_key_123456")
    assert main(["senders", "check"]) == 1
    out = capsys.readouterr()
    assert out.out == ("alice: NOT READY (edges): API key rejected (Edges answered 401 UNAUTHORIZED: invalid or "
                       "missing API key); check the key in the environment variable the sender names\n")
    assert out.err == "error: 1 of 1 sender(s) not ready: alice\n"
    monkeypatch.delenv("EDGES_API_KEY")
    assert main(["senders", "check"]) == 1
    assert capsys.readouterr().out == ("alice: NOT READY (edges): sender alice: environment variable EDGES_API_KEY "
                                       "(credentials_env.api_key) is not set; export it, then check again\n")
    assert main(["senders", "check", "zed"]) == 1
    assert capsys.readouterr().err == "error: no sender named zed in seqrun.yaml (defined: alice)\n"


def test_run_once_performs_the_flow_over_http_and_the_ledger_agrees(
        project: pathlib.Path, fake: tuple[EdgesFake, FakeHTTPServer, Clock],
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app, server, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "intro"]) == 0
    for _ in range(40):
        assert main(["run", "--once"]) == 0
        open_store(str(project / "seqrun.db"))
        active = [e for e in Enrollment.select() if e.state == "active"]
        db.close()
        if not active:
            break
        clock.now = max(min(e.due_at for e in active), clock.now + dt.timedelta(minutes=1))
    open_store(str(project / "seqrun.db"))
    assert sorted(e.outcome for e in Enrollment.select()) == ["messaged"] * 3
    done = {a.key: a for a in Action.select().where(Action.status == "done")}
    assert sorted(a.action for a in done.values()) == ["connect"] * 3 + ["message"] * 3 + ["visit"] * 3
    ledger = app.ledger
    assert sorted(e["seqrun_key"] for e in ledger) == sorted(done)  # same actions, none twice
    for entry in ledger:
        if entry["action"] == "message":
            assert done[entry["seqrun_key"]].conversation_id == entry["thread_id"]
    db.close()
    assert main(["--debug", "run", "--once"]) == 0  # debug logs too
    output = capsys.readouterr()
    assert main(["export", "actions", "--format", "jsonl"]) == 0
    assert main(["export", "events", "--format", "jsonl"]) == 0
    exported = capsys.readouterr().out
    assert '"kind": "accepted"' in exported
    everything = output.out + output.err + exported + caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in everything
    stored = b"".join(path.read_bytes() for path in project.iterdir() if path.name.startswith("seqrun.db"))
    assert SECRET.encode() not in stored  # the database, its WAL, its lock file


def test_debug_output_of_a_failing_check_shows_no_secret(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = SECRET[::-1]
    monkeypatch.setenv("EDGES_API_KEY", wrong)
    assert main(["--debug", "senders", "check"]) == 1
    out = capsys.readouterr()
    text = out.out + out.err + caplog.text
    assert "API key rejected" in text and "HTTP Request: POST http://127.0.0.1:" in text  # httpx's own log
    assert wrong not in text and SECRET not in text


def test_a_key_read_with_a_line_break_works_and_never_shows(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                            fake: tuple[EdgesFake, FakeHTTPServer, Clock],
                                                            capsys: pytest.CaptureFixture[str],
                                                            caplog: pytest.LogCaptureFixture) -> None:
    # An env file saved with Windows line endings gives the key a trailing "\r": httpx refuses such
    # a header and its error quoted the key (b'edg_live_…\r'), past the redaction of the exact value.
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EDGES_API_KEY", SECRET + "\r")
    assert main(["senders", "check"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("alice: ready (edges); credentials ok; account ok;")
    assert SECRET not in out.out + out.err + caplog.text


def test_a_key_no_http_header_can_carry_is_a_user_error_that_does_not_show_it(
        project: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = SECRET[:8] + "\u00e9\n" + SECRET[8:]
    monkeypatch.setenv("EDGES_API_KEY", bad)
    assert main(["senders", "check"]) == 1
    out = capsys.readouterr()
    assert out.out == ("alice: NOT READY (edges): sender alice: environment variable EDGES_API_KEY "
                       "(credentials_env.api_key) holds a line break, a control character or a non-ASCII character, "
                       "which an HTTP header cannot carry (the value is not shown); export it, then check again\n")
    assert main(["leads", "import", "leads.csv", "--sequence", "intro"]) == 0
    capsys.readouterr()
    assert main(["run", "--once"]) == 1
    run = capsys.readouterr()
    assert "holds a line break, a control character or a non-ASCII character" in run.err
    text = out.out + out.err + run.out + run.err + caplog.text
    assert SECRET[8:] not in text and SECRET[:8] + "\u00e9" not in text


def test_the_debug_traceback_of_a_bug_shows_no_secret(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        register_secret(SECRET)  # as reading the sender's credentials does
        raise RuntimeError(f"refused {SECRET} at https://crm.example/hook?token=tb-token-77ff")

    monkeypatch.setattr("runner.project.senderscheck.check", broken)
    assert main(["--debug", "senders", "check"]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: refused [redacted] at" in err
    assert SECRET not in err and "tb-token-77ff" not in err


def test_a_429_is_not_retried_before_its_reset_across_runs(project: pathlib.Path,
                                                           fake: tuple[EdgesFake, FakeHTTPServer, Clock],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # Edges' STATUS_429 asks for an hour; seqrun's own backoff would retry after about a minute.
    app, server, clock = fake
    inner = app.handle
    visits: list[dt.datetime] = []

    def handle(method: str, target: str, headers: Any, body: bytes) -> Any:
        if "linkedin-visit-profile" in target:
            visits.append(clock.now)
            if len(visits) == 1:
                refusal = {"error_label": "STATUS_429", "error_scope": "identity", "error_ref": "r-1",
                           "message": "LinkedIn rate limit", "status_code": 429, "params": {}}
                return 429, {"Content-Type": "application/json", "Retry-After": "3600"}, json.dumps(refusal).encode()
        return inner(method, target, headers, body)

    monkeypatch.setattr(app, "handle", handle)
    (project / "one.csv").write_text(LEADS.splitlines()[0] + "\n" + LEADS.splitlines()[1] + "\n", encoding="utf-8")
    assert main(["leads", "import", "one.csv", "--sequence", "intro"]) == 0
    for _ in range(48):  # a cron job running `run --once` every 5 minutes, for up to four hours
        assert main(["run", "--once"]) == 0
        if len(visits) == 2:
            break
        clock.now += dt.timedelta(minutes=5)
    assert len(visits) == 2 and visits[1] - visits[0] >= dt.timedelta(hours=1), visits  # then a paced slot
    open_store(str(project / "seqrun.db"))
    assert [a.status for a in Action.select().where(Action.action == "visit").order_by(Action.id)] == [
        "failed", "done"]


def test_a_429_holds_the_key_in_every_later_run_sharing_the_database(project: pathlib.Path,
                                                                     fake: tuple[EdgesFake, FakeHTTPServer, Clock],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Each `run --once` is a new runner with a new request budget: only the database remembers the
    # reset, and no request of any kind (a poll included) may go out with that key before it.
    app, server, clock = fake
    inner = app.handle
    sent: list[tuple[dt.datetime, str]] = []

    def handle(method: str, target: str, headers: Any, body: bytes) -> Any:
        if not target.startswith("/_fake/"):
            sent.append((clock.now, target))
        if "linkedin-visit-profile" in target and not any("linkedin-visit-profile" in t for _, t in sent[:-1]):
            refusal = {"error_label": "STATUS_429", "error_scope": "identity", "error_ref": "r-1",
                       "message": "LinkedIn rate limit", "status_code": 429, "params": {}}
            return 429, {"Content-Type": "application/json", "Retry-After": "3600"}, json.dumps(refusal).encode()
        return inner(method, target, headers, body)

    monkeypatch.setattr(app, "handle", handle)
    (project / "one.csv").write_text(LEADS.splitlines()[0] + "\n" + LEADS.splitlines()[1] + "\n", encoding="utf-8")
    assert main(["leads", "import", "one.csv", "--sequence", "intro"]) == 0
    for _ in range(12):  # every 5 minutes until the visit's paced slot comes and is refused
        assert main(["run", "--once"]) == 0
        if any("linkedin-visit-profile" in target for _, target in sent):
            break
        clock.now += dt.timedelta(minutes=5)
    refused_at = next(at for at, target in sent if "linkedin-visit-profile" in target)
    reset = refused_at + dt.timedelta(hours=1)
    before = len(sent)
    for minutes in (5, 30, 59):  # new runners before the reset: not one request with the key
        clock.now = refused_at + dt.timedelta(minutes=minutes)
        assert main(["run", "--once"]) == 0
        assert sent[before:] == [], (minutes, sent[before:])
    for _ in range(36):  # after it, the runner proceeds
        clock.now += dt.timedelta(minutes=5)
        assert main(["run", "--once"]) == 0
        if sum("linkedin-visit-profile" in target for _, target in sent) == 2:
            break
    assert sent[before:] and all(at >= reset for at, _ in sent[before:]), sent[before:]
    open_store(str(project / "seqrun.db"))
    assert [a.status for a in Action.select().where(Action.action == "visit").order_by(Action.id)] == [
        "failed", "done"]
