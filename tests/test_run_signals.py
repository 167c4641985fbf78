"""`seqrun run` as a real process: stopped with SIGINT/SIGTERM, or killed, in the middle of a call.

The call is a `notify` step POSTing to an HTTP server on 127.0.0.1 that this test runs: the server
holds the first request until the test lets it go, so every signal lands at a known point without
any sleeping. Afterwards the database and the deliveries the server counted say whether anything
was lost or done twice.
"""
from __future__ import annotations

import http.server
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from runner.cli.main import main
from runner.store import Action, Enrollment, db, open_store

WAIT = 60.0  # seconds: a bound for a test that fails, never a sleep

SEQRUN_YAML = """\
version: 1
database: seqrun.db
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
"""
SEQUENCE = """\
version: 1
name: hooked
fields: {full_name: optional}
steps:
  - {id: crm, action: notify, url: "http://127.0.0.1:%d/hook"}
  - end: posted
"""
LEADS = """\
linkedin_profile_url,full_name
https://www.linkedin.com/in/anna-meyer,Anna Meyer
https://www.linkedin.com/in/ben-okafor,Ben Okafor
https://www.linkedin.com/in/chloe-dubois,Chloe Dubois
"""


class Hook:
    """A CRM on 127.0.0.1: counts deliveries (Idempotency-Key, lead) and holds the first one."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[str, str]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.deliveries.append((self.headers["Idempotency-Key"], body["lead"]["linkedin_profile_url"]))
                if len(hook.deliveries) == 1:
                    hook.arrived.set()
                    hook.release.wait(WAIT)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keys_for(self, url: str) -> list[str]:
        return [key for key, lead in self.deliveries if lead == url]


class Child:
    """`seqrun ARGS` in its own process, its stderr read line by line as it comes."""

    def __init__(self, root: pathlib.Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "SEQRUN_DB"}
        self.proc = subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", *args],
                                     cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)

    def wait_for(self, text: str) -> None:
        while True:
            try:
                line = self.lines.get(timeout=WAIT)
            except queue.Empty:
                pytest.fail(f"no {text!r} on stderr; got {''.join(self.err)!r}")
            if text in line:
                return

    def finish(self) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self.proc.wait(timeout=WAIT)
        self.reader.join(WAIT)
        self.proc.stdout.close()
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return self.proc.returncode, out, "".join(self.err)


@pytest.fixture
def hook() -> Iterator[Hook]:
    hook = Hook()
    yield hook
    hook.release.set()
    hook.server.shutdown()
    hook.server.server_close()


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, hook: Hook) -> Iterator[pathlib.Path]:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    (tmp_path / "sequences" / "hooked.yaml").write_text(SEQUENCE % hook.port, encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    assert main(["leads", "import", "leads.csv", "--sequence", "hooked"]) == 0
    db.close()
    yield tmp_path
    if not db.is_closed():
        db.close()


ANNA = "https://www.linkedin.com/in/anna-meyer"


def state(root: pathlib.Path) -> tuple[dict[str, tuple[str, str | None]], list[tuple[str, str]]]:
    """(lead url -> (state, lease owner)), [(action status, key)] from the database."""
    open_store(str(root / "seqrun.db"))
    try:
        leads = {e.lead.profile_url: (e.state, e.lease_owner) for e in Enrollment.select()}
        actions = [(a.status, a.key) for a in Action.select().order_by(Action.id)]
    finally:
        db.close()
    return leads, actions


@pytest.mark.parametrize("signum, args, code", [
    (signal.SIGINT, ["--once"], 130),
    (signal.SIGTERM, ["--interval", "5"], 0),
], ids=["ctrl-c-once", "sigterm-loop"])
def test_a_signal_during_a_call_finishes_the_call_commits_it_and_stops(
        project: pathlib.Path, hook: Hook, capsys: pytest.CaptureFixture[str],
        signum: int, args: list[str], code: int) -> None:
    child = Child(project, "run", *args)
    assert hook.arrived.wait(WAIT)
    child.proc.send_signal(signum)
    child.wait_for("stopping after the call in flight")
    hook.release.set()
    returncode, out, err = child.finish()
    assert returncode == code, err
    assert err.endswith("Interrupted.\n" if signum == signal.SIGINT else "stopped (SIGTERM)\n")

    leads, actions = state(project)
    # The call in flight was completed and recorded; no other lead was started, and none is left
    # leased to the stopped process: all of them are due to the next run at once.
    assert [status for status, _ in actions] == ["done"]
    assert sorted(leads.values()) == [("active", None), ("active", None), ("done", None)]
    capsys.readouterr()
    assert main(["run", "--once"]) == 0
    assert capsys.readouterr().out == "2 lead(s) processed; 4 step(s); 0 event(s); ended: posted 2\n"
    assert len(hook.deliveries) == 3 == len({key for key, _ in hook.deliveries})


def test_sigterm_between_passes_stops_the_loop_at_once(project: pathlib.Path, hook: Hook) -> None:
    hook.release.set()
    child = Child(project, "run", "--interval", "3600")
    child.wait_for("running every 3600 s; Ctrl-C to stop")
    child.proc.send_signal(signal.SIGTERM)
    returncode, out, err = child.finish()
    assert (returncode, err.splitlines()[-1]) == (0, "stopped (SIGTERM)")
    assert out.endswith("3 lead(s) processed; 6 step(s); 0 event(s); ended: posted 3\n")


def test_a_second_ctrl_c_stops_at_once_and_the_next_run_retries_with_the_same_key(
        project: pathlib.Path, hook: Hook, capsys: pytest.CaptureFixture[str]) -> None:
    child = Child(project, "run", "--once")
    assert hook.arrived.wait(WAIT)
    child.proc.send_signal(signal.SIGINT)
    child.wait_for("stopping after the call in flight")
    child.proc.send_signal(signal.SIGINT)
    returncode, _, err = child.finish()
    assert (returncode, err.splitlines()[-1]) == (130, "Interrupted.")
    hook.release.set()  # the CRM got the POST; whether it answered, the dead process never knew

    leads, actions = state(project)
    assert [status for status, _ in actions] == ["in_flight"]  # recorded before it was performed
    (key,) = [k for _, k in actions]
    assert main(["run", "--once"]) == 0
    assert "3 lead(s) processed" in capsys.readouterr().out
    # Anna's POST went again under the same Idempotency-Key, so the CRM can drop the repeat.
    assert hook.keys_for(ANNA) == [key, key]
    assert len(hook.deliveries) == 4
    leads, actions = state(project)
    assert sorted(status for status, _ in actions) == ["done", "done", "done"]
    assert {s for s, _ in leads.values()} == {"done"}


def test_after_a_kill_the_next_run_takes_every_lead_back_at_once(
        project: pathlib.Path, hook: Hook, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    child = Child(project, "run", "--once")
    assert hook.arrived.wait(WAIT)
    child.proc.kill()
    assert child.finish()[0] == -signal.SIGKILL
    hook.release.set()

    leads, _ = state(project)
    owners = {owner for _, owner in leads.values()}
    assert len(owners) == 1 and str(child.proc.pid) in owners.pop()  # the whole batch, leased by the dead run
    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"  3 lead(s) by {os.uname().nodename} pid {child.proc.pid} (gone; the next run takes its leads back), until " in out

    assert main(["run", "--once"]) == 0
    assert capsys.readouterr().out == "3 lead(s) processed; 6 step(s); 0 event(s); ended: posted 3\n"
    # Anna's action was in flight (reconciled first); the two leads the dead run had not reached yet
    # come back with it instead of waiting for its lease to run out.
    assert "1 action(s) were left in flight by an earlier run; reconciling them first" in caplog.text
    assert f"took back 2 lead(s) leased by a run that is gone ({os.uname().nodename}:{child.proc.pid}:" in caplog.text
    leads, actions = state(project)
    assert {v for v in leads.values()} == {("done", None)}
    assert len(hook.keys_for(ANNA)) == 2 and len(set(hook.keys_for(ANNA))) == 1
    assert len(hook.deliveries) == 4
