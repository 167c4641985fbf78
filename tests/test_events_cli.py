"""`seqrun events list|retry` and the dead letters in `seqrun status`."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

from runner.providers.base import ProviderEvent
from runner.store import db, open_store
from runner.store import inbox as store_inbox
from runner.store.inbox import Received
from test_run_cli import Clock, Run, clock, run  # noqa: F401 - the project of test_run_cli: three leads

UTC = dt.timezone.utc
NAIVE_ERROR = ("ValueError: naive datetime datetime.datetime(2026, 3, 2, 9, 0): seqrun stores only "
               "timezone-aware times")


def dead_letter(tmp_path: pathlib.Path, clock: Clock) -> int:
    """One event that can never be applied (its time has no zone), stored dead at once."""
    open_store(str(tmp_path / "seqrun.db"))
    bad = ProviderEvent("wh-9", "replied", dt.datetime(2026, 3, 2, 9, 0), None, "nobody")
    (row_id,) = store_inbox.append([Received(bad, '{"id": "wh-9"}')], source="webhook", provider="salesflow",
                                   received_at=clock.now)
    db.close()
    return row_id


def test_dead_events_are_listed_shown_by_status_and_retried(tmp_path: pathlib.Path, clock: Clock, run: Run) -> None:
    assert run("run", "--once")[0] == 0
    row_id = dead_letter(tmp_path, clock)
    when = clock.now.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    line = f"#{row_id}  dead     replied for nobody  (webhook salesflow, {when}, id wh-9)  attempts 1: {NAIVE_ERROR}"

    assert run("events", "list", "--state", "dead") == (0, line + "\n", "")
    code, out, _ = run("status")
    assert code == 0
    assert f"Dead events (1; `seqrun events retry --all` tries them again)\n  {line}\n" in out
    code, out, _ = run("status", "--json")
    events = json.loads(out)["events"]
    assert (events["dead"], [e["error"] for e in events["latest_dead"]]) == (1, [NAIVE_ERROR])
    assert events["latest_dead"][0]["payload"] == '{"id": "wh-9"}'

    assert run("events", "retry", "--id", "999", "--id", str(row_id)) == (
        1, "", "error: event #999 does not exist (see `seqrun events list --state dead`)\n")
    assert run("events", "retry")[0] == 2  # neither --id nor --all: a usage error
    assert run("events", "retry", "--all") == (
        0, "1 dead event(s) pending again; the next `seqrun run` applies them\n", "")
    assert run("events", "retry", "--id", str(row_id)) == (
        1, "", f"error: event #{row_id} is pending, not dead (see `seqrun events list --state dead`)\n")
    assert run("events", "list", "--state", "dead") == (0, "no events in state dead\n", "")
