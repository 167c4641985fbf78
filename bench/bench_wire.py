"""Benchmark: `seqrun simulate --wire --provider edges` against the plain sandbox simulation.

Run: python bench/bench_wire.py [LEADS] [DAYS]   (or --smoke: 10 leads x 2 days, to prove it works)

Simulates sequences/edges-full-flow.yaml for LEADS leads (default 500) over DAYS days (default 30)
twice in this process: through the sandbox provider (the baseline), and through the real Edges
driver talking HTTP to the fake Edges server on 127.0.0.1. Prints wall time, HTTP requests,
requests per second, the ratio wire / sandbox, and whether both runs gave the same campaign and the
fake's ledger agreed with the audit log. It is not a timed test.
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

SEQUENCE = str(ROOT / "sequences" / "edges-full-flow.yaml")
START = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)


def once(leads: int, days: int, wire: bool) -> tuple[float, SimReport]:
    seq = next(iter(load_sequences([SEQUENCE]).values()))
    config = load_project_config(SEQUENCE, [seq])
    options = SimOptions(leads=leads, days=days, start=START, wire=wire, provider="edges" if wire else None)
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
    leads = int(args[0]) if args else (10 if smoke else 500)
    days = int(args[1]) if len(args) > 1 else (2 if smoke else 30)
    base_s, base = once(leads, days, wire=False)
    wire_s, wired = once(leads, days, wire=True)
    w = wired.wire or {}
    same = all(getattr(base, k) == getattr(wired, k) for k in ("steps", "outcomes", "states", "usage"))
    print(f"{leads} leads, {days} days of edges-full-flow")
    print(f"  sandbox simulation:          {base_s:8.1f} s")
    print(f"  --wire --provider edges:     {wire_s:8.1f} s  ({w.get('requests', 0):,} HTTP requests, "
          f"{w.get('requests', 0) / max(wire_s, 1e-9):,.0f} requests/s)")
    print(f"  ratio wire / sandbox:        {wire_s / max(base_s, 1e-9):8.1f}x")
    print(f"  same campaign: {same}; ledger {w.get('ledger_actions')} = audit {w.get('audit_actions')}, "
          f"mismatches: {len(w.get('mismatches', []))}")


if __name__ == "__main__":
    main()
