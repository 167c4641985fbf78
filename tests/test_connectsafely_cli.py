"""A new user's path with ConnectSafely: the fake on 127.0.0.1, `senders check`, `leads import`,
repeated `run --once` until invites with a note are accepted and the thank-you goes into the
conversation each note opened; `status` shows the weekly invitation quota as a week; no secret in
any output."""
from __future__ import annotations

import datetime as dt
import json
import logging
import pathlib
import types
from collections.abc import Iterator

import pytest
from tests.providers.connectsafely_harness import ACCOUNT, CERTAIN, SECRET

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.connectsafely.driver import ConnectSafelyProvider
from runner.providers.connectsafely.fake import ConnectSafelyFake
from runner.providers.fakeserver import FakeClock, FakeHTTPServer
from runner.store import Action, Enrollment, Sender, db, open_store

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=UTC)  # a Tuesday, inside the window

SEQUENCE = """\
version: 1
name: noted
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
  - {id: connect, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: thanks, action: message, template: {with_note: thanks.j2, without_note: intro.j2}}
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
def fake() -> Iterator[tuple[ConnectSafelyFake, FakeHTTPServer, Clock]]:
    clock = Clock(NOW)
    app = ConnectSafelyFake(clock=FakeClock(clock), seed=3, api_keys={SECRET}, accounts={ACCOUNT}, budgets=None,
                            sandbox=dict(CERTAIN, reply_rate=0.0))
    with FakeHTTPServer(app) as server:
        yield app, server, clock


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
            fake: tuple[ConnectSafelyFake, FakeHTTPServer, Clock]) -> Iterator[pathlib.Path]:
    app, server, clock = fake
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(f"""\
version: 1
database: seqrun.db
senders:
  - name: alice
    provider: connectsafely
    account_id: {ACCOUNT}
    base_url: {server.url}/linkedin
    credentials_env: {{api_key: CONNECTSAFELY_API_KEY}}
""", encoding="utf-8")
    (tmp_path / "sequences" / "noted.yaml").write_text(SEQUENCE, encoding="utf-8")
    for name, text in (("note.j2", "{{ lead.full_name }}, let's connect."),
                       ("thanks.j2", "Thanks for accepting, {{ lead.full_name | first_name }}!"),
                       ("intro.j2", "Hi {{ lead.full_name | first_name }}!")):
        (tmp_path / "templates" / name).write_text(text + "\n", encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.setenv("CONNECTSAFELY_API_KEY", SECRET)
    for module in ("run", "leads", "senders"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    # The driver on the test's clock; its request budget (which sleeps for real) is left out.
    monkeypatch.setitem(PROVIDERS, "connectsafely", lambda **options: ConnectSafelyProvider(
        clock=clock, **{k: v for k, v in options.items() if k != "budget"}))
    yield tmp_path
    if not db.is_closed():
        db.close()


def test_senders_check_reports_the_account_and_its_weekly_quota(project: pathlib.Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    own = ConnectSafelyFake.own_public_id(ACCOUNT)
    assert main(["senders", "check"]) == 0
    assert capsys.readouterr().out == (
        f"alice: ready (connectsafely); credentials ok; account available; LinkedIn id {own}; "
        "provider limits left: connect 90/90 a week, new_conversation 150/150\n")
    open_store(str(project / "seqrun.db"))
    assert Sender.get(Sender.name == "alice").profile_id == own


def test_senders_check_says_what_is_wrong_and_exits_1(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                      fake: tuple[ConnectSafelyFake, FakeHTTPServer, Clock],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake[0].world.expire_auth(ACCOUNT)
    assert main(["senders", "check"]) == 1
    out = capsys.readouterr()
    assert out.out == (f"alice: NOT READY (connectsafely): the LinkedIn session of account {ACCOUNT} needs "
                       "re-authentication (ConnectSafely says status ERROR): reconnect it in ConnectSafely's "
                       "dashboard, then `seqrun senders resume alice`\n")
    assert out.err == "error: 1 of 1 sender(s) not ready: alice\n"
    monkeypatch.setenv("CONNECTSAFELY_API_KEY", "cs_wrong_key_1234567")
    assert main(["senders", "check"]) == 1
    assert capsys.readouterr().out == (
        "alice: NOT READY (connectsafely): API key rejected (ConnectSafely answered 401: Unauthorized: invalid or "
        "missing API key); check the key in the environment variable the sender names\n")


def test_run_once_sends_the_thank_you_into_the_invites_conversation_and_status_shows_the_week(
        project: pathlib.Path, fake: tuple[ConnectSafelyFake, FakeHTTPServer, Clock],
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app, server, clock = fake
    assert main(["leads", "import", "leads.csv", "--sequence", "noted"]) == 0
    for _ in range(60):  # as cron would: every hour at most, sooner when a lead is due
        assert main(["run", "--once"]) == 0
        open_store(str(project / "seqrun.db"))
        active = [e for e in Enrollment.select() if e.state == "active"]
        db.close()
        if not active:
            break
        due = min(e.due_at for e in active)
        clock.now = max(min(due, clock.now + dt.timedelta(hours=1)), clock.now + dt.timedelta(minutes=1))
    open_store(str(project / "seqrun.db"))
    assert sorted(e.outcome for e in Enrollment.select()) == ["messaged"] * 3
    done = list(Action.select().where(Action.status == "done"))
    assert sorted(a.action for a in done) == ["connect"] * 3 + ["message"] * 3
    messages = {a.content: a for a in done if a.action == "message"}
    sends = [e for e in app.ledger if e["action"] == "message"]
    assert len(sends) == 3
    for entry in sends:  # each thank-you went into the conversation its invite's note opened
        assert entry["first_after_noted_invite"] and not entry["new_conversation"]
        assert entry["conversation_urn"] == entry["thread_urn"]
    assert sorted(a.conversation_id for a in messages.values()) == sorted(e["thread_urn"] for e in sends)
    assert sorted(messages) == ["Thanks for accepting, Anna!", "Thanks for accepting, Ben!",
                                "Thanks for accepting, Chloé!"]
    db.close()

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return clock.now.astimezone(tz)

    monkeypatch.setattr("runner.cli.commands.status.dt", types.SimpleNamespace(datetime=Frozen, timezone=dt.timezone, UTC=dt.UTC))
    capsys.readouterr()
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    today = lines.index("Today per sender (used / limit)")
    assert lines[today + 2] == ("               this week (from Mon 2026-03-02 00:00 UTC): connect 3/90 "
                                "(connectsafely quota, resets Mon 2026-03-09 00:00 UTC)")
    assert main(["status", "--json"]) == 0
    (usage,) = json.loads(capsys.readouterr().out)["usage_today"]
    assert usage["quotas"] == [{"provider": "connectsafely", "action": "connect", "period": "week", "limit": 90,
                                "used": 3, "since": "2026-03-02T00:00:00+00:00",
                                "resets_at": "2026-03-09T00:00:00+00:00"}]
    assert main(["export", "actions", "--format", "jsonl"]) == 0
    everything = capsys.readouterr().out + caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in everything
