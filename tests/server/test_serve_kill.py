"""The kill -9 proof in CI: `seqrun serve` as a real process, SIGKILLed 30 times at random moments while
it acts through the fake Edges API and webhooks are delivered to it, then run to the end: nothing
performed twice, no step lost, no delivery answered 2xx lost (bench/bench_serve_kill.py runs it;
its 1,000-kill run is the long version)."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

BENCH = pathlib.Path(__file__).resolve().parents[2] / "bench" / "bench_serve_kill.py"


def test_thirty_kills_lose_nothing_and_do_nothing_twice() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--kills", "30", "--leads", "150", "--senders", "3",
                           "--seed", "7", "--warp", "4000", "--days", "0.05", "--json"], capture_output=True, text=True, timeout=600)
    assert (done.returncode, done.stderr) == (0, "")
    counts = json.loads(done.stdout.splitlines()[0])
    assert counts["kills"] == 30
    assert counts["deliveries_acknowledged"] > 0 and counts["ledger_actions"] > 0  # it did work while killed
    assert {name: counts[name] for name in (
        "duplicate_keys", "leads_invited_twice", "unfinished_leads", "leads_never_invited",
        "audit_invites_missing_in_ledger", "deliveries_lost")} == {
        "duplicate_keys": 0, "leads_invited_twice": 0, "unfinished_leads": 0, "leads_never_invited": 0,
        "audit_invites_missing_in_ledger": 0, "deliveries_lost": 0}
    assert counts["ledger_actions"] == counts["leads"]  # one invitation per lead, every lead
