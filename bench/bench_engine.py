"""Benchmarks of the interpreter: tick cost over a large store, and lead-steps per second.

Run: python bench/bench_engine.py [ENROLLED] [STEPS_LEADS]   (or --smoke: a tiny run that proves it works)

1. Tick cost with ENROLLED (default 1,000,000) enrollments in the store, none due and then 1,000
   due, against the floor: a raw sqlite3 query for the due ids through the same partial index.
   Target: an idle tick in at most 5 ms.
2. Lead-steps per second through the full path (Engine.tick: claim, load, step handler, sandbox
   provider call, outbox row, limit charge, commit; SQLite file with synchronous=FULL) against raw
   sqlite3 doing one UPDATE and one COMMIT per step on a table of the same shape with the same
   pragmas. Target: at least 25 % of the raw rate.

Prints figures and ratios measured in the same run; it is not a timed test.
"""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.engine.loop import Engine  # noqa: E402
from runner.language.loader import load_sequence  # noqa: E402
from runner.project.config import Config, SenderConfig  # noqa: E402
from runner.project.discovery import build_runtime, sync_senders  # noqa: E402
from runner.providers.sandbox import SandboxProvider  # noqa: E402
from runner.store import db, open_store  # noqa: E402
from runner.store.fields import to_db_time  # noqa: E402
from runner.store.migrations import MIGRATIONS  # noqa: E402

NOW = dt.datetime(2026, 11, 2, 10, 0, tzinfo=dt.UTC)  # a Monday, inside the window
CLOCK = [NOW]  # the sandbox's clock; bench_steps moves it with the engine's

# Steps that each do real work: tags (store only) and visits (provider call, outbox, limit charge).
SEQUENCE = """\
version: 1
name: bench
calendar: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: ["00:00-24:00"]}
limits: {visit: 100000}
steps:
  - {id: first, action: tag, tags: [a]}
  - {action: visit}
  - {action: tag, tags: [b]}
  - {action: tag, tags: [c]}
  - {action: tag, tags: [d]}
  - wait: 30 days
"""


def make_engine(directory: pathlib.Path, durable: bool) -> tuple[Engine, object]:
    (directory / "sequences").mkdir(exist_ok=True)
    path = directory / "sequences" / "bench.yaml"
    path.write_text(SEQUENCE, encoding="utf-8")
    seq, diags = load_sequence(str(path))
    assert seq is not None, diags
    open_store(str(directory / "bench.db"), durable=durable)
    sender = SenderConfig(name="s1", provider="sandbox", account_id="acc-1", account_type="sales_navigator",
                          limits={"visit": 100000})
    config = Config(path=None, root=str(directory), database=None, senders=(sender,))
    rows = sync_senders(config, NOW)
    provider = SandboxProvider(clock=lambda: CLOCK[0], inaccessible_rate=0.0)
    runtime = build_runtime(config, {seq.name: seq}, rows, provider_for=lambda sc, cred: provider,
                            notifier=lambda *a: None, poll_every=dt.timedelta(days=365))
    return Engine(runtime), seq


def fill(n: int, seq: object, due: dt.datetime) -> None:
    stamp, due_s = to_db_time(NOW), to_db_time(due)
    sender_id = db.execute_sql("SELECT id FROM sender").fetchone()[0]
    with db.atomic():
        cursor = db.cursor()
        cursor.executemany("INSERT INTO lead (key, profile_url, fields, created_at, updated_at) VALUES (?, ?, '{}', ?, ?)",
                           ((f"lead-{i}", f"https://www.linkedin.com/in/lead-{i}", stamp, stamp) for i in range(n)))
        cursor.execute(
            "INSERT INTO enrollment (lead_id, sequence, sequence_hash, sender_id, step_id, state, due_at, step_entered_at, "
            "facts, created_at, updated_at) SELECT id, 'bench', ?, ?, 'first', 'active', ?, ?, '{}', ?, ? FROM lead",
            (seq.source_hash, sender_id, due_s, stamp, stamp, stamp))  # type: ignore[attr-defined]


def timed(fn, repeat: int = 1) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def bench_tick(enrolled: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        engine, seq = make_engine(directory, durable=True)
        later = NOW + dt.timedelta(days=30)
        start = time.perf_counter()
        fill(enrolled, seq, later)
        print(f"filled {enrolled:,} enrollments in {time.perf_counter() - start:.1f} s")
        engine.tick(NOW)  # first poll of the sender happens here, outside the measurement
        idle = timed(lambda: engine.tick(NOW), repeat=50)
        raw = sqlite3.connect(directory / "bench.db")
        query = "SELECT id FROM enrollment WHERE state = 'active' AND due_at <= ? ORDER BY due_at LIMIT 500"
        raw_idle = timed(lambda: raw.execute(query, (to_db_time(NOW),)).fetchall(), repeat=50)
        print(f"idle tick, {enrolled:,} enrolled, 0 due:     {idle * 1000:8.3f} ms   (target <= 5 ms)")
        print(f"raw indexed due-query, 0 due:              {raw_idle * 1000:8.3f} ms   ratio {idle / raw_idle:6.1f}x")
        db.execute_sql("UPDATE enrollment SET due_at = ? WHERE id <= 1000", (to_db_time(NOW),))
        busy = timed(lambda: engine.tick(NOW))
        raw_due = timed(lambda: raw.execute(query, (to_db_time(NOW),)).fetchall())
        print(f"tick with 1,000 due (full processing):     {busy * 1000:8.1f} ms   ({busy / 1000 * 1e6:.0f} us per lead)")
        print(f"raw indexed due-query, 1,000 due (after):  {raw_due * 1000:8.3f} ms")
        raw.close()
        db.close()


def bench_steps(leads: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        engine, seq = make_engine(directory, durable=True)
        fill(leads, seq, NOW)
        steps, now, horizon = 0, NOW, NOW + dt.timedelta(days=1)
        start = time.perf_counter()
        # Visits are paced across the day, so the clock jumps from one due moment to the next, as
        # in `simulate`; every lead ends parked in its 30-day wait.
        while now < horizon:
            CLOCK[0] = now
            steps += engine.tick(now).transitions
            nxt = engine.next_due()
            if nxt is None:
                break
            now = max(nxt, now + dt.timedelta(microseconds=1))
        engine_s = time.perf_counter() - start
        db.close()
        raw = sqlite3.connect(directory / "raw.db", isolation_level=None)
        for pragma in ("journal_mode=wal", "synchronous=full", "foreign_keys=1"):
            raw.execute(f"PRAGMA {pragma}")
        for statement in MIGRATIONS[0][2]:
            raw.execute(statement)
        stamp = to_db_time(NOW)
        raw.executemany("INSERT INTO lead (key, profile_url, created_at, updated_at) VALUES (?, ?, ?, ?)",
                        ((f"l{i}", "u", stamp, stamp) for i in range(leads)))
        raw.execute("INSERT INTO enrollment (lead_id, sequence, sequence_hash, step_id, due_at, created_at, updated_at) "
                    "SELECT id, 'bench', 'h', 'first', ?, ?, ? FROM lead", (stamp, stamp, stamp))
        ids = [r[0] for r in raw.execute("SELECT id FROM enrollment")]
        per_lead = max(1, steps // leads)
        start = time.perf_counter()
        for enrollment_id in ids:
            for step in range(per_lead):
                raw.execute("BEGIN")
                raw.execute("UPDATE enrollment SET step_id = ?, facts = ?, updated_at = ? WHERE id = ?",
                            (f"s{step}", json.dumps({"entry": step}), stamp, enrollment_id))
                raw.execute("COMMIT")
        raw_s = time.perf_counter() - start
        raw.close()
    engine_rate, raw_rate = steps / engine_s, len(ids) * per_lead / raw_s
    print(f"full path: {steps:,} lead-steps for {leads:,} leads in {engine_s:.2f} s = {engine_rate:,.0f} steps/s")
    print(f"raw sqlite3, one commit per update:        {raw_rate:,.0f} steps/s")
    print(f"ratio full path / raw: {engine_rate / raw_rate:.0%}   (target >= 25%)")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    smoke = len(args) < len(sys.argv) - 1
    enrolled = int(args[0]) if args else (500 if smoke else 1_000_000)
    step_leads = int(args[1]) if len(args) > 1 else (20 if smoke else 2_000)
    bench_tick(enrolled)
    print()
    bench_steps(step_leads)
