"""The HTTP foundation's error vocabulary, client and redaction, without a driver."""
from __future__ import annotations

import datetime as dt
import logging

import httpx
import pytest

from runner import __version__
from runner.providers.base import ErrorKind, ProviderError
from runner.providers.http import (
    ErrorBody,
    RequestBudget,
    error_from_response,
    install_log_redaction,
    make_client,
    redact_url,
    register_secret,
    reset_header,
    retry_after,
    status_kind,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120", NOW) == NOW + dt.timedelta(seconds=120)
    assert retry_after(30, NOW) == NOW + dt.timedelta(seconds=30)
    assert retry_after("Mon, 02 Mar 2026 09:05:00 GMT", NOW) == NOW + dt.timedelta(minutes=5)
    assert retry_after("soon", NOW) is None and retry_after(None, NOW) is None


def test_rate_limit_reset_is_epoch_seconds_or_a_delay() -> None:
    assert reset_header(str(int((NOW + dt.timedelta(minutes=1)).timestamp())), NOW) == NOW + dt.timedelta(minutes=1)
    assert reset_header("45", NOW) == NOW + dt.timedelta(seconds=45)


@pytest.mark.parametrize(("status", "kind"), [
    (400, ErrorKind.INVALID_INPUT), (401, ErrorKind.API_KEY_REJECTED), (402, ErrorKind.API_KEY_REJECTED),
    (403, ErrorKind.API_KEY_REJECTED), (404, ErrorKind.NOT_FOUND), (422, ErrorKind.INVALID_INPUT),
    (429, ErrorKind.RATE_LIMITED), (500, ErrorKind.TRANSIENT), (503, ErrorKind.TRANSIENT),
])
def test_status_without_a_known_label(status: int, kind: ErrorKind) -> None:
    assert status_kind(status) is kind


def test_the_latest_retry_time_wins_and_a_limit_without_one_waits_for_midnight() -> None:
    response = httpx.Response(429, headers={"Retry-After": "60"})
    body = ErrorBody("LIMIT_REACHED", "daily limit", {"postponed_until": "2026-03-02T12:00:00Z"})
    err = error_from_response(response, body, NOW, labels={"LIMIT_REACHED": ErrorKind.LIMIT_REACHED}, provider="X")
    assert (err.kind, err.retry_at, err.status, err.label) == (
        ErrorKind.LIMIT_REACHED, dt.datetime(2026, 3, 2, 12, tzinfo=UTC), 429, "LIMIT_REACHED")
    assert err.message == "X answered 429 LIMIT_REACHED: daily limit"
    bare = error_from_response(httpx.Response(429), ErrorBody("LIMIT_REACHED", "", {}), NOW,
                               labels={"LIMIT_REACHED": ErrorKind.LIMIT_REACHED}, provider="X")
    assert bare.retry_at == dt.datetime(2026, 3, 3, tzinfo=UTC)


def test_a_401_is_api_key_rejected_whatever_its_label() -> None:
    err = error_from_response(httpx.Response(401), ErrorBody("AUTH_EXPIRED", "nope", {}), NOW,
                              labels={"AUTH_EXPIRED": ErrorKind.AUTH_EXPIRED}, provider="X")
    assert err.kind is ErrorKind.API_KEY_REJECTED


def test_client_has_base_url_user_agent_and_timeouts() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with make_client("https://api.example/v1", transport=httpx.MockTransport(handler)) as client:
        client.post("actions/x/run/live", json={})
        assert client.timeout == httpx.Timeout(30.0, connect=10.0)
    (request,) = seen
    assert str(request.url) == "https://api.example/v1/actions/x/run/live"
    assert request.headers["User-Agent"].startswith(f"seqrun/{__version__} ")


def test_redact_url_keeps_host_and_path_only() -> None:
    assert redact_url("https://user:pw@api.example:8443/v1/x?token=abc#frag") == \
        "https://api.example:8443/v1/x?[redacted]"


def test_a_logged_traceback_carries_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    # The record's message was redacted as it was made; the traceback beside it, formatted later by
    # whichever handler prints it, was not.
    install_log_redaction()
    register_secret("tb-secret-2c9e71f0")
    caplog.set_level(logging.DEBUG)
    try:
        raise RuntimeError("refused tb-secret-2c9e71f0 at https://crm.example/hook?token=tb-token-88aa")
    except RuntimeError:
        logging.getLogger("runner.engine.loop").exception("lead %s failed unexpectedly", "anna")
    assert "lead anna failed unexpectedly" in caplog.text and "RuntimeError: refused [redacted]" in caplog.text
    assert "tb-secret-2c9e71f0" not in caplog.text and "tb-token-88aa" not in caplog.text


class _Holds:
    """The store's part in a request budget, as a dict, counting reads."""

    def __init__(self) -> None:
        self.until: dict[str, dt.datetime] = {}
        self.reads = 0

    def held_until(self, key: str) -> dt.datetime | None:
        self.reads += 1
        return self.until.get(key)

    def hold(self, key: str, until: dt.datetime) -> None:
        self.until[key] = max(until, self.until.get(key, until))


def test_a_429_held_by_one_budget_holds_every_budget_sharing_its_holds() -> None:
    wall = dt.datetime(2026, 3, 3, 10, 0, tzinfo=dt.UTC)
    seconds = [0.0]
    holds = _Holds()

    def budget() -> RequestBudget:
        return RequestBudget(600, clock=lambda: seconds[0], sleep=lambda s: None, wall=lambda: wall, holds=holds)

    first, second = budget(), budget()
    second.acquire("key")  # read the (absent) hold before its first request
    first.blocked("key", wall + dt.timedelta(hours=1))
    assert holds.until == {"key": wall + dt.timedelta(hours=1)}
    with pytest.raises(ProviderError) as refused:
        budget().acquire("key")  # a new runner
    assert refused.value.kind is ErrorKind.RATE_LIMITED and refused.value.retry_at == wall + dt.timedelta(hours=1)
    second.acquire("key")  # read less than a minute ago: one query a minute, not one per request
    assert holds.reads == 2
    seconds[0] += 60
    with pytest.raises(ProviderError):
        second.acquire("key")
    seconds[0] += 3600
    wall += dt.timedelta(hours=1)
    budget().acquire("key")
