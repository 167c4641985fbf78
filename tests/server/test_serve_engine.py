"""`seqrun serve`'s engine loop in-process on a virtual clock: a verified acceptance moves its lead to
its first message at once (no clock movement, an hour-long interval), and a reply stops the lead
before any further action."""
from __future__ import annotations

import datetime as dt
import http.server
import json
import pathlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from runner.cli.commands.run import prepare
from runner.cli.main import main
from runner.providers import PROVIDERS
from runner.providers.base import Account, PollResult
from runner.providers.fakeserver import FakeClock
from runner.providers.sandbox import SandboxProvider
from runner.server.lifecycle import Daemon, listen
from runner.store import Action, Enrollment, Lead, db

from .conftest import UTC, Echo

WAIT = 30.0  # seconds: a bound for a condition that never comes, never a pause
SEQRUN_YAML = """\
version: 1
database: seqrun.db
senders:
  - name: alice
    provider: sandbox
    account_id: acc-alice
    credentials_env: {webhook_secret: SEQRUN_TEST_HOOK}
outgoing:
  - {name: crm, url: "http://127.0.0.1:%d/hook", secret_env: SEQRUN_TEST_OUT, events: [lead.invite_sent]}
sandbox: {accept_rate: 1.0, accept_delay_hours: [0.5, 0.5], reply_rate: 0.0, connected_rate: 0.0, pending_rate: 0.0, messaged_first_rate: 0.0,
          recent_conversation_rate: 0.0, inaccessible_rate: 0.0}
"""
SEQUENCE = """\
version: 1
name: hooked
fields: {full_name: optional}
calendar: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: ["00:00-24:00"]}
exit_when: [replied]
steps:
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 3 weeks, on_timeout: gave_up}
  - {id: hello, action: message, template: hello.j2}
  - {id: pause, wait: 2 days}
  - {id: nudge, action: message, template: nudge.j2}
  - end: done
  - {id: gave_up, end: not_accepted}
"""


class HookedSandbox(SandboxProvider, Echo):
    """The sandbox as a provider that tells acceptances and replies only by webhook (`Echo`: a token
    in X-Token): its simulated people accept within half an hour; its polls report nothing."""

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        return PollResult(events=(), synced_until=self._clock())


class Served:
    def __init__(self, daemon: Daemon, clock: FakeClock) -> None:
        self.daemon, self.clock = daemon, clock
        self.thread = threading.Thread(target=daemon.run, daemon=True)

    def until(self, what: Callable[[], Any], *, advance: dt.timedelta | None = None) -> Any:
        """Wait (bounded) until `what()` is true: checked now, then after each engine pass (with the
        clock moved by `advance` and the loop woken before each, when given)."""
        deadline = time.monotonic() + WAIT
        while True:
            seen = self.daemon.passes
            found = what()
            if found:
                return found
            assert time.monotonic() < deadline, f"the condition never came: {_where()}"
            if advance is not None:
                self.clock.advance(advance)
                self.daemon.wake()
            while self.daemon.passes == seen:
                assert time.monotonic() < deadline, f"no engine pass: {_where()}"
                time.sleep(0.005)  # polling a condition, bounded by WAIT


class CRM:
    """A receiver of outgoing events on 127.0.0.1: keeps each event's type and its signature header."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str]] = []
        crm = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                crm.received.append((body["type"], self.headers.get("webhook-signature", "")))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def crm() -> Iterator[CRM]:
    crm = CRM()
    yield crm
    crm.server.shutdown()
    crm.server.server_close()


@pytest.fixture
def served(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, crm: CRM) -> Iterator[Served]:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "hello.j2").write_text("Thanks for connecting!\n", encoding="utf-8")
    (tmp_path / "templates" / "nudge.j2").write_text("Any thoughts?\n", encoding="utf-8")
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML % crm.port, encoding="utf-8")
    (tmp_path / "sequences" / "hooked.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "leads.csv").write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/ann,Ann Example\n",
                                        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.setenv("SEQRUN_TEST_HOOK", "t-1")
    monkeypatch.setenv("SEQRUN_TEST_OUT", "whsec_dGVzdC1zZWNyZXQtZm9yLXNlcnZl")
    clock = FakeClock()
    clock.set(_next_monday_10())  # after the import, which enrolls the lead at the real time
    monkeypatch.setitem(PROVIDERS, "sandbox", lambda **options: HookedSandbox(clock=clock, **options))
    assert main(["leads", "import", "leads.csv", "--sequence", "hooked"]) == 0
    config, sequences, _ = prepare(None, "seqrun serve")
    daemon = Daemon(config, sequences, listen("127.0.0.1", 0), interval=3600.0, clock=clock)
    served = Served(daemon, clock)
    served.thread.start()
    assert daemon.ready.wait(WAIT)
    yield served
    daemon.stop()
    served.thread.join(WAIT)
    daemon.sock.close()
    db.close()


def _next_monday_10() -> dt.datetime:
    now = dt.datetime.now(UTC)
    day = now.date() + dt.timedelta(days=7 - now.weekday())
    return dt.datetime(day.year, day.month, day.day, 10, 0, tzinfo=UTC)


def _where() -> str:
    e = Enrollment.get()
    return f"{actions()} {e.state} {e.step_id} due {e.due_at} error {e.last_error} facts {e.facts}"


def actions() -> list[tuple[str, str, str]]:
    return [(a.step_id, a.action, a.status) for a in Action.select().order_by(Action.id)]


def hook(served: Served, event_id: str, kind: str, lead: str) -> httpx.Response:
    body = json.dumps({"events": [[event_id, kind, lead]]}).encode()
    return httpx.post(served.daemon.url + "/webhooks/sandbox", content=body,
                      headers={"Content-Type": "application/json", "X-Token": "t-1"})


def test_an_acceptance_moves_the_lead_to_its_first_message_at_once(served: Served) -> None:
    served.until(lambda: actions() == [("connect", "connect", "done")], advance=dt.timedelta(minutes=20))
    served.clock.advance(dt.timedelta(hours=1))  # accepted on LinkedIn by now; nothing polls it
    served.until(lambda: True)
    lead = Lead.get().key
    assert Enrollment.get().step_id == "accepted"
    at = served.clock()
    assert hook(served, "hook-1", "accepted", lead).json() == {"status": 200, "reason": "ok"}
    served.until(lambda: len(actions()) == 2)  # no clock movement, an interval of an hour: the wake-up did it
    assert actions() == [("connect", "connect", "done"), ("hello", "message", "done")]
    # the clock's own ticking aside (it runs at the real pace from where the test put it)
    assert Action.get(Action.step_id == "hello").performed_at - at < dt.timedelta(seconds=WAIT)
    assert Enrollment.get().step_id == "pause"


def test_a_reply_stops_the_lead_before_any_further_action(served: Served) -> None:
    served.until(lambda: actions() == [("connect", "connect", "done")], advance=dt.timedelta(minutes=20))
    served.clock.advance(dt.timedelta(hours=1))
    lead = Lead.get().key
    hook(served, "hook-1", "accepted", lead)
    served.until(lambda: len(actions()) == 2)
    assert hook(served, "hook-2", "replied", lead).json() == {"status": 200, "reason": "ok"}
    enrollment = served.until(lambda: (e := Enrollment.get()).state == "done" and e)
    assert enrollment.outcome == "replied"
    passes = served.daemon.passes
    served.until(lambda: served.daemon.passes > passes + 3, advance=dt.timedelta(days=1))
    assert [a[0] for a in actions()] == ["connect", "hello"]  # the nudge never went out


def test_outgoing_events_are_delivered_after_the_pass_that_made_them(served: Served, crm: CRM) -> None:
    served.until(lambda: actions() == [("connect", "connect", "done")], advance=dt.timedelta(minutes=20))
    (event_type, signature), = served.until(lambda: crm.received)  # the pass that sent the invite delivered it
    assert event_type == "lead.invite_sent" and signature.startswith("v1,")


def test_wake_ups_are_coalesced_into_at_most_one_pass_per_gap() -> None:
    from runner.server.lifecycle import WAKE_GAP, next_pass_at

    # Not woken: the pass waits for what is due (the deadline).
    assert next_pass_at(now=100.0, deadline=130.0, woken=False, last_start=99.0) == 130.0
    # Woken long after the last pass started: at once.
    assert next_pass_at(now=100.0, deadline=130.0, woken=True, last_start=90.0) == 100.0
    # Woken again right after a pass started (deliveries keep coming): not before the gap is over,
    # so however many wake-ups come meanwhile, they make one pass.
    assert next_pass_at(now=100.0, deadline=130.0, woken=True, last_start=99.95) == 99.95 + WAKE_GAP
    # Something due sooner than that still goes at its time.
    assert next_pass_at(now=100.0, deadline=100.1, woken=True, last_start=99.95) == 100.1
    assert WAKE_GAP <= 0.25  # a reaction to an acceptance or a reply is never held back longer
