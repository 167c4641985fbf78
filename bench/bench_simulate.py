"""Benchmark: `seqrun simulate` of LEADS leads over DAYS days (default 100,000 x 30).

Run: python bench/bench_simulate.py [LEADS] [DAYS] [SEQUENCE]   (or --smoke: 200 leads x 3 days)

Times the whole simulation (generating and enrolling the leads, every tick on the virtual clock,
the report and the audit) and reads the process's peak memory. The baseline measured in the same
run is generating and enrolling the same leads into an empty store without simulating anything:
the floor any simulation pays. Goals for 100k x 30 days: at most 15 s, under 300 MB peak. Also
prints where the time went: up to the end of the first tick (setting up, enrolling, and every
lead's first run), the later ticks, and the report and audit.
Prints figures; it is not a timed test.
"""
from __future__ import annotations

import datetime as dt
import os
import pathlib
import resource
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.project.config import load_project_config  # noqa: E402
from runner.project.discovery import load_sequences  # noqa: E402
from runner.simulate import SimOptions, enroll, run_simulation, synthetic_leads  # noqa: E402
from runner.store import Sender, db, open_store  # noqa: E402

START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    smoke = "--smoke" in sys.argv
    leads = int(args[0]) if args else (200 if smoke else 100_000)
    days = int(args[1]) if len(args) > 1 else (3 if smoke else 30)
    path = args[2] if len(args) > 2 else str(ROOT / "sequences" / "edges-full-flow.yaml")
    seq = next(iter(load_sequences([path]).values()))
    config = load_project_config(path, [seq])
    with tempfile.TemporaryDirectory() as tmp:
        open_store(str(pathlib.Path(tmp) / "baseline.db"), durable=False)
        sender = Sender.create(name="s", provider="sandbox", account_id="s", created_at=START)
        start = time.perf_counter()
        enroll(seq, synthetic_leads(seq, leads, 0), [sender.id], START)
        baseline = time.perf_counter() - start
        db.close()
        open_store(str(pathlib.Path(tmp) / "sim.db"), durable=False)
        parts = _Parts()
        start, cpu_start = time.perf_counter(), _cpu()
        report = run_simulation(seq, config, SimOptions(leads=leads, days=days, seed=0, start=START),
                                progress=parts.tick_done)
        elapsed, cpu = time.perf_counter() - start, _cpu() - cpu_start
        db.close()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"sequence {seq.name}: {leads:,} leads x {days} days, {report.ticks:,} ticks, {report.transitions:,} steps")
    print(f"simulation:            {elapsed:7.1f} s   (goal <= 15 s for 100k x 30 days); CPU {cpu:.1f} s")
    print(f"baseline (enroll only): {baseline:6.1f} s   ratio {elapsed / baseline:5.1f}x")
    if parts.first:  # (a simulation of 0 days has no tick)
        first, last = parts.first - start, parts.last - start
        print(f"  where it went: setting up, enrolling and the first tick (every lead's first run) {first:.1f} s, "
              f"the other {report.ticks - 1:,} ticks {last - first:.1f} s, the report and the audit {elapsed - last:.1f} s")
    print(f"peak memory:           {peak_mb:7.0f} MB  (target < 300 MB)")
    print(f"outcomes: {report.outcomes}; audit violations: {len(report.violations)}; load average {os.getloadavg()[0]:.1f}")


class _Parts:
    """When the first and the last tick ended, from the simulation's progress calls (one after every
    tick, then 1.0 once the report and the audit are done)."""

    def __init__(self) -> None:
        self.first = self.last = 0.0

    def tick_done(self, done: float) -> None:
        if done < 1.0:
            self.last = time.perf_counter()
            self.first = self.first or self.last


def _cpu() -> float:
    """CPU seconds (user and system) of this process so far: on a loaded machine, steadier than the clock."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
