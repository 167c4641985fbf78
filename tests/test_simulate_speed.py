"""What makes `seqrun simulate` fast without changing what it simulates (issue 6): the pieces that
tests/test_simulate_pinned.py does not show on their own.

- a branch condition's result is kept by the plain values it reads, never for a condition that reads
  a mapping, a list or a global;
- the hourly queue read from the usage counts is the number of booked pacing points;
- in-process simulation commits once per claimed batch, not once per lead.
"""
from __future__ import annotations

import datetime as dt
import pathlib
from types import SimpleNamespace
from typing import Any

from runner.engine import steps
from runner.engine.loop import Engine
from runner.language.model import Condition
from runner.project.config import load_project_config
from runner.project.discovery import load_sequences
from runner.simulate import SimOptions, run_simulation
from runner.store import db, open_store
from runner.store import simulation as stored
from runner.store.dashboard import booked_slots

ROOT = pathlib.Path(__file__).resolve().parent.parent
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def _condition(source: str) -> Condition:
    return Condition(source=source, pos=SimpleNamespace(line=1, col=1))  # type: ignore[arg-type]


def _evaluate(source: str, **values: Any) -> bool:
    ctx = SimpleNamespace(seq=SimpleNamespace(path="seq.yaml"))
    return steps.evaluate(ctx, _condition(source), values)  # type: ignore[arg-type]


def test_a_kept_condition_result_follows_the_values_it_reads() -> None:
    source = "conversation_exists and days_since_last_message < 3"
    assert _evaluate(source, conversation_exists=True, days_since_last_message=1.5) is True
    assert _evaluate(source, conversation_exists=True, days_since_last_message=4.0) is False
    assert _evaluate(source, conversation_exists=False, days_since_last_message=None) is False
    assert _evaluate(source, conversation_exists=True, days_since_last_message=1.5) is True
    # 1 and True are equal in Python, but not to `is sameas`: the type is part of the key.
    assert _evaluate("messages_sent is sameas true", messages_sent=True) is True
    assert _evaluate("messages_sent is sameas true", messages_sent=1) is False


def test_conditions_that_read_more_than_plain_values_are_evaluated_every_time() -> None:
    assert steps._memo_key("lead.company_name == 'Acme'", {"lead": {"company_name": "Acme"}}) is None
    assert steps._memo_key("'vip' in tags", {"tags": ["vip"]}) is None
    assert steps._memo_key("connected and range(2)", {"connected": True}) is None  # a global
    assert _evaluate("lead.company_name == 'Acme'", lead={"company_name": "Acme"}) is True
    assert _evaluate("lead.company_name == 'Acme'", lead={"company_name": "Polar"}) is False
    assert steps._memo_key("connected", {"connected": True}) == ("connected", "connected", bool, True)


def _simulate(tmp_path: pathlib.Path, leads: int, days: int) -> None:
    path = str(ROOT / "sequences" / "edges-full-flow.yaml")
    seq = next(iter(load_sequences([path]).values()))
    run_simulation(seq, load_project_config(path, [seq]), SimOptions(leads=leads, days=days, seed=3, start=START))


def test_the_queue_from_the_usage_counts_is_the_number_of_booked_points(tmp_path: pathlib.Path) -> None:
    open_store(str(tmp_path / "sim.db"), durable=False)
    seen: list[tuple[dict[str, int], dict[str, int]]] = []
    original = Engine.tick

    def tick(self: Engine, now: dt.datetime, **kwargs: Any) -> Any:
        report = original(self, now, **kwargs)
        seen.append((stored.reserved_by_action(), booked_slots()))
        return report

    try:
        Engine.tick = tick  # type: ignore[method-assign]
        _simulate(tmp_path, 600, 12)
    finally:
        Engine.tick = original  # type: ignore[method-assign]
        db.close()
    assert len(seen) > 100
    assert any(len(counts) > 1 for counts, _ in seen)  # visits and connects (and more) were booked
    assert all(from_usage == from_points for from_usage, from_points in seen)


def test_in_process_simulation_commits_once_per_claimed_batch(tmp_path: pathlib.Path) -> None:
    open_store(str(tmp_path / "sim.db"), durable=False)
    first_tick: list[str] = []
    original = Engine.tick

    def tick(self: Engine, now: dt.datetime, **kwargs: Any) -> Any:
        if now != START:
            return original(self, now, **kwargs)
        db.connection().set_trace_callback(first_tick.append)
        try:
            return original(self, now, **kwargs)
        finally:
            db.connection().set_trace_callback(None)

    try:
        Engine.tick = tick  # type: ignore[method-assign]
        _simulate(tmp_path, 300, 1)  # the first tick runs all 300 leads: one batch
    finally:
        Engine.tick = original  # type: ignore[method-assign]
        db.close()
    savepoints = sum(1 for s in first_tick if s.startswith("SAVEPOINT"))
    commits = sum(1 for s in first_tick if s.strip().upper() == "COMMIT")
    assert savepoints >= 300  # each lead's own transaction, inside the batch's
    assert commits < 10


def test_in_process_simulation_commits_once_per_many_ticks(tmp_path: pathlib.Path) -> None:
    from runner.simulate import TICKS_PER_COMMIT

    open_store(str(tmp_path / "sim.db"), durable=False)
    statements: list[str] = []
    ticks: list[dt.datetime] = []
    original = Engine.tick

    def tick(self: Engine, now: dt.datetime, **kwargs: Any) -> Any:
        ticks.append(now)
        return original(self, now, **kwargs)

    try:
        Engine.tick = tick  # type: ignore[method-assign]
        db.connection().set_trace_callback(statements.append)
        _simulate(tmp_path, 300, 6)
    finally:
        Engine.tick = original  # type: ignore[method-assign]
        db.connection().set_trace_callback(None)
        db.close()
    commits = sum(1 for s in statements if s.strip().upper() == "COMMIT")
    assert len(ticks) > 2 * TICKS_PER_COMMIT
    # enrolling, the ticks (one transaction per TICKS_PER_COMMIT of them), the report: not one per tick
    assert commits <= len(ticks) // TICKS_PER_COMMIT + 6


def test_the_names_a_branch_reads_are_kept_per_step_object() -> None:
    path = str(ROOT / "sequences" / "edges-full-flow.yaml")
    first = next(iter(load_sequences([path]).values())).step("check")
    again = next(iter(load_sequences([path]).values())).step("check")  # an equal step, another object
    names = {"lead_messaged_first", "conversation_exists", "days_since_last_message", "connected", "invite_pending"}
    assert steps._branch_names(first) == names
    assert steps._branch_names(again) == names
    assert steps._branch_names(first) is steps._branch_names(first)  # kept, not computed again
    assert steps._BRANCH_NAMES[id(again)][0] is again
