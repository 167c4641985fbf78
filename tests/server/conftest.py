"""Shared pieces of the `seqrun serve` tests: the app served by real uvicorn on 127.0.0.1 (port 0)
from a thread, and posting a delivery."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any, Iterator

import httpx

from runner.server.app import ServerState, create_app
from runner.server.lifecycle import _HTTPThread, listen
from tests.test_webhooks import Echo  # a driver whose deliveries carry a plain token in X-Token

__all__ = ["Echo", "post", "served"]

UTC = dt.timezone.utc


@contextlib.contextmanager
def served(state: ServerState, dashboard: Any = None) -> Iterator[str]:
    """The app on http://127.0.0.1:PORT until the block ends."""
    sock = listen("127.0.0.1", 0)
    http = _HTTPThread(create_app(state, dashboard=dashboard), sock, grace=2)
    http.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        http.stop()
        sock.close()


def post(url: str, body: Any, token: str | None = "t-1", **headers: str) -> httpx.Response:
    sent = {"Content-Type": "application/json", **({"X-Token": token} if token else {}), **headers}
    return httpx.post(url, content=json.dumps(body).encode() if not isinstance(body, bytes) else body, headers=sent)
