"""Provider registry: what each provider can do, and how to build its driver.

`CAPABILITIES` covers every provider a sequence may name (the sequence schema's `provider` enum is
checked against it); `PROVIDERS` maps the providers that have a driver in this version to their
factory. Adding a provider is one module plus one entry in each dict; an HTTP provider also gets
its public API in `BASE_URLS`, its default request rate in `DEFAULT_REQUESTS_PER_MINUTE`, and its
fake server in `runner.wire.FAKES`; a provider that caps an action per account over its own window
(a week, a UTC day) lists it in `QUOTAS`.
"""
from __future__ import annotations

from typing import Callable

from .base import Provider
from .quotas import Quota

CAPABILITIES: dict[str, frozenset[str]] = {
    "sandbox": frozenset({"visit", "connect", "message", "inmail", "withdraw"}),
    # Salesflow's public API documents no profile-visit endpoint.
    "salesflow": frozenset({"connect", "message", "inmail", "withdraw"}),
    "edges": frozenset({"visit", "connect", "message", "inmail", "withdraw"}),
    "connectsafely": frozenset({"visit", "connect", "message", "inmail", "withdraw"}),
}


def _sandbox_factory(**options: object) -> Provider:
    from .sandbox import SandboxProvider

    return SandboxProvider(**options)  # type: ignore[arg-type]


def _edges_factory(**options: object) -> Provider:
    from .edges.driver import EdgesProvider

    return EdgesProvider(**options)  # type: ignore[arg-type]


def _connectsafely_factory(**options: object) -> Provider:
    from .connectsafely.driver import ConnectSafelyProvider

    return ConnectSafelyProvider(**options)  # type: ignore[arg-type]


#: provider name -> factory(**options) for the drivers shipped in this version.
PROVIDERS: dict[str, Callable[..., Provider]] = {
    "sandbox": _sandbox_factory,
    "edges": _edges_factory,
    "connectsafely": _connectsafely_factory,
}

#: The public API of each HTTP provider, used when a sender's config gives no `base_url`.
BASE_URLS: dict[str, str] = {
    "edges": "https://api.edges.run/v1",
    "connectsafely": "https://api.connectsafely.ai/linkedin",
}

#: API requests per minute per key when a sender's config gives no `requests_per_minute`
#: (Edges' smallest plan, Trial, allows 30; ConnectSafely allows 60 per key).
DEFAULT_REQUESTS_PER_MINUTE: dict[str, int] = {
    "edges": 30,
    "connectsafely": 60,
}

#: Quotas a provider counts per LinkedIn account over its own window, shown by `seqrun status` and
#: simulate's report and checked by its audit; the driver refuses an action over one (LIMIT_REACHED).
#: Only quotas seqrun can count from its audit log are listed (ConnectSafely's 150 new conversations
#: a day is kept by the driver alone: the log does not say which message started a conversation).
QUOTAS: dict[str, tuple[Quota, ...]] = {
    "connectsafely": (Quota("connect", 90, "week"),),
}
