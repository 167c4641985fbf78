"""The daemon's HTTP side over real HTTP (uvicorn on 127.0.0.1): webhooks verified and stored before
the answer, refusals that store nothing, health, readiness, metrics and the delivery log."""
from __future__ import annotations

import datetime as dt
import pathlib
from collections.abc import Iterator

import httpx
import pytest
from tests.providers.stored_inbox import take_stored

from runner.providers.base import ProviderEvent
from runner.server.app import ServerState
from runner.server.deliveries import DUPLICATE, REJECTED, VERIFIED
from runner.server.metrics import Metrics
from runner.store import db, open_store
from runner.store import inbox as store_inbox
from runner.store.inbox import Received
from runner.webhooks import WebhookInbox

from .conftest import UTC, Echo, post, served

AT = dt.datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
ONE = {"events": [["e-1", "accepted", "ann"]]}


@pytest.fixture
def state(tmp_path: pathlib.Path) -> Iterator[ServerState]:
    open_store(str(tmp_path / "seqrun.db"))
    inbox = WebhookInbox({"echo": ["t-0", "t-1"]}, clock=lambda: AT)
    inbox.mount("echo", Echo())
    woken: list[int] = []
    state = ServerState(inbox=inbox, metrics=Metrics(clock=lambda: AT), clock=lambda: AT,
                        wake=lambda: woken.append(1))
    state.woken = woken  # type: ignore[attr-defined]
    yield state
    db.close()


def test_a_verified_delivery_is_stored_before_its_2xx_and_a_retry_changes_nothing(state: ServerState) -> None:
    with served(state) as url:
        first = post(url + "/webhooks/echo", ONE)
        assert (first.status_code, first.json()) == (200, {"status": 200, "reason": "ok"})
        assert [e.event_id for e in take_stored(AT)] == ["e-1"]  # there when the answer came
        again = post(url + "/webhooks/echo", ONE, token="t-0")  # a retry, signed with the other secret
        assert (again.status_code, again.json()) == (200, {"status": 200, "reason": "duplicate"})
        assert take_stored(AT) == []
    assert state.woken == [1]  # type: ignore[attr-defined]  # only the new delivery woke the engine
    assert [(d.provider, d.verdict, d.reason, d.status) for d in state.deliveries.recent()] == [
        ("echo", VERIFIED, "ok", 200), ("echo", DUPLICATE, "duplicate", 200)]


@pytest.mark.parametrize(("path", "body", "headers", "status", "reason"), [
    ("/webhooks/echo", ONE, {"X-Token": "forged"}, 401, "webhook refused: bad token"),
    ("/webhooks/echo", ONE, {"X-Token": ""}, 401, "webhook refused: bad token"),
    ("/webhooks/echo", {"nope": 1}, {}, 400, "webhook body refused"),
    ("/webhooks/echo", ONE, {"Content-Type": "text/plain"}, 415, "content type must be application/json, got text/plain"),
    ("/webhooks/echo", ONE, {"Content-Type": ""}, 415, "content type must be application/json, got none"),
    ("/webhooks/echo", b"x" * (1024 * 1024 + 1), {}, 413, "body over 1048576 bytes"),
    ("/webhooks/nobody", ONE, {}, 404, "no webhooks are taken for nobody"),
    ("/webhooks/echo/below", ONE, {}, 404, "not a webhook endpoint"),
])
def test_a_refused_delivery_gets_4xx_and_nothing_is_stored(state: ServerState, path: str, body: object,
                                                           headers: dict[str, str], status: int, reason: str) -> None:
    with served(state) as url:
        answer = post(url + path, body, **headers)
        assert (answer.status_code, answer.json()) == (status, {"status": status, "reason": reason})
    assert take_stored(AT) == []
    assert state.woken == []  # type: ignore[attr-defined]
    (delivery,) = state.deliveries.recent()
    assert (delivery.verdict, delivery.reason, delivery.status) == (REJECTED, reason, status)
    assert delivery.provider == ("unknown" if path == "/webhooks/nobody" else "echo")


def test_a_chunked_body_is_refused_once_it_passes_the_limit_without_being_read_whole(state: ServerState) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):  # 4 MiB offered; the answer comes after a little over 1 MiB
            yield b"{" * 65536

    with served(state) as url:
        answer = httpx.post(url + "/webhooks/echo", content=chunks(),
                            headers={"Content-Type": "application/json", "X-Token": "t-1"})
    assert (answer.status_code, answer.json()) == (413, {"status": 413, "reason": "body over 1048576 bytes"})
    assert take_stored(AT) == []


def test_health_readiness_and_metrics(state: ServerState) -> None:
    with served(state) as url:
        assert httpx.get(url + "/healthz").json() == {"alive": True}
        starting = httpx.get(url + "/readyz")
        assert (starting.status_code, starting.json()) == (503, {"ready": False, "checks": {
            "database": "ok", "migrations": "ok", "senders": "starting"}})
        state.readiness.started = True
        ready = httpx.get(url + "/readyz")
        assert (ready.status_code, ready.json()) == (200, {"ready": True, "checks": {
            "database": "ok", "migrations": "ok", "senders": "ok"}})
        post(url + "/webhooks/echo", ONE)
        post(url + "/webhooks/echo", ONE, token="forged")
        metrics = httpx.get(url + "/metrics")
    assert metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = metrics.text
    assert 'seqrun_webhooks_total{provider="echo",verdict="verified"} 1.0' in text
    assert 'seqrun_webhooks_total{provider="echo",verdict="rejected"} 1.0' in text
    assert "seqrun_queue_depth 0.0" in text
    assert "seqrun_inbox_lag_seconds 0.0" in text  # the clock stands still in this test
    assert "# TYPE seqrun_loop_seconds histogram" in text


def test_the_inbox_lag_is_the_oldest_pending_event_in_the_database(state: ServerState) -> None:
    # Stored by a poll or by another process: this process never saw it arrive.
    store_inbox.append([Received(ProviderEvent("p-1", "replied", AT - dt.timedelta(minutes=5), lead_key="ann"))],
                       source="poll", provider="echo", received_at=AT - dt.timedelta(seconds=90))
    store_inbox.append([Received(ProviderEvent("p-2", "replied", AT, lead_key="bob"))],
                       source="poll", provider="echo", received_at=AT - dt.timedelta(seconds=30))
    with served(state) as url:
        lagging = httpx.get(url + "/metrics").text
        take_stored(AT)  # the engine applies them
        caught_up = httpx.get(url + "/metrics").text
    assert "seqrun_inbox_lag_seconds 90.0" in lagging
    assert "seqrun_inbox_lag_seconds 0.0" in caught_up


def test_the_dashboard_is_mounted_after_the_routes_it_cannot_shadow(state: ServerState) -> None:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def page(request: object) -> PlainTextResponse:
        return PlainTextResponse("dashboard")

    dashboard = Starlette(routes=[Route("/", page), Route("/healthz", page)])
    with served(state, dashboard=dashboard) as url:
        assert httpx.get(url + "/").text == "dashboard"
        assert httpx.get(url + "/healthz").json() == {"alive": True}



def test_a_refused_delivery_is_logged_once(state: ServerState, caplog: pytest.LogCaptureFixture) -> None:
    # `seqrun serve` logged every refusal twice: by runner.webhooks and by runner.server.receiving.
    with caplog.at_level("INFO"), served(state) as url:
        post(url + "/webhooks/echo", ONE, token="forged")
    assert [(r.name, r.getMessage()) for r in caplog.records if "refused" in r.getMessage()] == [
        ("runner.server.receiving", "webhook for echo refused (401): webhook refused: bad token")]
