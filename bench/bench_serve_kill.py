"""The kill -9 proof: `seqrun serve` killed with SIGKILL at random moments while it works and while
webhooks are being delivered, restarted each time; afterwards nothing was done twice or lost.

Run: python bench/bench_serve_kill.py [--kills 1000] [--leads 3000] [--senders 4] [--seed 1] [--json]
     (or --smoke: 3 kills, 30 leads; tests/server/test_serve_kill.py runs 30 kills)

Set-up, all on 127.0.0.1: the fake Edges API (`runner.providers.edges.fake`, what `seqrun fake
edges` serves) in this process, keeping its own ledger of every action it performed with the
idempotency key seqrun sent; a project whose senders act through it, with a sequence of connect,
tag, end (an invitation is an action the provider can be asked about after a crash; a visit is
not: Edges keeps no list of visits, so a visit cut off by a kill is made again, as
docs/providers/edges.md says); `seqrun serve --port 0` as a real process. Each round starts
`serve`, posts signed Edges integration webhooks to it from a thread (each body unique, so each is
its own event), and kills it with SIGKILL at a random moment (seeded): right after it listens, once
the fake has performed a random number of new actions, once a random number of deliveries got
their 2xx, or after a random delay. A last round runs until every lead has finished and every
acknowledged delivery is applied, and stops with SIGTERM.

Counted from the fake's own ledger and from the database afterwards:
- actions performed twice: ledger entries sharing an idempotency key, or a lead invited twice;
- steps lost: leads not finished as an uninterrupted run finishes them (state done, outcome
  invited, tagged, one invitation in the ledger), and invitations the audit log has and the
  ledger lacks;
- deliveries lost: deliveries answered 2xx whose event the engine has not applied (its inbox row
  applied, the event in the ledger).
It prints the counts; a good run prints `duplicates: 0, lost steps: 0, lost deliveries: 0`.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import pathlib
import random
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runner.providers.edges.fake import EdgesFake  # noqa: E402
from runner.providers.fakeserver import FakeClock, FakeHTTPServer  # noqa: E402
from runner.server.lifecycle import warped_clock  # noqa: E402

WAIT = 120.0  # seconds: a bound for a condition that never comes
#: `serve` and the fake run on one clock, 4,000 times faster than the wall clock from the start on:
#: a day of pacing (each visit at its own slot of the day) passes in 22 seconds
FACTOR, EPOCH = 4000.0, time.time()
WARP = f"{FACTOR}@{EPOCH}"
KEY, SECRET = "kill-harness-key", "kill-harness-webhook-secret"
QUIET_WORLD = {"accept_rate": 0.0, "reply_rate": 0.0, "connected_rate": 0.0, "pending_rate": 0.0,
               "messaged_first_rate": 0.0, "recent_conversation_rate": 0.0, "inaccessible_rate": 0.0}
SEQUENCE = """\
version: 1
name: kill
calendar: {timezone: UTC, days: [mon, tue, wed, thu, fri, sat, sun], hours: ["00:00-24:00"]}
steps:
  - {id: ask, action: connect}
  - {id: seen, action: tag, tags: [seen]}
  - end: invited
"""


def project(root: pathlib.Path, fake_url: str, senders: int, leads: int) -> None:
    lines = ["version: 1", "database: seqrun.db", "senders:"]
    for i in range(senders):
        lines += [f"  - name: s{i}", "    provider: edges", f"    account_id: identity-{i}", "    account_type: sales_navigator",
                  f"    base_url: {fake_url}/v1", "    credentials_env: {api_key: KILL_EDGES_KEY, webhook_secret: KILL_EDGES_HOOK}",
                  "    requests_per_minute: 100000", "    limits: {connect: 2000}"]
    (root / "seqrun.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "sequences").mkdir()
    (root / "sequences" / "kill.yaml").write_text(SEQUENCE, encoding="utf-8")
    rows = ["linkedin_profile_url,full_name"] + [f"https://www.linkedin.com/in/kill-{n:05d},Lead {n}" for n in range(leads)]
    (root / "leads.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SEQRUN_DB", "SEQRUN_DASHBOARD_TOKEN")}
    env.update(KILL_EDGES_KEY=KEY, KILL_EDGES_HOOK=SECRET)
    return env


def seqrun(root: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", *args], cwd=root,
                            env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


class Serve:
    """One `seqrun serve` process: its URL once it listens, its stderr kept."""

    def __init__(self, root: pathlib.Path) -> None:
        self.proc = seqrun(root, "serve", "--port", "0", "--interval", "1", "--time-warp", WARP)
        self.err: list[str] = []
        self.listening = threading.Event()
        self.url = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line)
            found = re.search(r"listening on (http://\S+) ", line)
            if found:
                self.url = found.group(1)
                self.listening.set()

    def wait_listening(self) -> None:
        deadline = time.monotonic() + WAIT
        while not self.listening.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"seqrun serve did not start:\n{''.join(self.err)}")

    def end(self, signum: int) -> int:
        self.proc.send_signal(signum)
        code = self.proc.wait(WAIT)
        self._reader.join(WAIT)
        assert self.proc.stderr is not None
        self.proc.stderr.close()
        return code


class Poster:
    """Posts signed Edges integration webhooks to the current `serve` from a thread; keeps the event
    id of every delivery that was answered 2xx."""

    def __init__(self, seed: int) -> None:
        self.acknowledged: list[str] = []
        self.refused = 0
        self._n = seed * 10_000_000
        self._client = httpx.Client(timeout=10.0)

    def run(self, url: str, stop: threading.Event) -> None:
        while not stop.is_set():
            self._n += 1
            body = json.dumps({"event_type": "integration", "event": "AUTH_SUCCESS", "identity_uid": "identity-0",
                               "data": {"reason": f"kill-harness delivery {self._n}"}}).encode()
            try:
                answer = self._client.post(url + "/webhooks/edges", content=body,
                                           headers={"Content-Type": "application/json", "X-Webhook-Secret": SECRET})
            except httpx.HTTPError:
                continue  # killed mid-request: no 2xx, so the provider would deliver it again
            if 200 <= answer.status_code < 300:
                self.acknowledged.append("edges-webhook:" + hashlib.sha256(body).hexdigest()[:32])
            else:
                self.refused += 1

    def close(self) -> None:
        self._client.close()


def one_round(root: pathlib.Path, fake: EdgesFake, poster: Poster, rng: random.Random, leads: int) -> None:
    """Start serve, let it work a random while with webhooks coming, SIGKILL it."""
    serve = Serve(root)
    serve.wait_listening()
    stop = threading.Event()
    posting = threading.Thread(target=poster.run, args=(serve.url, stop), daemon=True)
    posting.start()
    actions, acks = len(fake.ledger), len(poster.acknowledged)
    moment = rng.random()
    if moment < 0.15:
        def wanted() -> bool:  # right after it listens: recovery, the first claims
            return True
    elif moment < 0.6 and actions < leads:
        more = min(rng.randint(1, 6), leads - actions)  # mid-action: as the fake performs one

        def wanted() -> bool:
            return len(fake.ledger) >= actions + more
    elif moment < 0.8:
        more = rng.randint(1, 20)  # mid-delivery

        def wanted() -> bool:
            return len(poster.acknowledged) >= acks + more
    else:
        until = time.monotonic() + rng.uniform(0.0, 1.0)  # anywhere in a pass or a pause

        def wanted() -> bool:
            return time.monotonic() >= until
    deadline = time.monotonic() + 10.0  # a round that sees none of these still ends (its kill lands anyway)
    while not wanted() and time.monotonic() < deadline and serve.proc.poll() is None:
        time.sleep(0.002)  # polling a condition
    if serve.proc.poll() is not None:
        raise SystemExit(f"seqrun serve exited by itself ({serve.proc.returncode}):\n{''.join(serve.err)}")
    serve.end(signal.SIGKILL)
    stop.set()
    posting.join(WAIT)


def finish(root: pathlib.Path, fake: EdgesFake, poster: Poster, leads: int) -> None:
    """A last, uninterrupted round: until every lead finished and every acknowledged delivery is applied."""
    serve = Serve(root)
    serve.wait_listening()
    deadline = time.monotonic() + WAIT
    while True:
        finished, applied = _progress(root, poster.acknowledged)
        if finished == leads and applied == len(set(poster.acknowledged)):
            break
        if time.monotonic() > deadline or serve.proc.poll() is not None:
            break  # the counts say what is missing
        time.sleep(0.05)  # polling a condition
    code = serve.end(signal.SIGTERM)
    if code != 0:
        raise SystemExit(f"the last seqrun serve exited {code} after SIGTERM:\n{''.join(serve.err)}")


def _connect(root: pathlib.Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{root / 'seqrun.db'}?mode=ro", uri=True, timeout=30)


def _progress(root: pathlib.Path, acknowledged: list[str]) -> tuple[int, int]:
    with _connect(root) as con:
        finished = con.execute("SELECT COUNT(*) FROM enrollment WHERE state = 'done'").fetchone()[0]
        applied = len(_applied_events(con, set(acknowledged)))
    con.close()
    return finished, applied


def _applied_events(con: sqlite3.Connection, wanted: set[str]) -> set[str]:
    """Of the `wanted` event ids, those the engine applied (in the ledger; its inbox row applied)."""
    applied = {eid for (eid,) in con.execute("SELECT event_id FROM inbox WHERE state = 'applied'")}
    ledger = {eid for (eid,) in con.execute("SELECT event_id FROM event")}
    return wanted & applied & ledger


def count(root: pathlib.Path, fake: EdgesFake, poster: Poster, leads: int) -> dict[str, Any]:
    ledger = list(fake.ledger)
    by_key = collections.Counter(entry["seqrun_key"] for entry in ledger)
    by_lead = collections.Counter((entry["lead"], entry["action"]) for entry in ledger)
    with _connect(root) as con:
        rows = con.execute(
            "SELECT l.key, e.state, e.outcome, l.tags FROM enrollment e JOIN lead l ON l.id = e.lead_id").fetchall()
        done_keys = {key for (key,) in con.execute("SELECT key FROM action WHERE action = 'connect' AND status = 'done'")}
        applied = _applied_events(con, set(poster.acknowledged))
    con.close()
    invited = {entry["lead"] for entry in ledger}
    unfinished = [key for key, state, outcome, tags in rows
                  if (state, outcome) != ("done", "invited") or "seen" not in json.loads(tags)]
    uninvited = [key for key, *_ in rows if key not in invited]
    return {
        "leads": leads, "ledger_actions": len(ledger),
        "duplicate_keys": sum(n - 1 for n in by_key.values() if n > 1),
        "leads_invited_twice": sum(n - 1 for n in by_lead.values() if n > 1),
        "unfinished_leads": len(unfinished), "leads_never_invited": len(uninvited),
        "audit_invites_missing_in_ledger": len(done_keys - set(by_key)),
        "deliveries_acknowledged": len(set(poster.acknowledged)), "deliveries_refused": poster.refused,
        "deliveries_lost": len(set(poster.acknowledged) - applied),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=1000)
    parser.add_argument("--leads", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    parser.add_argument("--smoke", action="store_true", help="3 kills, 30 leads: proves the harness works")
    args = parser.parse_args(argv)
    if args.smoke:
        args.kills, args.leads = 3, 30
    rng = random.Random(args.seed)
    started = time.perf_counter()
    fake = EdgesFake(clock=FakeClock(warped_clock(FACTOR, EPOCH)), seed=args.seed, api_keys={KEY}, smart_limits=None,
                     sandbox=QUIET_WORLD)
    with tempfile.TemporaryDirectory() as tmp, FakeHTTPServer(fake) as server:
        # A kill cuts the fake's connections: that is the point, not an error worth a traceback.
        server._server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        root = pathlib.Path(tmp)
        project(root, server.url, args.senders, args.leads)
        imported = seqrun(root, "leads", "import", "leads.csv", "--sequence", "kill")
        _, err = imported.communicate(timeout=WAIT)
        if imported.returncode != 0:
            raise SystemExit(f"leads import failed:\n{err}")
        poster = Poster(args.seed)
        try:
            for _ in range(args.kills):
                one_round(root, fake, poster, rng, args.leads)
            finish(root, fake, poster, args.leads)
            counts = count(root, fake, poster, args.leads)
        finally:
            poster.close()
    counts["kills"], counts["seconds"] = args.kills, round(time.perf_counter() - started, 1)
    duplicates = counts["duplicate_keys"] + counts["leads_invited_twice"]
    lost = counts["unfinished_leads"] + counts["leads_never_invited"] + counts["audit_invites_missing_in_ledger"]
    if args.json:
        print(json.dumps(counts))
    else:
        print(f"{counts['kills']} kills in {counts['seconds']} s; {counts['leads']} leads, {counts['ledger_actions']} "
              f"actions in the fake's ledger, {counts['deliveries_acknowledged']} webhook deliveries answered 2xx")
        for name, value in counts.items():
            print(f"  {name}: {value}")
    print(f"duplicates: {duplicates}, lost steps: {lost}, lost deliveries: {counts['deliveries_lost']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
