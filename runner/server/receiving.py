"""`POST /webhooks/{provider}[/{path}]`: one delivery in, verified and stored before it is answered.

For each delivery, in this order (the first failure answers, and nothing is stored):

1. the provider must be one whose webhooks this process takes (a mounted driver): else 404;
2. the content type must be JSON (`application/json` or `application/*+json`): else 415;
3. the body is read raw, at most `body_limit` bytes (1 MiB): a larger `Content-Length` is refused
   before a byte is read, a chunked body as soon as it passes the limit: 413;
4. `runner.webhooks.WebhookInbox.receive` verifies it with the driver's verifier (constant time,
   timestamp tolerance where the provider signs one) and stores its events, de-duplicated by event
   id, committed; a forged, unsigned or replayed delivery is 401, a malformed one 400;
5. only then the answer: 200 `ok` (verified, something new: the engine is woken at once) or 200
   `duplicate` (verified, nothing new: nothing changed).

The answer is JSON `{"status": N, "reason": "..."}`. Every delivery, refused or not, is recorded in
the app's `DeliveryLog` and counted in the metrics; the URL below the provider (a campaign's token)
is never logged or kept.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from runner.server.deliveries import DUPLICATE, REJECTED, VERIFIED, Delivery
from runner.terminal import printable

if TYPE_CHECKING:
    from runner.server.app import ServerState

log = logging.getLogger(__name__)

BODY_LIMIT = 1024 * 1024
#: the reason `WebhookInbox.receive` gives a verified delivery that brought no new event
DUPLICATE_REASON = "duplicate"
UNKNOWN = "unknown"  # the metrics' provider label for a name nobody takes (never the name itself)


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


async def receive(request: Request) -> JSONResponse:
    state: ServerState = request.app.state.seqrun
    started = time.perf_counter()
    provider = request.path_params["provider"]
    below = request.path_params.get("path", "")
    known = provider in state.inbox.providers
    try:
        if not known:
            raise _Refused(404, f"no webhooks are taken for {_shown(provider)}")
        _check_content_type(request.headers.get("content-type"))
        body = await _read_body(request, state.body_limit)
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, reason = await run_in_threadpool(state.inbox.receive, provider, headers, body, path=below)
    except _Refused as refused:
        status, reason = refused.status, refused.reason
    if 200 <= status < 300:
        verdict = DUPLICATE if reason == DUPLICATE_REASON else VERIFIED
        if verdict == VERIFIED:
            state.wake()  # an acceptance or a reply moves its lead now, not at the next pass
    else:
        verdict = REJECTED
    label = provider if known else UNKNOWN
    state.deliveries.record(Delivery(at=state.clock(), provider=label, verdict=verdict,
                                     reason=reason, status=status))
    state.metrics.webhooks.labels(label, verdict).inc()
    state.metrics.webhook_seconds.observe(time.perf_counter() - started)
    if verdict == REJECTED:
        log.warning("webhook for %s refused (%d): %s", label, status, reason,
                    extra={"provider": label, "verdict": verdict, "status": status})
    else:
        log.info("webhook for %s: %s", label, verdict, extra={"provider": label, "verdict": verdict, "status": status})
    return JSONResponse({"status": status, "reason": reason}, status_code=status)


def _shown(name: str) -> str:
    return printable(name[:64])


def _check_content_type(value: str | None) -> None:
    media = (value or "").split(";", 1)[0].strip().lower()
    kind, _, sub = media.partition("/")
    if kind == "application" and (sub == "json" or sub.endswith("+json")):
        return
    raise _Refused(415, f"content type must be application/json, got {_shown(media) or 'none'}")


async def _read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused (413) as soon as it is known to pass `limit`, without reading the rest."""
    declared = request.headers.get("content-length")
    # The HTTP server already refused a content-length that is not a number.
    if declared is not None and int(declared) > limit:
        raise _Refused(413, f"body over {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise _Refused(413, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
