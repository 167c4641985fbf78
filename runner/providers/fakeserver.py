"""What every provider's fake server shares: a clock that can be set, and a real HTTP server.

`FakeClock` is the fake's notion of now: a base clock (the wall clock for `seqrun fake`, the
simulation's virtual clock for `simulate --wire`) plus an offset that `/_fake/clock` sets or moves.
`FakeHTTPServer` serves an app (`handle(method, target, headers, body) -> (status, headers, body)`)
on 127.0.0.1 from a thread, with HTTP/1.1 keep-alive so that a driver's client reuses connections.
"""
from __future__ import annotations

import datetime as dt
import http.server
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

log = logging.getLogger(__name__)
UTC = dt.UTC

Reply = tuple[int, Mapping[str, str], bytes]


class App(Protocol):
    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Reply: ...


class FakeClock:
    def __init__(self, base: Callable[[], dt.datetime] | None = None) -> None:
        self._base = base or (lambda: dt.datetime.now(UTC))
        self._offset = dt.timedelta()
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._base().astimezone(UTC) + self._offset

    def set(self, when: dt.datetime) -> dt.datetime:
        with self._lock:
            self._offset = when.astimezone(UTC) - self._base().astimezone(UTC)
        return self()

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        with self._lock:
            self._offset += delta
        return self()

    def control(self, data: Mapping[str, object]) -> None:
        """`POST /_fake/clock`: `{"now": ISO time}` sets the clock, `{"advance_seconds": N}` moves it."""
        if "now" in data:
            when = dt.datetime.fromisoformat(str(data["now"]).replace("Z", "+00:00"))
            self.set(when if when.tzinfo else when.replace(tzinfo=UTC))
        else:
            self.advance(dt.timedelta(seconds=float(data.get("advance_seconds", 0))))  # type: ignore[arg-type]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle's algorithm on, every answer on a
    # kept-alive connection would wait for the client's delayed ACK (~40 ms).
    disable_nagle_algorithm = True
    server: _Server

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, out_headers, payload = self.server.app.handle(self.command, self.path, headers, body)
        except Exception:  # noqa: BLE001 - a fake's bug answers 500, like a real server would
            log.exception("fake server: %s %s failed", self.command, self.path.split("?")[0])
            status, out_headers, payload = 500, {"Content-Type": "application/json"}, b'{"message":"fake crashed"}'
        self.send_response(status)
        for name, value in out_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        log.debug("fake server: " + format, *args)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: App


class FakeHTTPServer:
    """`app` served on http://127.0.0.1:`port` (0: any free port) until `stop`."""

    def __init__(self, app: App, port: int = 0, host: str = "127.0.0.1") -> None:
        self._server = _Server((host, port), _Handler)
        self._server.app = app
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHTTPServer:
        # A short poll interval: `stop` waits for the serving loop to notice, and tests stop servers often.
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="seqrun-fake", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeHTTPServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class InjectionRule(Protocol):
    count: int | None
    probability: float | None


def rule_fires(rule: InjectionRule, random: Callable[[], float]) -> bool:
    """Whether an injected-error rule answers this call: a counted rule fires (and counts down)
    while it has calls left; a probabilistic one fires with its probability."""
    if rule.count is not None:
        if rule.count <= 0:
            return False
        rule.count -= 1
        return True
    return rule.probability is not None and random() < rule.probability
