"""Benchmark: several `seqrun run` processes on one Postgres database, against a slow provider.

Run: python bench/bench_runners.py [--smoke]   (Postgres URL from SEQRUN_BENCH_POSTGRES or
SEQRUN_TEST_POSTGRES, e.g. postgresql://postgres@127.0.0.1/seqrun_bench; each round gets a schema
of its own, dropped afterwards. Without one it runs on SQLite files, where runners take turns.)

50 sandbox senders, 2 leads each, every lead's invite accepted a moment ago: each lead's thank-you
is due now (the fast lane). Every provider call really takes 300 ms (the sandbox's `sleep_ms`).
Each sender may send one message now; the spacing of its daily limit sends its other lead to a
later slot. For 1, 2 and 4 `seqrun run --once` processes started at once on a fresh copy:
lead-steps per second (from the first runner's start to the last one's end, as the runner table
records them), the ratio against the single runner's rate measured in the same run (goal: at least
0.8 x N), and, counted from the ledger, double claims (a lead processed by two runs, a step entered
twice, a lead with two actions), cap overshoots (the audit's cap, spacing and window findings) and
duplicate idempotency keys. All three must be 0.

--smoke: 5 senders, 30 ms calls, 1 and 2 runners; proves the benchmark works (tests/test_bench.py).
Prints figures; it is not a timed test.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner import audit  # noqa: E402
from runner.project.discovery import build_runtime, project_sequences, real_provider_for, sync_senders  # noqa: E402
from runner.project.discovery import open_project as load_project  # noqa: E402
from runner.store import Enrollment, db, open_store  # noqa: E402
from runner.store.enrollments import set_facts  # noqa: E402
from runner.store.fields import from_db_time  # noqa: E402

SEQUENCE = """\
version: 1
name: thanks
fields: {full_name: optional}
calendar: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: ["00:00-24:00"]}
limits: {message: 3}
exit_when: [replied]
steps:
  - {id: thanks, action: message, template: thanks.j2}
  - wait: 30 days
  - end: thanked
"""
TEMPLATE = "Thanks for accepting, {{ lead.full_name | first_name | fallback('there') }}!\n"
DEADLINE = 600.0  # seconds one round may take


def seqrun_yaml(senders: int, sleep_ms: int) -> str:
    return "version: 1\nsenders:\n" + "".join(
        f"  - {{name: s{i:02d}, provider: sandbox, account_id: acc-s{i:02d}}}\n" for i in range(1, senders + 1)) + f"""\
sandbox:
  seed: 3
  connected_rate: 1.0
  pending_rate: 0.0
  messaged_first_rate: 0.0
  recent_conversation_rate: 0.0
  inaccessible_rate: 0.0
  reply_rate: 0.0
  sleep_ms: {sleep_ms}
  state_path: linkedin.sandbox
"""


@contextlib.contextmanager
def fresh_database(server: str | None, directory: pathlib.Path) -> Iterator[str]:
    """A URL for an empty store: a schema of its own on the Postgres server, else a SQLite file."""
    if not server:
        yield str(directory / "seqrun.db")
        return
    import psycopg

    schema = f"seqrun_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def seqrun(root: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SEQRUN_DB"}
    return subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", *args], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=DEADLINE)
    if proc.returncode != 0 or err:
        raise SystemExit(f"seqrun {proc.args[3:]} failed ({proc.returncode}):\n{err}")  # type: ignore[index]
    return out


def one_round(server: str | None, runners: int, senders: int, leads_per_sender: int, sleep_ms: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        (root / "sequences").mkdir()
        (root / "templates").mkdir()
        (root / "seqrun.yaml").write_text(seqrun_yaml(senders, sleep_ms), encoding="utf-8")
        (root / "sequences" / "thanks.yaml").write_text(SEQUENCE, encoding="utf-8")
        (root / "templates" / "thanks.j2").write_text(TEMPLATE, encoding="utf-8")
        leads = senders * leads_per_sender
        rows = [f"https://www.linkedin.com/in/lead-{i:04d},Lead {i}" for i in range(leads)]
        (root / "leads.csv").write_text("linkedin_profile_url,full_name\n" + "\n".join(rows) + "\n", encoding="utf-8")
        with fresh_database(server, root) as url:
            finish(seqrun(root, "leads", "import", "leads.csv", "--sequence", "thanks", "--db", url))
            accepted_a_moment_ago(url)
            outputs = [finish(p) for p in [seqrun(root, "run", "--once", "--db", url) for _ in range(runners)]]
            counts = [re.match(r"(\d+) lead\(s\) processed; (\d+) step\(s\)", out) for out in outputs]
            if not all(counts):
                raise SystemExit(f"unexpected output: {outputs}")
            processed = sum(int(m.group(1)) for m in counts if m)
            steps = sum(int(m.group(2)) for m in counts if m)
            return {"steps": steps, **ledger(root, url, leads, processed)}


def accepted_a_moment_ago(url: str) -> None:
    open_store(url)
    try:
        now = dt.datetime.now(dt.UTC).isoformat()
        with db.atomic():
            for enrollment in Enrollment.select():
                set_facts(enrollment.id, {"connected": True, "accepted": True, "accepted_at": now,
                                          "invite_pending": False})
    finally:
        db.close()


def ledger(root: pathlib.Path, url: str, leads: int, processed: int) -> dict[str, float]:
    """What the database says: the runners' span, and the three counts that must be 0."""
    here = os.getcwd()
    os.chdir(root)
    open_store(url)
    try:
        started, stopped = db.execute_sql("SELECT MIN(started_at), MAX(stopped_at) FROM runner").fetchone()
        span = (from_db_time(stopped) - from_db_time(started)).total_seconds()
        repeated_steps = db.execute_sql("SELECT COUNT(*) FROM (SELECT enrollment_id, step_id FROM transition "
                                        "GROUP BY enrollment_id, step_id HAVING COUNT(*) > 1) r").fetchone()[0]
        two_actions = db.execute_sql("SELECT COUNT(*) FROM (SELECT enrollment_id FROM action "
                                     "GROUP BY enrollment_id HAVING COUNT(*) > 1) r").fetchone()[0]
        duplicate_keys = db.execute_sql("SELECT COUNT(*) FROM (SELECT key FROM action "
                                        "GROUP BY key HAVING COUNT(*) > 1) r").fetchone()[0]
        performed = db.execute_sql("SELECT COUNT(*) FROM action WHERE status = 'done'").fetchone()[0]
        config, _, _ = load_project()
        sequences = project_sequences(config)
        runtime = build_runtime(config, sequences, sync_senders(config, dt.datetime.now(dt.UTC)),
                                provider_for=real_provider_for(config), notifier=lambda *args: None)
        overshoots = len(audit.violations(sequences, runtime))
    finally:
        db.close()
        os.chdir(here)
    return {"span": span, "double_claims": abs(processed - leads) + repeated_steps + two_actions,
            "overshoots": overshoots, "duplicate_keys": duplicate_keys, "performed": performed}


def uptime() -> str:
    with contextlib.suppress(OSError):
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    return "unknown"


def main() -> None:
    smoke = "--smoke" in sys.argv[1:]
    server = os.environ.get("SEQRUN_BENCH_POSTGRES") or os.environ.get("SEQRUN_TEST_POSTGRES") or None
    senders, per_sender, sleep_ms = (5, 2, 30) if smoke else (50, 2, 300)
    counts = (1, 2) if smoke else (1, 2, 4)
    where = "Postgres" if server else "SQLite (no Postgres URL: the runners take turns at the write lock)"
    print(f"{where}; {senders} senders, {senders * per_sender} leads, every provider call {sleep_ms} ms; "
          f"load average {uptime()}")
    base = 0.0
    totals = {"double_claims": 0.0, "overshoots": 0.0, "duplicate_keys": 0.0}
    for runners in counts:
        start = time.perf_counter()
        result = one_round(server, runners, senders, per_sender, sleep_ms)
        rate = result["steps"] / result["span"]
        base = base or rate
        print(f"{runners} runner(s): {result['steps']:.0f} lead-steps ({result['performed']:.0f} messages) in "
              f"{result['span']:.1f} s = {rate:.2f} steps/s; ratio to 1 runner {rate / base:.2f} "
              f"(goal >= {0.8 * runners:.1f}); round took {time.perf_counter() - start:.0f} s")
        for name in totals:
            totals[name] += result[name]
    print(f"load average after: {uptime()}")
    print(f"double claims: {totals['double_claims']:.0f}, cap overshoots: {totals['overshoots']:.0f}, "
          f"duplicate keys: {totals['duplicate_keys']:.0f}")
    if any(totals.values()):
        raise SystemExit("the ledger shows a double claim, a cap overshoot or a duplicate key")


if __name__ == "__main__":
    main()
