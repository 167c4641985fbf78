"""Benchmark: importing 100k leads from CSV, against raw sqlite3 executemany of the same rows.

Run: python bench/bench_import.py [ROWS]   (or --smoke: 200 rows, to prove it works)

Builds a throwaway project (one sandbox sender pair, one sequence) in a temporary directory, writes
a CSV of ROWS leads (default 100,000), then times

- reading and checking the CSV (`runner.project.leadsfile.read_leads`),
- the full import (`runner.leads.import_leads`: store checks, sender assignment, lead upserts and
  enrollments, one transaction, durable SQLite settings),
- the baseline: plain sqlite3 `executemany` of the same lead and enrollment rows into tables of
  the same shape (same indexes, WAL, synchronous=FULL, one transaction), with no checks at all.

It prints the figures and the ratio import / baseline; it is not a timed test.
"""
from __future__ import annotations

import datetime as dt
import json
import pathlib
import sqlite3
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.leads import import_leads  # noqa: E402
from runner.project.config import load_config  # noqa: E402
from runner.project.discovery import load_sequence_by_name  # noqa: E402
from runner.project.leadsfile import read_leads  # noqa: E402
from runner.store import open_store  # noqa: E402
from runner.store.fields import to_db_time  # noqa: E402
from runner.store.migrations import MIGRATIONS  # noqa: E402

CONFIG = """\
version: 1
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
  - {name: bob, provider: sandbox, account_id: acc-bob}
"""
SEQUENCE = """\
version: 1
name: bench
fields: {full_name: required, company_name: optional}
steps:
  - {id: visit, action: visit}
  - wait: 1 day
  - {action: connect}
"""
NOW = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)


def make_project(directory: pathlib.Path, rows: int) -> pathlib.Path:
    (directory / "sequences").mkdir()
    (directory / "seqrun.yaml").write_text(CONFIG, encoding="utf-8")
    (directory / "sequences" / "bench.yaml").write_text(SEQUENCE, encoding="utf-8")
    csv_path = directory / "leads.csv"
    with open(csv_path, "w", encoding="utf-8") as fh:
        fh.write("LinkedIn Profile URL,Full Name,Company Name,Title\n")
        for i in range(rows):
            # Every fourth URL takes the slow path (country host, upper case, tracking query).
            url = (f"https://de.linkedin.com/in/Lead-{i}/?trk=x" if i % 4 == 0
                   else f"https://www.linkedin.com/in/lead-{i}")
            fh.write(f'{url},Lead {i},"Company {i % 997}, Inc.",Founder\n')
    return csv_path


def timed(function):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def run_import(directory: pathlib.Path, csv_path: pathlib.Path) -> tuple[float, float, int]:
    config = load_config(directory)
    seq, _ = load_sequence_by_name("bench", str(directory))
    required = [f.name for f in seq.fields if f.required]
    leads, read_s = timed(lambda: read_leads(str(csv_path), required_fields=required))
    assert not leads.diagnostics, leads.diagnostics[:3]
    open_store(str(directory / "seqrun.db"))
    result, import_s = timed(lambda: import_leads(leads, seq, config, now=NOW))
    return read_s, import_s, result.imported


def run_baseline(directory: pathlib.Path, rows: int) -> float:
    """The same rows into tables of the same shape with sqlite3 executemany: the floor to compare with."""
    conn = sqlite3.connect(directory / "baseline.db", isolation_level=None)
    for pragma in ("journal_mode=wal", "synchronous=full", "foreign_keys=1"):
        conn.execute(f"PRAGMA {pragma}")
    for statement in MIGRATIONS[0][2]:
        conn.execute(statement)
    stamp = to_db_time(NOW)
    leads = [(f"lead-{i}", f"https://www.linkedin.com/in/lead-{i}",
              json.dumps({"full_name": f"Lead {i}", "company_name": f"Company {i % 997}, Inc.", "title": "Founder"}),
              stamp, stamp) for i in range(rows)]
    start = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("INSERT INTO lead (key, profile_url, fields, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                     leads)
    enrollments = [(lead_id, "bench", "hash", "visit", "active", stamp, stamp, stamp, stamp)
                   for (lead_id,) in conn.execute("SELECT id FROM lead")]
    conn.executemany("INSERT INTO enrollment (lead_id, sequence, sequence_hash, step_id, state, due_at, "
                     "step_entered_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", enrollments)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    rows = int(args[0]) if args else (200 if "--smoke" in sys.argv else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        directory = pathlib.Path(tmp)
        csv_path = make_project(directory, rows)
        read_s, import_s, imported = run_import(directory, csv_path)
        baseline_s = run_baseline(directory, rows)
    assert imported == rows, imported
    print(f"rows:                     {rows:,}")
    print(f"read + check CSV:         {read_s:6.2f} s  ({rows / read_s:,.0f} rows/s)")
    print(f"import into the store:    {import_s:6.2f} s  ({rows / import_s:,.0f} rows/s)")
    print(f"read + import:            {read_s + import_s:6.2f} s")
    print(f"baseline (raw executemany, no checks): {baseline_s:6.2f} s")
    print(f"ratio import / baseline:  {import_s / baseline_s:6.1f}x")


if __name__ == "__main__":
    main()
