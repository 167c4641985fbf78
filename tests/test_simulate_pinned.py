"""What `seqrun simulate` simulates, pinned: the funnel, outcomes, states, per-day usage, the hourly
queue, the audit, and digests of the ledger (every action and step transition) and of every lead's
final enrollment, for a few sequences and seeds, exactly as they were before the simulator was made
faster (issue 6). Speed-ups must not change any of it.

2,000 leads over 30 days with the shipped daily caps: most leads never get past their first action.
The pins live in tests/fixtures/simulate_pins/; `SEQRUN_WRITE_PINS=1` rewrites them (only when what
is simulated is meant to change, and say so in the commit).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pathlib
from typing import Any

import pytest

from runner.project.config import load_project_config
from runner.project.discovery import load_sequences
from runner.simulate import SimOptions, run_simulation
from runner.store import db, open_store

ROOT = pathlib.Path(__file__).resolve().parent.parent
PINS = ROOT / "tests" / "fixtures" / "simulate_pins"
# (sequence file, seed, start): Mondays and a Wednesday, one with a holiday and a DST change inside
CASES = [
    ("edges-full-flow", 0, "2026-01-05"),
    ("edges-full-flow", 7, "2026-03-18"),
    ("two-senders-ab", 3, "2026-12-14"),
    ("connect-no-note", 11, "2026-10-19"),
]


def _digest(rows: list[Any]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def _snapshot(name: str, seed: int, start: str, tmp_path: pathlib.Path) -> dict[str, Any]:
    path = str(ROOT / "sequences" / f"{name}.yaml")
    seq = next(iter(load_sequences([path]).values()))
    config = load_project_config(path, [seq])
    open_store(str(tmp_path / "sim.db"), durable=False)
    try:
        when = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
        report = run_simulation(seq, config, SimOptions(leads=2000, days=30, seed=seed, start=when))
        actions = db.execute_sql(
            "SELECT l.key, a.step_id, a.action, a.status, a.attempt, a.planned_at, a.performed_at, a.variant, "
            "a.content, a.error_message, s.name FROM action a JOIN lead l ON l.id = a.lead_id "
            "LEFT JOIN sender s ON s.id = a.sender_id ORDER BY l.key, a.id").fetchall()
        transitions = db.execute_sql(
            "SELECT l.key, t.step_id, t.entered_at FROM transition t JOIN lead l ON l.id = t.lead_id "
            "ORDER BY l.key, t.id").fetchall()
        enrollments = db.execute_sql(
            "SELECT l.key, e.step_id, e.state, e.outcome, e.due_at, e.facts, e.attempt, e.finished_at "
            "FROM enrollment e JOIN lead l ON l.id = e.lead_id ORDER BY l.key").fetchall()
    finally:
        db.close()
    per_day: dict[str, int] = {}
    for _, _, action, status, _, _, performed, *_ in actions:
        if status == "done" and performed:
            key = f"{str(performed)[:10]} {action}"
            per_day[key] = per_day.get(key, 0) + 1
    out = report.to_json()
    return {
        "report": out,
        "queue": report.queue,
        "accept_hours": report.accept_hours,
        "actions_done_per_day": dict(sorted(per_day.items())),
        "actions": {"count": len(actions), "sha256": _digest([list(r) for r in actions])},
        "transitions": {"count": len(transitions), "sha256": _digest([list(r) for r in transitions])},
        "enrollments": {"count": len(enrollments), "sha256": _digest([list(r) for r in enrollments])},
    }


@pytest.mark.parametrize(("name", "seed", "start"), CASES, ids=[f"{n}-seed{s}" for n, s, _ in CASES])
def test_simulation_is_pinned(name: str, seed: int, start: str, tmp_path: pathlib.Path) -> None:
    got = json.loads(json.dumps(_snapshot(name, seed, start, tmp_path), default=str))
    pin = PINS / f"{name}-seed{seed}.json"
    if os.environ.get("SEQRUN_WRITE_PINS") == "1":
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(pin.read_text(encoding="utf-8"))
    # Field by field first, so that a difference names what moved.
    for key in ("actions_done_per_day", "actions", "transitions", "enrollments", "accept_hours", "queue"):
        assert got[key] == want[key], key
    for key in want["report"]:
        assert got["report"][key] == want["report"][key], key
    assert got == want
    assert got["report"]["violations"] == []
