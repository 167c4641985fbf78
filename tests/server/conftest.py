"""Shared pieces of the `seqrun serve` tests: a webhook driver with a plain token, and the app served
by real uvicorn on 127.0.0.1 (port 0) from a thread."""
from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any, Iterator, Mapping, Sequence

import httpx

from runner.providers.base import ErrorKind, ProviderError, ProviderEvent
from runner.server.app import ServerState, create_app
from runner.server.lifecycle import _HTTPThread, listen

UTC = dt.timezone.utc


class Echo:
    """Deliveries are `{"events": [[event id, kind, lead key]]}` behind header X-Token."""

    def verify_and_parse(self, headers: Mapping[str, str], body: bytes, *, secrets: Sequence[str],
                         received_at: dt.datetime) -> list[ProviderEvent]:
        if headers.get("x-token") not in secrets:
            raise ProviderError(ErrorKind.INVALID_INPUT, "webhook refused: bad token", status=401)
        try:
            items = json.loads(body)["events"]
        except (ValueError, KeyError):
            raise ProviderError(ErrorKind.INVALID_INPUT, "webhook body refused", status=400) from None
        return [ProviderEvent(i, kind, received_at, "acc-alice", lead) for i, kind, lead in items]


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
