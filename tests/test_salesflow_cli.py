"""A new user's path with Salesflow: the fake on 127.0.0.1, `senders check` with the account's own
limits, and `run --once`, which says at start that Salesflow senders need `seqrun serve` for replies,
keeps its caps at Salesflow's, invites, and never sends a message without a finished inbox sync."""
from __future__ import annotations

import datetime as dt
import json
import pathlib
from collections.abc import Iterator

import pytest
from tests.providers.salesflow_harness import CERTAIN, SECRET

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.providers.salesflow.driver import SalesflowProvider
from runner.providers.salesflow.fake import SalesflowFake
from runner.providers.salesflow.fake_shapes import own_profile_id
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
  connect: {daily: 20, min_gap: 1 minute}
  message: {daily: 40, min_gap: 1 minute}
exit_when: [replied, blocked]
steps:
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: intro, action: message, template: intro.j2}
  - end: messaged
"""
LEADS = """\
linkedin_profile_url,full_name
https://www.linkedin.com/in/anna-meyer,Anna Meyer
https://www.linkedin.com/in/ben-okafor,Ben Okafor
"""
WARNING = ("warning: sender alice acts through salesflow, which delivers replies (its inbox syncs answer only by "
           "webhook); `seqrun run` receives no webhooks, so their messages wait (never sent without a finished "
           "inbox sync) and replies go unseen: run them with `seqrun serve`, which receives the webhooks\n")
LOWERED = ("sender alice: at most 15 connect a day, the provider account's own limit (seqrun.yaml allows 20)\n"
           "sender alice: at most 20 message a day, the provider account's own limit (seqrun.yaml allows 40)\n")


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def fake() -> Iterator[tuple[SalesflowFake, FakeHTTPServer, Clock]]:
    clock = Clock(NOW)
    app = SalesflowFake(clock=FakeClock(clock), seed=3, api_keys={SECRET}, sandbox=CERTAIN, auto_pump=False)
    with FakeHTTPServer(app) as server:
        yield app, server, clock
    app.close()


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
            fake: tuple[SalesflowFake, FakeHTTPServer, Clock]) -> Iterator[pathlib.Path]:
    app, server, clock = fake
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(f"""\
version: 1
database: seqrun.db
senders:
  - name: alice
    provider: salesflow
    account_id: "1001"
    base_url: {server.url}
    requests_per_minute: 6000
    limits: {{connect: 20, message: 40}}
    credentials_env: {{api_key: SALESFLOW_API_KEY}}
""", encoding="utf-8")
    (tmp_path / "sequences" / "intro.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "templates" / "intro.j2").write_text("Hi {{ lead.full_name | first_name }}!\n", encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.setenv("SALESFLOW_API_KEY", SECRET)
    for module in ("run", "leads", "senders"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    monkeypatch.setitem(PROVIDERS, "salesflow",
                        lambda **options: SalesflowProvider(clock=clock, sync_wait=0.05, **options))
    yield tmp_path
    if not db.is_closed():
        db.close()


def test_senders_check_shows_the_accounts_limits_and_what_seqrun_keeps_below(
        project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["senders", "check"]) == 0
    assert capsys.readouterr().out == (
        f"alice: ready (salesflow); credentials ok; account ok; LinkedIn id {own_profile_id('1001')}; "
        "provider limits a day: connect 15, message 20, inmail 20, withdraw 40; "
        "seqrun keeps below them: connect 20 -> 15, message 40 -> 20\n")
    open_store(str(project / "seqrun.db"))
    assert Sender.get(Sender.name == "alice").profile_id == own_profile_id("1001")
    db.close()
    assert main(["senders", "check", "--json"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["lowered"] == {"connect": [20, 15], "message": [40, 20]}


def test_run_says_salesflow_needs_serve_and_never_messages_without_a_sync(
        project: pathlib.Path, fake: tuple[SalesflowFake, FakeHTTPServer, Clock],
        capsys: pytest.CaptureFixture[str]) -> None:
    app, server, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "intro"]) == 0
    capsys.readouterr()
    assert main(["run", "--once"]) == 0
    err = capsys.readouterr().err
    assert err.startswith(WARNING + LOWERED)
    end = clock.now + dt.timedelta(days=1)
    while clock.now < end:  # invites go out (paced in the window), are accepted two hours later; intros wait
        open_store(str(project / "seqrun.db"))
        due = min(e.due_at for e in Enrollment.select() if e.state == "active")
        db.close()
        clock.now = min(max(due, clock.now + dt.timedelta(minutes=1)), clock.now + dt.timedelta(minutes=30))
        assert main(["run", "--once"]) == 0
    open_store(str(project / "seqrun.db"))
    assert sorted(a.action for a in Action.select().where(Action.status == "done")) == ["connect", "connect"]
    assert [e.step_id for e in Enrollment.select()] == ["intro", "intro"]
    assert {e.state for e in Enrollment.select()} == {"active"}
    assert [e["action"] for e in app.ledger] == ["connect", "connect"]
    assert app.requests["sync"] == 0  # nothing asked for pages nobody would receive
