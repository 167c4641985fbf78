"""Every benchmark in bench/ still runs: each is started with `--smoke` (a tiny run of the same
code) so that a refactoring that breaks one fails here, not months later in front of a reader."""
from __future__ import annotations

import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parent.parent / "bench"
#: A line each benchmark prints at the end of a good run.
LAST_WORDS = {
    "bench_engine.py": "ratio full path / raw:",
    "bench_import.py": "ratio import / baseline:",
    "bench_pacing.py": "worst quota use",
    "bench_runners.py": "double claims: 0, cap overshoots: 0, duplicate keys: 0",
    "bench_sandbox.py": "ratio scan / heap per poll:",
    "bench_serve_kill.py": "duplicates: 0, lost steps: 0, lost deliveries: 0",
    "bench_serve_load.py": "deliveries lost: 0",
    "bench_simulate.py": "audit violations: 0",
    "bench_validate.py": "validate_paths, first run",
    "bench_wire.py": "mismatches: 0",
    "bench_wire_salesflow.py": "mismatches: 0, violations: 0",
}


def test_every_benchmark_runs_in_smoke_mode() -> None:
    # Every script found runs, listed or not: a benchmark added without its line here still has
    # to start, finish and stay quiet on stderr.
    scripts = sorted(p.name for p in BENCH.glob("bench_*.py"))
    assert set(LAST_WORDS) <= set(scripts)  # a renamed benchmark keeps its check
    # Started together: they are small, and most of their time is the interpreter starting.
    running = {name: subprocess.Popen([sys.executable, str(BENCH / name), "--smoke"], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for name in scripts}
    for name, process in running.items():
        out, err = process.communicate(timeout=120)
        assert (name, process.returncode, err) == (name, 0, "")
        assert LAST_WORDS.get(name, "") in out, out
