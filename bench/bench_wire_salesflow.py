"""Benchmark: `seqrun simulate --wire --provider salesflow` against the plain sandbox simulation.

Run: python bench/bench_wire_salesflow.py [LEADS] [DAYS] [SEQUENCE]
     (or --smoke: 10 leads x 2 days, to prove it works)

Simulates seed 000 (default sequences/connect-with-note.yaml) for LEADS leads (default 2000) over
DAYS days (default 30) twice in this process: through the sandbox provider (the baseline), and
through the real Salesflow driver talking HTTP to the fake Salesflow server on 127.0.0.1, whose
inbox syncs and NEW_CONNECTIONs arrive as webhooks at a real receiver. Prints wall time, HTTP
requests and webhooks, the ratio wire / sandbox, and the seed 000 checks (first messages, markers,
ledger against audit). The two campaigns differ (Salesflow's own limits lower the caps; acceptances
are seen when the webhook or the poll brings them), so only the cost is compared. Not a timed test.
"""
from __future__ import annotations

import datetime as dt
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.project.config import load_project_config  # noqa: E402
from runner.project.discovery import load_sequences  # noqa: E402
from runner.simulate import SimOptions, SimReport, run_simulation  # noqa: E402
from runner.store import open_store  # noqa: E402

START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def once(sequence: str, leads: int, days: int, wire: bool) -> tuple[float, SimReport]:
    seq = next(iter(load_sequences([sequence]).values()))
    config = load_project_config(sequence, [seq])
    options = SimOptions(leads=leads, days=days, start=START, wire=wire, provider="salesflow" if wire else None)
    with tempfile.TemporaryDirectory() as tmp:
        database = open_store(str(pathlib.Path(tmp) / "sim.db"), durable=False)
        started = time.perf_counter()
        try:
            report = run_simulation(seq, config, options)
        finally:
            database.close()
    return time.perf_counter() - started, report


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    smoke = "--smoke" in sys.argv
    leads = int(args[0]) if args else (10 if smoke else 2000)
    days = int(args[1]) if len(args) > 1 else (2 if smoke else 30)
    sequence = args[2] if len(args) > 2 else str(ROOT / "sequences" / "connect-with-note.yaml")
    base_s, _ = once(sequence, leads, days, wire=False)
    wire_s, wired = once(sequence, leads, days, wire=True)
    w = wired.wire or {}
    checks = (w.get("checks") or {}).get("salesflow", {})
    hooks = w.get("webhooks") or {}
    print(f"{leads} leads, {days} days of {pathlib.Path(sequence).name}")
    print(f"  sandbox simulation:            {base_s:8.1f} s")
    print(f"  --wire --provider salesflow:   {wire_s:8.1f} s  ({w.get('requests', 0):,} HTTP requests, "
          f"{hooks.get('received', 0):,} webhooks received)")
    print(f"  ratio wire / sandbox:          {wire_s / max(base_s, 1e-9):8.1f}x")
    for line in checks.get("summary", ()):
        print(f"  {line}")
    print(f"  ledger {w.get('ledger_actions')} = audit {w.get('audit_actions')}, mismatches: "
          f"{len(w.get('mismatches', []))}, violations: {len(wired.violations)}")


if __name__ == "__main__":
    main()
