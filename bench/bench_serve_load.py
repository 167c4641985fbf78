"""Load: webhooks posted to `seqrun serve` at increasing rates from a second process while the engine
works; how fast deliveries are answered, that none is lost, and what the load costs the engine.

Run: python bench/bench_serve_load.py [--leads 20000] [--rates 50,100,200,400] [--seconds 3] [--json]
     (or --smoke: 120 leads, rates 10,20, one second each)

Everything runs on 127.0.0.1: a project with one Edges sender (its API, the fake in this process, is
only there to take its webhooks) and a sequence of five `tag` steps, which no provider call or
daily limit slows down, so the engine runs as fast as it can. Two runs on fresh databases with the
same leads: without load (the baseline), then with a second process posting signed Edges webhooks
at each rate in turn (open loop: a delivery is sent at its time whether or not earlier ones were
answered). It prints, per rate, the deliveries answered 2xx per second and the p50/p99 answer time;
the deliveries answered 2xx that are missing from the database (lost: must be 0); and the engine's
lead-steps per second in both runs (until the last lead is done, the posting going on meanwhile),
with their ratio.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import pathlib
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WAIT = 300.0  # seconds: a bound for a condition that never comes
KEY, SECRET = "load-bench-key", "load-bench-webhook-secret"
SEQUENCE = """\
version: 1
name: load
steps:
  - {id: t1, action: tag, tags: [a]}
  - {id: t2, action: tag, tags: [b]}
  - {id: t3, action: tag, tags: [c]}
  - {id: t4, action: tag, tags: [d]}
  - {id: t5, action: tag, tags: [e]}
  - end: tagged
"""
STEPS_PER_LEAD = 6  # five tags and the end


def project(root: pathlib.Path, fake_url: str, leads: int) -> None:
    (root / "seqrun.yaml").write_text(
        "version: 1\ndatabase: seqrun.db\nsenders:\n  - name: hooked\n    provider: edges\n    account_id: identity-0\n"
        f"    base_url: {fake_url}/v1\n    credentials_env: {{api_key: LOAD_EDGES_KEY, webhook_secret: LOAD_EDGES_HOOK}}\n",
        encoding="utf-8")
    (root / "sequences").mkdir()
    (root / "sequences" / "load.yaml").write_text(SEQUENCE, encoding="utf-8")
    rows = ["linkedin_profile_url"] + [f"https://www.linkedin.com/in/load-{n:06d}" for n in range(leads)]
    (root / "leads.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SEQRUN_DB", "SEQRUN_DASHBOARD_TOKEN")}
    env.update(LOAD_EDGES_KEY=KEY, LOAD_EDGES_HOOK=SECRET)
    return env


def seqrun(root: pathlib.Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", "from runner.cli.main import main; main()", *args], cwd=root,
                            env=environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def done_count(root: pathlib.Path) -> int:
    con = sqlite3.connect(f"file:{root / 'seqrun.db'}?mode=ro", uri=True, timeout=30)
    try:
        return con.execute("SELECT COUNT(*) FROM enrollment WHERE state = 'done'").fetchone()[0]
    finally:
        con.close()


def stored(root: pathlib.Path, wanted: set[str]) -> set[str]:
    con = sqlite3.connect(f"file:{root / 'seqrun.db'}?mode=ro", uri=True, timeout=30)
    try:
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        found: set[str] = set()
        for table in ("event", "inbox"):
            if table in tables:
                found |= {eid for (eid,) in con.execute(f"SELECT event_id FROM {table}") if eid in wanted}
        return found
    finally:
        con.close()


def run(fake_url: str, leads: int, rates: list[int], seconds: float) -> dict[str, Any]:
    """One run on a fresh database: serve until every lead is done, webhooks posted when `rates`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        project(root, fake_url, leads)
        imported = seqrun(root, "leads", "import", "leads.csv", "--sequence", "load")
        _, err = imported.communicate(timeout=WAIT)
        if imported.returncode != 0:
            raise SystemExit(f"leads import failed:\n{err}")
        serve = seqrun(root, "serve", "--port", "0", "--interval", "1")
        lines: list[str] = []
        listening = threading.Event()
        url: list[str] = []

        def read() -> None:
            assert serve.stderr is not None
            for line in serve.stderr:
                lines.append(line)
                found = re.search(r"listening on (http://\S+) ", line)
                if found:
                    url.append(found.group(1))
                    listening.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        if not listening.wait(WAIT):
            raise SystemExit("seqrun serve did not start:\n" + "".join(lines))
        started = time.perf_counter()
        load: dict[str, Any] = {}
        poster = None
        if rates:  # posting while the engine works: the engine's time is until its last lead is done
            poster = subprocess.Popen([sys.executable, __file__, "--post", url[0], "--rates", ",".join(map(str, rates)),
                                       "--seconds", str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)
        deadline = time.monotonic() + WAIT
        while done_count(root) < leads and time.monotonic() < deadline:
            time.sleep(0.02)  # polling a condition
        elapsed = time.perf_counter() - started
        finished = done_count(root)
        if poster is not None:
            still_posting = poster.poll() is None  # else the load covered only part of the engine's work
            out, err = poster.communicate(timeout=WAIT)
            if poster.returncode != 0:
                raise SystemExit(f"the posting process failed:\n{err}")
            load = json.loads(out)
            load["engine_loaded_throughout"] = still_posting
        serve.send_signal(signal.SIGTERM)
        code = serve.wait(WAIT)
        reader.join(WAIT)
        assert serve.stderr is not None
        serve.stderr.close()
        if load:  # after a clean stop: every delivery answered 2xx must be in the database
            acknowledged = set(load.pop("acknowledged"))
            load["lost"] = len(acknowledged - stored(root, acknowledged))
        if code != 0 or finished < leads:
            raise SystemExit(f"seqrun serve: exit {code}, {finished} of {leads} leads done:\n" + "".join(lines[-20:]))
        return {"seconds": elapsed, "steps_per_second": leads * STEPS_PER_LEAD / elapsed, **load}


async def _post_all(url: str, rates: list[int], seconds: float) -> dict[str, Any]:
    import httpx

    out: dict[str, Any] = {"rates": [], "acknowledged": []}
    n = 0
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as client:
        for rate in rates:
            latencies: list[float] = []
            refused = 0

            async def one(body: bytes) -> None:
                nonlocal refused
                sent = time.perf_counter()
                try:
                    answer = await client.post(url + "/webhooks/edges", content=body, headers={
                        "Content-Type": "application/json", "X-Webhook-Secret": SECRET})
                except httpx.HTTPError:
                    refused += 1
                    return
                latencies.append(time.perf_counter() - sent)  # noqa: B023 - awaited within this iteration
                if 200 <= answer.status_code < 300:
                    out["acknowledged"].append("edges-webhook:" + hashlib.sha256(body).hexdigest()[:32])
                else:
                    refused += 1

            tasks = []
            start = time.perf_counter()
            count = max(1, int(rate * seconds))
            for i in range(count):
                n += 1
                body = json.dumps({"event_type": "integration", "event": "AUTH_SUCCESS", "identity_uid": "identity-0",
                                   "data": {"reason": f"load delivery {n}"}}).encode()
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)  # open loop: each delivery leaves at its time
                tasks.append(asyncio.create_task(one(body)))
            await asyncio.gather(*tasks)
            took = time.perf_counter() - start
            latencies.sort()

            def pick(q: float, latencies: list[float] = latencies) -> float:
                return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

            out["rates"].append({"rate": rate, "sent": count, "answered_2xx_per_second": (count - refused) / took,
                                 "refused": refused, "p50_ms": pick(0.50) * 1000, "p99_ms": pick(0.99) * 1000})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20000)
    parser.add_argument("--rates", default="50,100,200,400")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="120 leads, rates 10,20 for one second each")
    parser.add_argument("--post", default=None, help=argparse.SUPPRESS)  # the second process
    args = parser.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",") if r]
    if args.post:
        print(json.dumps(asyncio.run(_post_all(args.post, rates, args.seconds))))
        return 0
    if args.smoke:
        args.leads, rates, args.seconds = 120, [10, 20], 1.0
    from runner.providers.edges.fake import EdgesFake
    from runner.providers.fakeserver import FakeHTTPServer

    with FakeHTTPServer(EdgesFake(api_keys={KEY}, smart_limits=None)) as fake:
        quiet = run(fake.url, args.leads, [], args.seconds)
        loaded = run(fake.url, args.leads, rates, args.seconds)
    ratio = loaded["steps_per_second"] / quiet["steps_per_second"]
    if args.json:
        print(json.dumps({"without_load": quiet, "with_load": loaded, "ratio": ratio}))
    for row in loaded["rates"]:
        print(f"{row['rate']:>5}/s offered: {row['answered_2xx_per_second']:7.1f}/s answered 2xx, "
              f"p50 {row['p50_ms']:6.1f} ms, p99 {row['p99_ms']:7.1f} ms, refused {row['refused']}")
    print(f"engine: {quiet['steps_per_second']:.0f} lead-steps/s without load, {loaded['steps_per_second']:.0f} with "
          f"({args.leads} leads x {STEPS_PER_LEAD} steps)"
          + ("" if loaded["engine_loaded_throughout"] else "; the posting ended before the engine did: "
             "give it more leads or more seconds for a figure under load throughout"))
    print(f"ratio with / without load: {ratio:.2f}; deliveries lost: {loaded['lost']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
