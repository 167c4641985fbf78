"""`seqrun serve`'s one process: the HTTP server, the engine loop, and how they start and stop.

`Daemon.run()` (in the main thread, which receives the signals):

1. builds the engine exactly as `seqrun run` does (`runner.cli.commands.run`: the same senders, drivers,
   runtime and recovery), mounts every sender's driver that takes webhooks on a `WebhookInbox`
   with its provider's secrets; verified deliveries are stored in the event inbox, which every
   engine pass applies (runner.engine.inbox);
2. serves the app (`runner.server.app`) with uvicorn from a thread, on a socket bound beforehand;
3. reconciles what an earlier run left in flight and takes back dead runs' leases, then loops: one
   engine pass (`Engine.tick`: the inbox's events first, each sender's polls when due, then every
   lead that is due), then a pause until the earliest of: `interval`, the next thing due
   (`Engine.next_due`: a lead's `due_at` or a sender's poll), or a wake-up (a verified webhook
   delivery, so that an acceptance or a reply moves its lead now). Wake-ups are coalesced: while
   they keep coming, a pass starts at most every `WAKE_GAP` seconds and serves them all. The pause only triggers passes;
   what is due always comes from the database. After each pass the outgoing events that are due
   are delivered (`runner.outgoing`, as `seqrun run` does).

Stopping (SIGTERM, Ctrl-C, or `stop()`): the engine claims nothing more and finishes the provider
call in flight (bounded by the HTTP client's timeout), records it and hands back the leads it had
claimed; the HTTP server stops taking connections and finishes the requests in flight (at most
`grace` seconds); events verified meanwhile are applied; then `run()` returns the signal, if any.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import uvicorn
from starlette.types import ASGIApp

from runner.cli.commands.run import StopSignals, _close_providers, _deliver, _recover, _runtime, utc_now
from runner.engine.inbox import process as apply_inbox
from runner.engine.loop import Engine, TickReport
from runner.engine.presence import STALE_AFTER, Presence, age
from runner.language.diagnostics import UserError
from runner.outgoing import Outgoing
from runner.project.config import Config
from runner.server.app import ServerState, create_app
from runner.server.metrics import Metrics
from runner.store.db import bound_file
from runner.webhooks import WebhookInbox, secrets_by_provider

log = logging.getLogger(__name__)

MIN_PAUSE = 0.05  # seconds: a floor between passes, so that a lead due in the past never spins the loop
#: seconds: while wake-ups keep coming (webhooks under load), a pass starts at most this often; every
#: wake-up meanwhile is served by that one pass, and none waits longer than this for it
WAKE_GAP = 0.2
STARTUP_WAIT = 30.0  # seconds the HTTP server may take to start


def warped_clock(factor: float, epoch: float) -> Callable[[], dt.datetime]:
    """A clock that runs `factor` times faster than the wall clock from the instant `epoch` (Unix
    seconds) on. Every process given the same two numbers reads the same time, across restarts:
    the kill -9 harness runs `serve` and the fake provider on it, so that a day of pacing passes in
    a minute."""

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(epoch + (time.time() - epoch) * factor, dt.UTC)

    return now


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening socket (before anything else starts: a taken port fails at once)."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"--host {host}: cannot resolve it ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UserError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def mount_webhooks(config: Config, engine: Engine, clock: Callable[[], dt.datetime]) -> WebhookInbox:
    """An inbox taking the webhooks of every sender whose driver takes them, with its provider's secrets
    (each sender's `webhook_secret` credential, read from the environment)."""
    provider_of = {sc.name: sc.provider for sc in config.senders}
    senders = list(engine.rt.senders.values())
    inbox = WebhookInbox(secrets_by_provider((provider_of[s.name], s.account.credentials) for s in senders),
                         clock=clock)
    for sender in senders:
        if callable(getattr(sender.provider, "verify_and_parse", None)):
            inbox.mount(provider_of[sender.name], sender.provider)
    return inbox


class Daemon:
    """One `seqrun serve` process; `run()` blocks until it is asked to stop."""

    def __init__(self, config: Config, sequences: Mapping[str, Any], sock: socket.socket, *,
                 interval: float = 60.0, grace: float = 30.0, clock: Callable[[], dt.datetime] = utc_now,
                 pace: float = 1.0, dashboard: Callable[[ServerState], ASGIApp | None] | None = None) -> None:
        self.config, self.sequences, self.sock = config, sequences, sock
        self.interval, self.grace, self.clock = interval, grace, clock
        self.pace = pace  # seconds of `clock` per real second (a warped clock's factor)
        self.dashboard = dashboard
        self.state: ServerState | None = None
        self.ready = threading.Event()  # set once the engine loop runs (tests and benches wait for it)
        self.passes = 0  # engine passes finished (tests and benches wait on it)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._signals: StopSignals | None = None
        self._presence: Presence | None = None
        self._last_start = 0.0  # monotonic time the last pass started

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def wake(self) -> None:
        """Ask for an engine pass now (a verified webhook delivery; the clock moved)."""
        self._wake.set()

    def stop(self) -> None:
        """What SIGTERM does: stop claiming, finish what is in flight, return."""
        self._stop.set()
        self._wake.set()

    def stop_requested(self) -> bool:
        return (self._stop.is_set() or (self._signals is not None and self._signals.requested())
                or (self._presence is not None and self._presence.lost()))

    def run(self) -> int | None:
        """Serve until stopped; returns the signal that stopped it, if one did."""
        with httpx.Client(timeout=30.0) as client, StopSignals() as signals:
            self._signals = signals
            outgoing = Outgoing.from_config(self.config, client)  # a secret not set stops it here, before anything
            engine = _runtime(self.config, self.sequences, client, db_file=bound_file(), clock=self.clock)
            # A runner like `seqrun run` (runner.engine.presence): known by its row and heartbeat, on the
            # clock its leases are written with; it stops making calls once another runner found it gone.
            with Presence(engine.rt.owner, "serve", clock=self.clock) as presence:
                self._presence = presence
                engine.rt.stop_requested = self.stop_requested
                try:
                    self._serve(engine, outgoing)
                finally:
                    _close_providers(engine)
            if presence.lost() and signals.signum is None and not self._stop.is_set():
                raise UserError(f"seqrun serve stopped: another runner found it gone (no heartbeat in the database "
                                f"for {age(STALE_AFTER)}) and took its leads back; whatever it left in flight is "
                                "reconciled with the provider")
        return signals.signum

    def _serve(self, engine: Engine, outgoing: Outgoing | None) -> None:
        inbox = mount_webhooks(self.config, engine, self.clock)
        metrics = Metrics(clock=self.clock, senders=lambda: [s.caps for s in engine.rt.senders.values()])

        state = self.state = ServerState(inbox=inbox, metrics=metrics, clock=self.clock, wake=self.wake)
        dashboard = self.dashboard(state) if self.dashboard is not None else None
        http = _HTTPThread(create_app(state, dashboard=dashboard), self.sock, self.grace)
        http.start()
        try:
            _recover(engine, self.clock())
            state.readiness.started = True
            self.ready.set()
            log.info("serving on %s; engine pass at most every %s s", self.url, _seconds(self.interval))
            self._loop(engine, metrics, outgoing)
        finally:
            state.readiness.stopping = True
            http.stop()
            # Deliveries stored while the engine finished its last call: applied now (they are in
            # the inbox either way, and the next start would apply them).
            apply_inbox(engine.rt, self.clock())

    def _loop(self, engine: Engine, metrics: Metrics, outgoing: Outgoing | None) -> None:
        while not self.stop_requested():
            self._wake.clear()
            self._last_start = time.monotonic()
            started = time.perf_counter()
            report = engine.tick(self.clock(), clock=self.clock)
            metrics.loop_seconds.observe(time.perf_counter() - started)
            _count(metrics, report)
            if self.stop_requested():
                break
            _deliver(outgoing, self.clock())  # outgoing events (runner.outgoing), as `run` does after a pass
            self.passes += 1
            self._pause(engine)

    def _pause(self, engine: Engine) -> None:
        """Wait for the next pass: until something is due, `interval` passes, a wake-up or a stop."""
        due = engine.next_due()
        seconds = self.interval if due is None else (due - self.clock()).total_seconds() / self.pace
        deadline = time.monotonic() + min(self.interval, max(MIN_PAUSE, seconds))
        # In slices: a signal sets the stop flag without waking the event.
        while not self.stop_requested():
            now = time.monotonic()
            woken = self._wake.is_set()
            left = next_pass_at(now=now, deadline=deadline, woken=woken, last_start=self._last_start) - now
            if left <= 0:
                return
            if woken:
                time.sleep(min(left, 0.05))  # the wake-up is noted; the next pass takes it with any that follow
            else:
                self._wake.wait(min(left, 0.2))


def next_pass_at(*, now: float, deadline: float, woken: bool, last_start: float) -> float:
    """When the next pass starts (monotonic seconds): at `deadline` (the next thing due), sooner when
    woken, but not before `WAKE_GAP` after the last pass started: wake-ups are coalesced, so that a
    stream of webhooks does not run one full pass each."""
    if not woken:
        return deadline
    return min(deadline, max(now, last_start + WAKE_GAP))


def _count(metrics: Metrics, report: TickReport) -> None:
    for what in ("processed", "transitions", "events", "errors"):
        value = getattr(report, what)
        if value:
            metrics.loop_work.labels(what).inc(value)
    if report.processed or report.events or report.errors:
        log.info("pass: %d lead(s) processed, %d step(s), %d event(s), %d error(s)", report.processed,
                 report.transitions, report.events, report.errors)


def _seconds(value: float) -> str:
    return f"{value:g}"


class _HTTPThread:
    """uvicorn serving `app` on `sock` from a thread (signals stay with the main thread)."""

    def __init__(self, app: ASGIApp, sock: socket.socket, grace: float) -> None:
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", server_header=False,
                                timeout_graceful_shutdown=max(1, int(grace)), timeout_keep_alive=5)
        self.server = uvicorn.Server(config)
        self.grace = grace
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                        name="seqrun-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_WAIT
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise UserError("the HTTP server did not start (see the log above)")
            time.sleep(0.01)  # a bounded wait for a condition, not a pause for time to pass

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(self.grace + 5)
