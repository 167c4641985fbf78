"""The in-process turn-taking before SQLite's write lock: waiters get it in the order they came, and
the thread that lets it go cannot take it again ahead of them (the webhook receiver's threads were
starved by the engine's back-to-back transactions)."""
from __future__ import annotations

import threading
import time

from runner.store.models import FairGate


def queued(gate: FairGate, n: int) -> None:
    deadline = time.monotonic() + 10
    while len(gate._waiting) < n:
        assert time.monotonic() < deadline
        time.sleep(0.001)  # polling a condition


def test_waiters_take_turns_in_order_and_the_releaser_queues_behind_them() -> None:
    gate = FairGate()
    order: list[str] = []
    gate.acquire()

    def worker(name: str) -> None:
        gate.acquire()
        order.append(name)
        gate.release()

    first = threading.Thread(target=worker, args=("first",))
    first.start()
    queued(gate, 1)
    second = threading.Thread(target=worker, args=("second",))
    second.start()
    queued(gate, 2)
    gate.release()
    gate.acquire()  # the engine's next transaction: after the two already waiting
    order.append("releaser")
    gate.release()
    first.join(10)
    second.join(10)
    assert order == ["first", "second", "releaser"]
