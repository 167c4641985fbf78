"""The fake Salesflow's webhooks: inbox-sync pages right after the 202, NEW_CONNECTION late.

Each delivery is a POST of JSON to the configured URL with the shared secret in
`X-Webhook-Secret`, as Salesflow sends them. Sync pages go out from a worker thread as soon as the
sync was answered, in order or (with `reorder_rate`) shuffled, some of them twice
(`duplicate_rate`), and now and then a page of the previous sync again, late. `hold(n)` keeps back
the last page of the next n syncs until `release()`: a sync that never finishes.

NEW_CONNECTION deliveries are due at a time (the acceptance plus a random delay) and go out when
`pump(now)` runs: from the worker every quarter second for `seqrun fake salesflow`, and before every
tick of `simulate --wire`, whose clock is virtual.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Webhook-Secret"
AUTO_PUMP_SECONDS = 0.25


@dataclass
class SyncRecord:
    account_id: str
    started_at: str
    scope: str
    pages: set[tuple[str, str, int]] = field(default_factory=set)  # (type, thread, number)
    delivered: set[tuple[str, str, int]] = field(default_factory=set)

    @property
    def complete(self) -> bool:
        return self.pages <= self.delivered


@dataclass(frozen=True)
class _Out:
    payload: dict[str, Any]
    sync_id: str | None = None
    page: tuple[str, str, int] | None = None
    repeat: bool = False


class Deliveries:
    def __init__(self, *, url: str | None, secret: str | None, seed: int, reorder_rate: float,
                 duplicate_rate: float, auto_pump: Callable[[], object] | None = None) -> None:
        self.url, self.secret = url, secret
        self.seed, self.reorder_rate, self.duplicate_rate = seed, reorder_rate, duplicate_rate
        self.syncs: dict[str, SyncRecord] = {}
        self.log: list[dict[str, Any]] = []
        self.stats: collections.Counter[str] = collections.Counter()
        self._auto_pump = auto_pump
        self._immediate: collections.deque[_Out] = collections.deque()
        self._timed: list[tuple[Any, int, _Out]] = []
        self._numbers = itertools.count()
        self._held: list[_Out] = []
        self._hold_next = 0
        self._previous: list[_Out] = []
        self._cond = threading.Condition()
        self._busy = False
        self._stopped = False
        self._client: httpx.Client | None = None
        self._thread: threading.Thread | None = None

    # --- what goes out ------------------------------------------------------------------------

    def sync_pages(self, sync_id: str, record: SyncRecord, pages: list[tuple[tuple[str, str, int], dict[str, Any]]]
                   ) -> None:
        """A sync's pages, to go out now (shuffled, repeated and held back as configured)."""
        rng = random.Random(f"{self.seed}:{sync_id}")
        outs = [_Out(payload, sync_id, key) for key, payload in pages]
        record.pages = {key for key, _ in pages}
        with self._cond:
            self.syncs[sync_id] = record
            if self._hold_next > 0 and outs:
                self._hold_next -= 1
                self._held.append(outs.pop())
            if self.reorder_rate and rng.random() < self.reorder_rate:
                rng.shuffle(outs)
                self.stats["reordered_syncs"] += 1
            order: list[_Out] = []
            for out in outs:
                order.append(out)
                if self.duplicate_rate and rng.random() < self.duplicate_rate:
                    order.insert(rng.randint(len(order), len(order) + 2), _Out(out.payload, sync_id, out.page, True))
            if self._previous and self.duplicate_rate and rng.random() < self.duplicate_rate:
                late = rng.choice(self._previous)
                order.insert(rng.randint(0, len(order)), _Out(late.payload, late.sync_id, late.page, True))
            self._previous = outs
            self._immediate.extend(order)
            self._ensure_worker()
            self._cond.notify_all()

    def at(self, due: Any, payload: dict[str, Any]) -> None:
        """A delivery due at `due` (the fake's clock), sent by the first `pump` at or after it."""
        with self._cond:
            heapq.heappush(self._timed, (due, next(self._numbers), _Out(payload)))
            self._ensure_worker()

    def hold(self, count: int) -> None:
        with self._cond:
            self._hold_next = max(0, count)

    def release(self) -> int:
        with self._cond:
            held, self._held = self._held, []
            self._immediate.extend(held)
            self._ensure_worker()
            self._cond.notify_all()
        return len(held)

    def pump(self, now: Any) -> int:
        """Send every timed delivery due at `now`, in this thread; returns how many."""
        sent = 0
        while True:
            with self._cond:
                if not self._timed or self._timed[0][0] > now:
                    return sent
                out = heapq.heappop(self._timed)[2]
            self._post(out)
            sent += 1

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the worker has sent everything queued (tests and reports)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._immediate and not self._busy, timeout=timeout)

    def wait_delivered(self, count: int, timeout: float = 10.0) -> bool:
        """Wait until `count` deliveries went out successfully (tests of the standalone fake)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.stats["delivered"] >= count, timeout=timeout)

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._client is not None:
            self._client.close()

    # --- the worker -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker now (with `auto_pump` it sends due deliveries even before any sync)."""
        with self._cond:
            self._ensure_worker()

    def _ensure_worker(self) -> None:
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._work, name="seqrun-fake-webhooks", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._immediate and not self._stopped:
                    if not self._cond.wait(timeout=AUTO_PUMP_SECONDS if self._auto_pump else None):
                        break
                if self._stopped:
                    return
                out = self._immediate.popleft() if self._immediate else None
                self._busy = out is not None
            if out is None:
                if self._auto_pump is not None:
                    self._auto_pump()
                continue
            try:
                self._post(out)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _post(self, out: _Out) -> None:
        event = str(out.payload.get("EventType"))
        status: int | None = None
        if self.url:
            if self._client is None:
                self._client = httpx.Client(timeout=10.0)
            headers = {"Content-Type": "application/json"}
            if self.secret:
                headers[SECRET_HEADER] = self.secret
            try:
                body = json.dumps(out.payload).encode()
                status = self._client.post(self.url, content=body, headers=headers).status_code
            except httpx.HTTPError as exc:
                log.warning("fake Salesflow: webhook delivery failed: %s", exc)
        with self._cond:
            if out.sync_id is not None and out.page is not None and status is not None and status < 300:
                record = self.syncs.get(out.sync_id)
                if record is not None:
                    record.delivered.add(out.page)
            self.stats["delivered" if status is not None and status < 300 else "failed"] += 1
            if out.repeat:
                self.stats["repeated"] += 1
            self.log.append({"event": event, "sync_id": out.sync_id, "page": list(out.page) if out.page else None,
                             "repeat": out.repeat, "status": status})
            self._cond.notify_all()
