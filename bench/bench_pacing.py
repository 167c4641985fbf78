"""Benchmark: how well pacing uses the caps and spreads actions, for every shipped example.

Run: python bench/bench_pacing.py [--smoke] [--leads N] [--days D] [--seed S] [--start YYYY-MM-DD] [FILES...]

Simulates each sequence (default: every file in sequences/, with the project's seqrun.yaml) and
prints two figures per action kind:

- quota use: actions performed / the day's cap (warm-up applied), summed over *backlog days*: the
  sender-local window days (of the sequence's calendar, in the sender's zone, wholly inside the
  simulated period) that began with leads already booked for that action on a later day, i.e. days
  with more work waiting than the cap allows. Goal: at least 97 %.
- opening bunch: the share of actions that fall in the first tenth of the open time of their day,
  in the lead's own zone (uniform pacing gives 10 %). Goal: at most 13 %. First messages after an
  acceptance are shown on their own line as well.

The baseline measured in the same run is the uniform share (10 %) and the full cap (100 %); the
figures are ratios to those. `--smoke` runs a tiny simulation only to prove the script works.
It prints figures; it is not a timed test.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import pathlib
import sys
import tempfile
import time
from collections import defaultdict
from zoneinfo import ZoneInfo

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.engine.limits import caps_for  # noqa: E402
from runner.language import calendar as cal  # noqa: E402
from runner.language.model import Sequence  # noqa: E402
from runner.project.config import load_project_config  # noqa: E402
from runner.project.discovery import load_sequences, sender_caps  # noqa: E402
from runner.simulate import SimOptions, run_simulation  # noqa: E402
from runner.store import Sender, db, open_store  # noqa: E402
from runner.store.fields import from_db_time  # noqa: E402

LINKEDIN = ("visit", "connect", "message", "inmail", "withdraw")


class BacklogWatch:
    """A `progress` callback: at every sender-local midnight, notes which (sender, action) pairs
    already have leads booked for a later day: the day that begins is a backlog day for them."""

    def __init__(self, start: dt.datetime, end: dt.datetime, zones: dict[int, ZoneInfo]) -> None:
        self.start, self.end, self.zones = start, end, zones
        self.seen: dict[int, dt.date] = {}
        self.backlog: set[tuple[int, str, str]] = set()  # (sender id, action, day)

    def __call__(self, fraction: float) -> None:
        now = self.start + (self.end - self.start) * fraction
        for sender_id, zone in self.zones.items():
            today = cal.local_date(now, zone)
            if self.seen.get(sender_id) == today:
                continue
            self.seen[sender_id] = today
            for (action,) in db.execute_sql(
                    "SELECT DISTINCT action FROM usage WHERE sender_id = ? AND day > ? AND reserved > 0",
                    (sender_id, today.isoformat())).fetchall():
                self.backlog.add((sender_id, action, today.isoformat()))


def open_fraction(calendar, zone: ZoneInfo, at: dt.datetime) -> float | None:  # type: ignore[no-untyped-def]
    """How far into its day's open time `at` falls, in `zone` (0 at opening, 1 at closing)."""
    local_day = cal.local_date(at, zone)
    for day in (local_day, local_day - dt.timedelta(days=1)):
        windows = cal.windows_on(calendar, zone, day)
        if not windows or not windows[0][0] <= at < windows[-1][1]:
            continue
        total = sum((end - start).total_seconds() for start, end in windows)
        before = sum((min(end, at) - start).total_seconds() for start, end in windows if start <= at)
        return before / total
    return None


def measure(seq: Sequence, path: str, options: SimOptions) -> dict[str, object]:
    config = load_project_config(path, [seq])
    with tempfile.TemporaryDirectory() as tmp:
        open_store(str(pathlib.Path(tmp) / "sim.db"), durable=False)
        zones = {}
        for sender in config.senders:
            if not seq.senders or sender.name in seq.senders:
                zones[sender.name] = ZoneInfo(sender.timezone)
        end = options.start + dt.timedelta(days=options.days)
        # Sender ids are given in config order by `sync_senders`: learn them once they exist.
        watch: BacklogWatch | None = None

        def progress(fraction: float) -> None:
            nonlocal watch
            if watch is None:
                ids = {row.id: zones[row.name] for row in Sender.select() if row.name in zones}
                watch = BacklogWatch(options.start, end, ids)
            watch(fraction)

        started = time.perf_counter()
        report = run_simulation(seq, config, options, progress=progress)
        elapsed = time.perf_counter() - started
        assert watch is not None
        quota = quota_use(seq, config, watch.backlog, options.start, end)
        bunch = opening_bunch(seq)
        db.close()
    return {"elapsed": elapsed, "quota": quota, "bunch": bunch, "violations": report.violations}


def quota_use(seq: Sequence, config, backlog: set[tuple[int, str, str]], start: dt.datetime,  # type: ignore[no-untyped-def]
              end: dt.datetime) -> dict[str, tuple[int, int, int]]:
    """action -> (used, cap, backlog days) summed over the backlog days wholly inside [start, end)."""
    senders = {row.id: row for row in Sender.select()}
    configs = {s.name: s for s in config.senders}
    out: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    used = {(s, a, d): u for s, a, d, u in db.execute_sql(
        "SELECT sender_id, action, day, SUM(used) FROM usage GROUP BY sender_id, action, day").fetchall()}
    for sender_id, action, day in sorted(backlog):
        row = senders[sender_id]
        date = dt.date.fromisoformat(day)
        if not cal.is_window_day(seq.calendar, date):
            continue  # no window of the sequence in the sender's zone: the cap is not meant for it
        zone = ZoneInfo(row.timezone)
        midnight = dt.datetime.combine(date, dt.time(0), tzinfo=zone)
        if midnight < start or midnight + dt.timedelta(days=1) > end:
            continue  # a day cut by the start or the end of the simulation
        caps = sender_caps(configs[row.name], row)
        cap, _ = caps_for(seq, caps, action, date)
        entry = out[action]
        entry[0] += used.get((sender_id, action, day), 0)
        entry[1] += cap
        entry[2] += 1
    return {action: (u, c, n) for action, (u, c, n) in out.items()}


def opening_bunch(seq: Sequence) -> dict[str, tuple[int, int]]:
    """kind -> (actions in the first tenth of open time, actions), in the lead's zone."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    first_message: dict[int, int] = {}
    for enrollment_id, action_id in db.execute_sql(
            "SELECT enrollment_id, MIN(id) FROM action WHERE status = 'done' AND action = 'message' "
            "GROUP BY enrollment_id").fetchall():
        first_message[enrollment_id] = action_id
    rows = db.execute_sql(
        "SELECT a.id, a.enrollment_id, a.action, a.started_at, l.timezone, l.fields, e.facts FROM action a "
        "JOIN lead l ON l.id = a.lead_id JOIN enrollment e ON e.id = a.enrollment_id "
        "WHERE a.status = 'done'").fetchall()
    for action_id, enrollment_id, action, started, lead_tz, fields, facts in rows:
        if action not in LINKEDIN:
            continue
        zone = cal.resolve_zone(seq.calendar, lead_tz=lead_tz or json.loads(fields).get("timezone"), sender_tz=None)
        fraction = open_fraction(seq.calendar, zone, from_db_time(started))
        if fraction is None:
            continue
        kinds = [action]
        if first_message.get(enrollment_id) == action_id and json.loads(facts).get("accepted_at"):
            kinds.append("first message after acceptance")
        for kind in kinds:
            counts[kind][0] += fraction < 0.1
            counts[kind][1] += 1
    return {kind: (a, b) for kind, (a, b) in counts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*")
    parser.add_argument("--leads", type=int, default=5000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", default="2026-03-02", help="a Monday; March has both DST changes")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only proves the script works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.leads, args.days = 40, 2
    files = args.files or sorted(str(p) for p in (ROOT / "sequences").glob("*.yaml"))
    start = dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC)
    worst_quota, worst_bunch = 1.0, 0.0
    for path in files:
        seq = next(iter(load_sequences([path]).values()))
        options = SimOptions(leads=args.leads, days=args.days, seed=args.seed, start=start)
        result = measure(seq, path, options)
        print(f"{seq.name}: {args.leads:,} leads x {args.days} days from {args.start}, seed {args.seed}, "
              f"{result['elapsed']:.1f} s, audit violations: {len(result['violations'])}")  # type: ignore[arg-type]
        for action, (used, cap, days) in sorted(result["quota"].items()):  # type: ignore[union-attr]
            share = used / cap if cap else 1.0
            if action != "inmail":
                worst_quota = min(worst_quota, share)
            print(f"  quota use    {action:<9} {share:6.1%} of the cap on {days} backlog sender-days "
                  f"({used}/{cap}; goal >= 97%)")
        for kind, (early, total) in sorted(result["bunch"].items()):  # type: ignore[union-attr]
            share = early / total if total else 0.0
            if kind in LINKEDIN and total >= 50:
                worst_bunch = max(worst_bunch, share)
            print(f"  opening bunch {kind:<31} {share:6.1%} in the first tenth of open time "
                  f"({early}/{total}; uniform 10%, goal <= 13%)")
    print(f"worst quota use {worst_quota:.1%} (ratio to the full cap {worst_quota:.3f}); "
          f"worst opening bunch {worst_bunch:.1%} (ratio to uniform {worst_bunch / 0.1:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
