"""Several `seqrun serve` processes on one Postgres database share the work: three real processes
against the fake Edges API on 127.0.0.1, webhooks delivered to any of them, one stopped with
SIGTERM half-way. Nothing is performed twice, no delivery answered 2xx is lost, each sender's daily
cap holds across the processes, every lead reaches the end an uninterrupted run reaches, and the
two left take over what the stopped one would have done.

Real time, no warped clock (heartbeats and leases are judged in real seconds by the other
processes): the sequence's window is the next few minutes of a zone where it is mid-day now, so
that pacing spreads the invitations over those minutes."""
from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from tests.backends import POSTGRES, fresh_store_url

from runner.providers.edges.fake import EdgesFake
from runner.providers.fakeserver import FakeHTTPServer

pytestmark = pytest.mark.skipif(not POSTGRES, reason="SEQRUN_TEST_POSTGRES is not set (a postgresql:// URL)")

WAIT = 60.0  # seconds: a bound for a condition that never comes
KEY, SECRET = "several-key", "several-webhook-secret"
SENDERS, LEADS, CAP, SERVES = 3, 30, 30, 3
WINDOW = dt.timedelta(minutes=3)
QUIET_WORLD = {"accept_rate": 0.0, "reply_rate": 0.0, "connected_rate": 0.0, "pending_rate": 0.0,
               "messaged_first_rate": 0.0, "recent_conversation_rate": 0.0, "inaccessible_rate": 0.0}


def mid_day_zone(now: dt.datetime) -> str:
    """A fixed-offset zone where it is between 06:00 and 18:00 now: the window never crosses midnight."""
    offset = max(-12, min(14, 12 - now.hour))  # local hour = utc hour + offset, about noon
    return "Etc/GMT" + ("" if offset == 0 else f"{-offset:+d}")  # Etc/GMT-2 is UTC+2


def write_project(root: pathlib.Path, fake_url: str, now: dt.datetime) -> None:
    from zoneinfo import ZoneInfo

    zone = mid_day_zone(now)
    local = now.astimezone(ZoneInfo(zone)).replace(second=0, microsecond=0)
    hours = f"{local:%H:%M}-{local + WINDOW:%H:%M}"
    lines = ["version: 1", "senders:"]
    for i in range(SENDERS):
        lines += [f"  - name: s{i}", "    provider: edges", f"    account_id: identity-{i}", "    account_type: sales_navigator",
                  f"    timezone: {zone}", f"    base_url: {fake_url}/v1",
                  "    credentials_env: {api_key: SEVERAL_EDGES_KEY, webhook_secret: SEVERAL_EDGES_HOOK}",
                  "    requests_per_minute: 100000", f"    limits: {{connect: {CAP}}}"]
    (root / "seqrun.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "sequences").mkdir()
    (root / "sequences" / "share.yaml").write_text(f"""\
version: 1
name: share
calendar: {{timezone: {zone}, days: [mon, tue, wed, thu, fri, sat, sun], hours: ["{hours}"]}}
steps:
  - {{id: ask, action: connect}}
  - {{id: seen, action: tag, tags: [seen]}}
  - end: invited
""", encoding="utf-8")
    rows = ["linkedin_profile_url,full_name"] + [f"https://www.linkedin.com/in/share-{n:03d},Lead {n}" for n in range(LEADS)]
    (root / "leads.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SEQRUN_DB", "SEQRUN_DASHBOARD_TOKEN")}
    env.update(SEVERAL_EDGES_KEY=KEY, SEVERAL_EDGES_HOOK=SECRET, SEQRUN_DB=url)
    return env


def seqrun(root: pathlib.Path, url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", *args], cwd=root,
                            env=environment(url), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


class Serve:
    """One `seqrun serve` process: its URL once it listens, its stderr kept."""

    def __init__(self, root: pathlib.Path, url: str) -> None:
        self.proc = seqrun(root, url, "serve", "--port", "0", "--interval", "1")
        self.err: list[str] = []
        self.listening = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            found = re.search(r"listening on (http://\S+) ", line)
            if found:
                self.url = found.group(1)
                self.listening.set()

    def wait_listening(self) -> None:
        assert self.listening.wait(WAIT), "".join(self.err)

    def processed(self) -> int:
        """Leads this process moved, from its pass log lines."""
        return sum(int(m.group(1)) for line in self.err for m in [re.search(r"pass: (\d+) lead\(s\) processed", line)] if m)

    def end(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


class Poster:
    """Signed Edges integration webhooks, each to the next process in turn; keeps the event id of
    each delivery answered 2xx."""

    def __init__(self) -> None:
        self.acknowledged: list[str] = []
        self.refused: list[int] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.targets: list[str] = []

    def start(self, targets: list[str]) -> None:
        self.targets = list(targets)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=10.0) as client:
            while not self.stop.is_set():
                n += 1
                url = self.targets[n % len(self.targets)]
                body = json.dumps({"event_type": "integration", "event": "AUTH_SUCCESS", "identity_uid": "identity-0",
                                   "data": {"reason": f"several delivery {n}"}}).encode()
                try:
                    answer = client.post(url + "/webhooks/edges", content=body,
                                         headers={"Content-Type": "application/json", "X-Webhook-Secret": SECRET})
                except httpx.HTTPError:
                    continue  # a process stopping: no 2xx, the provider would deliver it again
                if 200 <= answer.status_code < 300:
                    self.acknowledged.append("edges-webhook:" + hashlib.sha256(body).hexdigest()[:32])
                else:
                    self.refused.append(answer.status_code)
                time.sleep(0.02)  # pacing the sender of webhooks, not waiting for a condition

    def end(self) -> None:
        self.stop.set()
        self._thread.join(WAIT)


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()


def wait_for(condition: collections.abc.Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)  # polling a condition
    return True


@pytest.fixture
def pg_url(tmp_path: pathlib.Path) -> Iterator[str]:
    with fresh_store_url("postgres", tmp_path) as url:
        yield url


def test_three_serves_on_one_postgres_share_the_work_and_one_stopped_is_taken_over(
        tmp_path: pathlib.Path, pg_url: str) -> None:
    fake = EdgesFake(seed=3, api_keys={KEY}, smart_limits=None, sandbox=QUIET_WORLD)
    with FakeHTTPServer(fake) as server:
        server._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        write_project(tmp_path, server.url, dt.datetime.now(dt.UTC))
        imported = seqrun(tmp_path, pg_url, "leads", "import", "leads.csv", "--sequence", "share")
        _, err = imported.communicate(timeout=WAIT)
        assert imported.returncode == 0, err

        serves = [Serve(tmp_path, pg_url) for _ in range(SERVES)]
        poster = Poster()
        try:
            for serve in serves:
                serve.wait_listening()
            poster.start([s.url for s in serves])
            # A third of the invitations made, then the first process is stopped.
            assert wait_for(lambda: len(fake.ledger) >= LEADS // 3, WINDOW.total_seconds() + WAIT), fake.ledger
            stopped, left = serves[0], serves[1:]
            poster.targets = [s.url for s in left]
            before = len(fake.ledger)
            assert stopped.end() == 0, "".join(stopped.err)
            assert stopped.err[-1] == "stopped (SIGTERM)\n"
            stopped_owner = query(pg_url, f"SELECT id FROM runner WHERE pid = {stopped.proc.pid}")[0][0]

            def finished() -> bool:
                (done,) = query(pg_url, "SELECT COUNT(*) FROM enrollment WHERE state = 'done'")[0]
                return done == LEADS

            assert wait_for(finished, WINDOW.total_seconds() + WAIT), "".join(left[0].err)
            poster.end()
            acknowledged = set(poster.acknowledged)
            assert wait_for(lambda: acknowledged <= applied(pg_url), WAIT)
            assert all(s.proc.poll() is None for s in left), [s.err for s in left]  # never found gone
            for serve in left:
                assert serve.end() == 0, "".join(serve.err)
        finally:
            poster.stop.set()
            for serve in serves:
                if serve.proc.poll() is None:
                    serve.proc.kill()
                serve.end()

    ledger = list(fake.ledger)
    # Nothing performed twice: one invitation per lead, each idempotency key once.
    assert len(ledger) == LEADS
    assert len({e["seqrun_key"] for e in ledger}) == LEADS and len({e["lead"] for e in ledger}) == LEADS
    # The two left kept working after the stop, and every lead ended as an uninterrupted run ends it.
    assert len(ledger) > before
    rows = query(pg_url, "SELECT e.state, e.outcome, l.tags, e.lease_owner FROM enrollment e JOIN lead l ON l.id = e.lead_id")
    assert [(state, outcome, "seen" in json.loads(str(tags)), owner) for state, outcome, tags, owner in rows] == [
        ("done", "invited", True, None)] * LEADS
    # Each sender's cap, across the processes: at most CAP invitations of a sender on one day.
    per_day = collections.Counter((e["identity_id"], e["at"][:10]) for e in ledger)
    assert max(per_day.values()) <= CAP
    # Every process did some of the work; the stopped one ended in order and holds nothing.
    assert all(serve.processed() > 0 for serve in serves), [serve.processed() for serve in serves]
    assert query(pg_url, f"SELECT state FROM runner WHERE id = '{stopped_owner}'") == [("stopped",)]
    assert query(pg_url, f"SELECT COUNT(*) FROM enrollment WHERE lease_owner = '{stopped_owner}'") == [(0,)]
    assert len(acknowledged) > 0 and poster.refused == []


def applied(url: str) -> set[str]:
    """Event ids whose inbox row is applied and which are in the ledger."""
    inbox = {eid for (eid,) in query(url, "SELECT event_id FROM inbox WHERE state = 'applied'")}
    ledger = {eid for (eid,) in query(url, "SELECT event_id FROM event")}
    return {str(e) for e in inbox & ledger}
