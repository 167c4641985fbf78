"""Outgoing events through the CLI: `seqrun run` delivers them between passes, `seqrun status` shows a
failing subscription, `seqrun outgoing list|retry` lists and retries; no secret in any output or the DB."""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import pathlib
import sqlite3
from collections.abc import Iterator

import pytest
from tests.outgoing_receiver import Receiver, verify

from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.sandbox import SandboxProvider
from runner.simulate import VirtualClock as Clock
from runner.store import db, open_store
from runner.store.outgoing import OutgoingEvent

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 3, 10, 0, tzinfo=UTC)
SECRET = "whsec_" + base64.b64encode(b"the project's outgoing signing key").decode()

SEQRUN_YAML = """\
version: 1
database: seqrun.db
senders:
  - {{name: alice, provider: sandbox, account_id: acc-alice}}
outgoing:
  - name: crm
    url: {url}
    secret_env: SEQRUN_HOOK_SECRET
    events: [lead.sequence_finished]
"""
SEQUENCE = """\
version: 1
name: tagging
steps:
  - {id: tag, action: tag, tags: [imported]}
  - end: tagged
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(*([500] * 10))
    yield r
    r.close()


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> Iterator[Clock]:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML.format(url=receiver.url), encoding="utf-8")
    (tmp_path / "sequences" / "tagging.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "leads.csv").write_text("linkedin_profile_url\nhttps://www.linkedin.com/in/anna-meyer\n",
                                        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.setenv("SEQRUN_HOOK_SECRET", SECRET)
    clock = Clock(NOW)
    for module in ("run", "leads", "senders", "outgoing"):
        monkeypatch.setattr(f"runner.cli.commands.{module}.utc_now", clock)
    monkeypatch.setitem(PROVIDERS, "sandbox", lambda **options: SandboxProvider(clock=clock, **options))
    assert main(["leads", "import", "leads.csv", "--sequence", "tagging"]) == 0
    yield clock
    if not db.is_closed():
        db.close()


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err and SECRET[6:] not in out.out + out.err
    return code, out.out, out.err


def next_attempt(root: pathlib.Path) -> dt.datetime:
    open_store(str(root / "seqrun.db"))
    at = OutgoingEvent.get().next_attempt_at
    db.close()
    return at


def test_a_failing_receiver_shows_in_status_and_failed_events_can_be_retried(
        tmp_path: pathlib.Path, project: Clock, receiver: Receiver, capsys: pytest.CaptureFixture[str]) -> None:
    assert invoke(capsys, "run", "--once")[:2] == (0, "1 lead(s) processed; 2 step(s); 0 event(s); ended: tagged 1\n")
    (first,) = receiver.deliveries
    assert first.json["type"] == "lead.sequence_finished"
    assert verify(SECRET, first.headers, first.body, now=int(NOW.timestamp()))

    code, out, _ = invoke(capsys, "status")
    assert code == 0
    assert ("Outgoing events failing\n"
            "  crm: 0 failed, 1 retrying, 0 waiting, 0 delivered; latest error 2026-03-03 10:00 UTC: HTTP 500 "
            "Internal Server Error\n"
            "  (seqrun outgoing list --state failed; seqrun outgoing retry)\n") in out
    code, out, _ = invoke(capsys, "status", "--json")
    assert json.loads(out)["outgoing"] == {"crm": {
        "counts": {"pending": 1, "delivered": 0, "failed": 0, "retrying": 1},
        "latest_error": "HTTP 500 Internal Server Error", "latest_error_at": "2026-03-03T10:00:00+00:00"}}

    for _ in range(9):  # every later run tries once more, at its time, until the attempts are spent
        project.now = next_attempt(tmp_path)
        assert invoke(capsys, "run", "--once")[0] == 0
    assert len(receiver.deliveries) == 10
    event_id = first.headers["webhook-id"]
    code, out, _ = invoke(capsys, "outgoing", "list", "--state", "failed")
    assert out.splitlines()[1] == (f"{event_id:<36}  lead.sequence_finished  crm           failed        10  "
                                   f"2026-03-03 10:00  -                 HTTP 500 Internal Server Error "
                                   "(gave up after 10 attempts)")
    code, out, _ = invoke(capsys, "status")
    assert "  crm: 1 failed, 0 retrying, 0 waiting, 0 delivered; latest error " in out

    assert invoke(capsys, "outgoing", "retry") == (
        1, "", "error: say which failed events to try again: --all, --subscription NAME or --event ID\n")
    assert invoke(capsys, "outgoing", "retry", "--subscription", "chat") == (
        1, "", "error: no outgoing subscription named 'chat' has events (known: crm)\n")
    assert invoke(capsys, "outgoing", "retry", "--event", "evt_nope") == (
        1, "", "error: no failed outgoing event with id 'evt_nope' (see seqrun outgoing list --state failed)\n")
    assert invoke(capsys, "outgoing", "retry", "--subscription", "crm") == (
        0, "1 failed event(s) will be tried again at the next pass of seqrun run or serve\n", "")
    assert invoke(capsys, "run", "--once")[0] == 0  # the receiver answers 200 now
    code, out, _ = invoke(capsys, "outgoing", "list", "--json")
    (listed,) = json.loads(out)
    assert (listed["state"], listed["attempts"], listed["body"]) == ("delivered", 1, receiver.deliveries[-1].json)
    assert "Outgoing events failing" not in invoke(capsys, "status")[1]
    with contextlib.closing(sqlite3.connect(tmp_path / "seqrun.db")) as connection:
        dumped = "\n".join(connection.iterdump())
    assert SECRET not in dumped and SECRET[6:] not in dumped


def test_run_refuses_to_start_without_the_secret(tmp_path: pathlib.Path, project: Clock, receiver: Receiver,
                                                 capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEQRUN_HOOK_SECRET")
    assert invoke(capsys, "run", "--once") == (
        1, "", "error: outgoing crm: environment variable SEQRUN_HOOK_SECRET (secret_env) is not set\n")
    open_store(str(tmp_path / "seqrun.db"))
    assert db.execute_sql("SELECT state, step_id FROM enrollment").fetchall() == [("active", "tag")]
    assert receiver.deliveries == []
