"""`seqrun serve` as a user starts it: a real process on 127.0.0.1 (port 0), health, readiness,
metrics and JSON logs, stopped by SIGTERM or Ctrl-C (exit 0), a runner
with a heartbeat meanwhile; refusals before it starts."""
from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from runner.cli.main import main

WAIT = 60.0  # seconds: a bound for a condition that never comes, never a pause
SEQRUN_YAML = """\
version: 1
database: seqrun.db
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
"""
SEQUENCE = """\
version: 1
name: plain
steps:
  - {id: visit, action: visit}
  - end: visited
"""


class Serve:
    """`seqrun serve ARGS` in its own process; its stderr read line by line as it comes."""

    def __init__(self, root: pathlib.Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("SEQRUN_DB", "SEQRUN_DASHBOARD_TOKEN")}
        self.proc = subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", "serve",
                                      "--port", "0", *args], cwd=root, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.url = re.search(r"listening on (http://\S+) ", self.wait_for("listening on")).group(1)  # type: ignore[union-attr]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            self.lines.put(line)

    def wait_for(self, text: str) -> str:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no {text!r} on stderr; got {''.join(self.err)!r}")
            if text in line:
                return line

    def ready(self) -> httpx.Response:
        deadline = time.monotonic() + WAIT
        while True:
            answer = httpx.get(self.url + "/readyz")
            if answer.status_code == 200 or time.monotonic() > deadline:
                return answer
            time.sleep(0.05)  # polling a condition, bounded by WAIT

    def stop(self, signum: int) -> tuple[int, str]:
        self.proc.send_signal(signum)
        self.proc.wait(timeout=WAIT)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.reader.join(WAIT)  # it has read stderr to its end
        self.proc.stderr.close()
        return self.proc.returncode, "".join(self.err)


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    (tmp_path / "sequences" / "plain.yaml").write_text(SEQUENCE, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    monkeypatch.delenv("SEQRUN_DASHBOARD_TOKEN", raising=False)
    yield tmp_path


def test_serve_answers_health_readiness_metrics_and_stops_on_sigterm_with_exit_0(project: pathlib.Path) -> None:
    serve = Serve(project, "--log-format", "json")
    try:
        assert httpx.get(serve.url + "/healthz").json() == {"alive": True}
        ready = serve.ready()
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {
            "database": "ok", "migrations": "ok", "senders": "ok"}})
        assert "seqrun_queue_depth 0.0" in httpx.get(serve.url + "/metrics").text
        refused = httpx.post(serve.url + "/webhooks/sandbox", json={})
        assert (refused.status_code, refused.json()) == (404, {"status": 404, "reason": "no webhooks are taken for sandbox"})
        serve.wait_for('"verdict": "rejected"')
        page = httpx.get(serve.url + "/webhooks")  # the dashboard, mounted at /, shows the delivery log
        assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert "Webhook deliveries" in page.text and "no webhooks are taken for sandbox" in page.text
    finally:
        code, err = serve.stop(signal.SIGTERM)
    assert code == 0
    assert err.splitlines()[-1] == "stopped (SIGTERM)"
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    refusal = next(r for r in logged if r.get("verdict") == "rejected")
    assert refusal["message"] == "webhook for unknown refused (404): no webhooks are taken for sandbox"
    assert (refusal["level"], refusal["logger"], refusal["provider"], refusal["status"]) == (
        "warning", "runner.server.receiving", "unknown", 404)


def runners(root: pathlib.Path) -> list[tuple[str, int, str]]:
    with sqlite3.connect(root / "seqrun.db") as con:
        found = con.execute("SELECT command, pid, state FROM runner ORDER BY started_at").fetchall()
    con.close()
    return found


def test_serve_is_a_runner_with_a_heartbeat_and_ctrl_c_stops_it_with_exit_0(project: pathlib.Path) -> None:
    serve = Serve(project)
    serve.ready()
    running = runners(project)  # registered as `run` registers: its leases are judged by its heartbeat
    code, err = serve.stop(signal.SIGINT)
    assert running == [("serve", serve.proc.pid, "running")]
    assert code == 0  # a deliberate stop of a daemon is a success
    assert err.splitlines()[-1] == "stopped (SIGINT)"
    assert runners(project) == [("serve", serve.proc.pid, "stopped")]


def test_serve_refuses_a_non_loopback_address_without_the_dashboard_token(
        project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--host", "0.0.0.0"]) == 1
    assert capsys.readouterr().err == (
        "error: --host 0.0.0.0 is reachable from other machines: set SEQRUN_DASHBOARD_TOKEN (the dashboard's login "
        "secret) first, or listen on 127.0.0.1 behind a reverse proxy (see docs/serve.md)\n")


def test_serve_says_when_its_port_is_taken(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
