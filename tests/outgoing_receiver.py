"""A webhook receiver for the outgoing-events tests: a real HTTP server on 127.0.0.1 (port 0) that
records every delivery and answers as the test scripts it, and a Standard Webhooks verifier written
here from the specification (https://www.standardwebhooks.com/), independent of runner.outgoing.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

HANG = "hang"  # answer nothing until the test ends: the sender's timeout must fire


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: int, tolerance: int = 300) -> bool:
    """Standard Webhooks verification: the key is the base64 after `whsec_`; the signed content is
    `<webhook-id>.<webhook-timestamp>.<body>`; `webhook-signature` holds space-separated `v1,<base64>`
    entries, one of which must match; the timestamp must be within `tolerance` seconds of `now`."""
    msg_id, stamp, signatures = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and stamp and signatures) or abs(now - int(stamp)) > tolerance:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_")) if secret.startswith("whsec_") else secret.encode()
    expected = base64.b64encode(hmac.new(key, msg_id.encode() + b"." + stamp.encode() + b"." + body,
                                         hashlib.sha256).digest())
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return True
    return False


class Receiver:
    """`url` takes POSTs; `answers` (statuses or HANG) are used in order, then 200 for the rest."""

    def __init__(self, *answers: int | str) -> None:
        self.answers: deque[int | str] = deque(answers)
        self.deliveries: list[Delivery] = []
        self._release = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.deliveries.append(Delivery(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                answer = receiver.answers.popleft() if receiver.answers else 200
                if answer == HANG:
                    receiver._release.wait(10)
                    return
                self.send_response(int(answer))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/seqrun"

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
