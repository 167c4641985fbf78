"""Several `seqrun run` processes on one SQLite database: allowed, and correct (serialised by the
write lock; claims and charges are guarded writes). Real processes, a CRM on 127.0.0.1 that holds a
call until the test lets it go; bounded waits, no sleeps."""
from __future__ import annotations

import os
import pathlib
import re

import pytest

from runner.cli.main import main
from test_run_signals import WAIT, Child, Hook, hook, project, state  # noqa: F401 - fixtures

HOST = os.uname().nodename


def test_a_second_run_beside_a_working_one_takes_none_of_its_leads(
        project: pathlib.Path, hook: Hook, capsys: pytest.CaptureFixture[str]) -> None:
    first = Child(project, "run", "--once")
    assert hook.arrived.wait(WAIT)  # the first run is in its first call, its batch leased
    second = Child(project, "run", "--once")
    assert second.finish() == (0, "0 lead(s) processed; 0 step(s); 0 event(s)\n", "")

    capsys.readouterr()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^Runners\n  run   {re.escape(HOST)} pid {first.proc.pid}, heartbeat \d+ s ago, started "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d UTC\n\n", out, re.M), out
    # Moving leads under a working run is refused, naming it.
    code = main(["leads", "migrate", "--sequence", "hooked"])
    err = capsys.readouterr().err
    assert code == 1
    assert re.fullmatch(rf'error: "seqrun run" is working on {re.escape(str(project / "seqrun.db"))} \({re.escape(HOST)} pid {first.proc.pid}, '
                        r'heartbeat \d+ s ago\); stop it before moving leads\n', err), err

    hook.release.set()
    assert first.finish()[:2] == (0, "3 lead(s) processed; 6 step(s); 0 event(s); ended: posted 3\n")
    leads, actions = state(project)
    assert sorted(status for status, _ in actions) == ["done", "done", "done"]
    assert len(hook.deliveries) == 3 == len({key for key, _ in hook.deliveries})
    capsys.readouterr()
    assert main(["status"]) == 0
    assert "Runners" not in capsys.readouterr().out  # both stopped in order
    assert main(["leads", "migrate", "--sequence", "hooked"]) == 0


def test_two_runs_started_at_once_do_the_due_work_once(project: pathlib.Path, hook: Hook) -> None:
    hook.release.set()
    runs = [Child(project, "run", "--once"), Child(project, "run", "--once")]
    results = [run.finish() for run in runs]
    assert [code for code, _, _ in results] == [0, 0], results
    processed = [int(re.match(r"(\d+) lead\(s\) processed", out).group(1)) for _, out, _ in results]  # type: ignore[union-attr]
    assert sum(processed) == 3
    leads, actions = state(project)
    assert {s for s, _ in leads.values()} == {"done"}
    assert sorted(status for status, _ in actions) == ["done", "done", "done"]
    assert len(hook.deliveries) == 3 == len({url for _, url in hook.deliveries})
