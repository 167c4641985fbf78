"""The daemon's HTTP side: a Starlette app with the webhook receiver, health, readiness and metrics.

    app = create_app(state, dashboard=None)

Routes:

- `POST /webhooks/{provider}` and `POST /webhooks/{provider}/{path}`: `runner.server.receiving`;
- `GET /healthz`: 200 `{"alive": true}` while the process runs;
- `GET /readyz`: 200 or 503 with the checks (`runner.server.health`);
- `GET /metrics`: the Prometheus text format (`runner.server.metrics`);
- everything else goes to `dashboard` when one is given: an ASGI app (a Starlette app or router,
  `runner/server/dashboard/`) mounted at `/`, after the routes above, so it cannot shadow them. It
  finds the shared state on `request.app.state.seqrun` only if it is a plain router; a Starlette
  app of its own gets what it needs when it is built. The delivery log it shows is
  `state.deliveries` (`runner.server.deliveries.DeliveryLog`).

The app never touches the engine directly: a verified delivery calls `state.wake()`, and the
lifecycle (`runner.server.lifecycle`) runs the engine loop in its own thread.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from runner.server import receiving
from runner.server.deliveries import DeliveryLog
from runner.server.health import Readiness
from runner.server.metrics import CONTENT_TYPE, Metrics
from runner.webhooks import WebhookInbox


@dataclass
class ServerState:
    """What the routes share with the rest of the daemon."""

    inbox: WebhookInbox
    metrics: Metrics
    clock: Callable[[], dt.datetime]
    wake: Callable[[], None] = lambda: None  # asks the engine loop for a pass now
    deliveries: DeliveryLog = field(default_factory=DeliveryLog)
    readiness: Readiness = field(default_factory=Readiness)
    body_limit: int = receiving.BODY_LIMIT


async def healthz(request: Request) -> Response:
    return JSONResponse({"alive": True})


async def readyz(request: Request) -> Response:
    state: ServerState = request.app.state.seqrun
    ok, body = await run_in_threadpool(state.readiness.check)
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    state: ServerState = request.app.state.seqrun
    return Response(await run_in_threadpool(state.metrics.render), media_type=CONTENT_TYPE)


def create_app(state: ServerState, *, dashboard: ASGIApp | None = None) -> Starlette:
    """The app `seqrun serve` runs; `dashboard` (an ASGI app) is mounted at `/` after the routes."""
    routes: list[BaseRoute] = [
        Route("/webhooks/{provider}", receiving.receive, methods=["POST"]),
        Route("/webhooks/{provider}/{path:path}", receiving.receive, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    if dashboard is not None:
        routes.append(Mount("/", app=dashboard))
    app = Starlette(routes=routes)
    app.state.seqrun = state
    return app
