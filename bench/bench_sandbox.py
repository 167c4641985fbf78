"""Benchmark: the sandbox provider at scale, against a poll that scans every lead.

Run: python bench/bench_sandbox.py [LEADS]   (or --smoke: 200 leads over 3 days, to prove it works)

On a virtual clock, invites LEADS leads (default 100,000; half with a note) from one account, then
polls every 30 virtual minutes for 30 days with a 2-minute overlap, sending one message to every
lead whose acceptance a poll reports (so replies get scheduled too). It times

- the invites and the 30 days of polling, in memory and with a state file (`state_path`),
- reopening the state file in a fresh instance (the first call reads every row),
- the baseline: the same poll windows answered by scanning every lead's invites, as a sandbox
  without the event heap would have to; it runs over one virtual day and is compared per poll.

It prints the figures and the ratio scan / heap per poll; it is not a timed test.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.providers.base import Account, LeadRef, ProviderError  # noqa: E402
from runner.providers.sandbox import SandboxProvider  # noqa: E402

START = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
POLL_EVERY = dt.timedelta(minutes=30)
OVERLAP = dt.timedelta(minutes=2)
ACCOUNT = Account(sender="alice", account_id="acc-alice")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def invite_all(provider: SandboxProvider, leads: int) -> None:
    for n in range(leads):
        with contextlib.suppress(ProviderError):  # already connected, pending from before, inaccessible
            provider.connect(ACCOUNT, LeadRef(f"lead-{n}", ""), note="Hi" if n % 2 else None, key=f"c{n}")


def poll_for(provider: SandboxProvider, clock: Clock, days: int) -> tuple[int, int, int]:
    polls = accepted = replied = 0
    cursor: dt.datetime | None = None
    end = clock.now + dt.timedelta(days=days)
    while clock.now < end:
        clock.now += POLL_EVERY
        result = provider.poll_events(ACCOUNT, since=cursor - OVERLAP if cursor else None)
        polls += 1
        for event in result.events:
            if event.kind == "accepted":
                accepted += 1
                provider.send_message(ACCOUNT, LeadRef(str(event.lead_key), ""), text="Thanks for connecting",
                                      conversation_id=event.conversation_id, subject=None, inmail=False,
                                      key=f"m-{event.lead_key}")
            elif event.kind == "replied":
                replied += 1
        cursor = result.synced_until
    return polls, accepted, replied


def run(leads: int, state_path: str | None, days: int = 30) -> tuple[float, float, tuple[int, int, int]]:
    clock = Clock()
    with SandboxProvider(seed=1, clock=clock, state_path=state_path) as provider:
        started = time.perf_counter()
        invite_all(provider, leads)
        invited = time.perf_counter()
        counts = poll_for(provider, clock, days=days)
        return invited - started, time.perf_counter() - invited, counts


def reopen(state_path: str, days: int = 30) -> float:
    later = START + dt.timedelta(days=days)
    started = time.perf_counter()
    with SandboxProvider(seed=1, clock=lambda: later, state_path=state_path) as provider:
        provider.relationship(ACCOUNT, LeadRef("lead-0", ""))
    return time.perf_counter() - started


def per_poll_heap_and_scan(leads: int) -> tuple[float, float]:
    """Seconds per poll over one virtual day: the provider's heap, and a scan of every lead."""
    clock = Clock()
    with SandboxProvider(seed=1, clock=clock) as provider:
        invite_all(provider, leads)
        clock.now += dt.timedelta(days=1)  # the busiest stretch: acceptances cluster around 30 hours
        provider.poll_events(ACCOUNT, since=None)  # realise the first day, as earlier polls would have
        records = list(provider._world.leads.values())  # what a scan-based sandbox would walk
        windows = [(clock.now + POLL_EVERY * i, clock.now + POLL_EVERY * (i + 1)) for i in range(48)]

        started = time.perf_counter()
        for since, until in windows:
            clock.now = until
            provider.poll_events(ACCOUNT, since=since)
        heap = (time.perf_counter() - started) / len(windows)

        started = time.perf_counter()
        for since, until in windows:
            [r.key for r in records for i in r.invites if i.accept_at is not None and since < i.accept_at <= until]
        scan = (time.perf_counter() - started) / len(windows)
    return heap, scan


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    smoke = "--smoke" in sys.argv
    leads = int(args[0]) if args else (200 if smoke else 100_000)
    days = 3 if smoke else 30
    with tempfile.TemporaryDirectory() as directory:
        state_path = str(pathlib.Path(directory) / "sandbox.db")
        memory = run(leads, None, days)
        on_file = run(leads, state_path, days)
        reopened = reopen(state_path, days)
        size_mb = pathlib.Path(state_path).stat().st_size / 1e6
    heap, scan = per_poll_heap_and_scan(leads)
    polls, accepted, replied = memory[2]
    print(f"{leads:,} invites, then {polls} polls over {days} virtual days "
          f"({accepted:,} acceptances incl. overlap repeats, {replied:,} replies)")
    print(f"in memory:   invites {memory[0]:6.2f} s   {days} days of polling and messages {memory[1]:6.2f} s")
    print(f"state file:  invites {on_file[0]:6.2f} s   {days} days of polling and messages {on_file[1]:6.2f} s")
    print(f"state file:  {size_mb:.0f} MB, reopened by a fresh instance in {reopened:.2f} s")
    print(f"per poll:    heap {heap * 1e3:8.3f} ms   scan of every lead (baseline) {scan * 1e3:8.3f} ms")
    print(f"ratio scan / heap per poll: {scan / heap:6.1f}x")


if __name__ == "__main__":
    main()
