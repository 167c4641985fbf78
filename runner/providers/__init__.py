"""Provider registry: what each provider can do, and how to build its driver.

`CAPABILITIES` covers every provider a sequence may name (the sequence schema's `provider` enum is
checked against it); `PROVIDERS` maps the providers that have a driver in this version to their
factory. Adding a provider is one module plus one entry in each dict; an HTTP provider also gets
its public API in `BASE_URLS`, its default request rate in `DEFAULT_REQUESTS_PER_MINUTE`, and its
fake server in `runner.wire.FAKES`; a provider that caps an action per account over its own window
(a week, a UTC day) lists it in `QUOTAS`.
"""
from __future__ import annotations

from collections.abc import Callable

from runner.providers.base import Provider
from runner.providers.quotas import Quota

CAPABILITIES: dict[str, frozenset[str]] = {
    "sandbox": frozenset({"visit", "connect", "message", "inmail", "withdraw"}),
    # Salesflow's public API documents no profile-visit endpoint.
    "salesflow": frozenset({"connect", "message", "inmail", "withdraw"}),
    "edges": frozenset({"visit", "connect", "message", "inmail", "withdraw"}),
    "connectsafely": frozenset({"visit", "connect", "message", "inmail", "withdraw"}),
    # A Salesflow campaign (the v1 public API, seed 002) visits, invites, messages and withdraws on
    # its own: seqrun's `connect` imports the lead into it, and seqrun follows what happens.
    "salesflow-campaign": frozenset({"connect"}),
}

_CAMPAIGN = ("the Salesflow campaign does that itself; seqrun only imports leads into the campaign (connect) "
             "and follows what happens (wait_for accepted / replied, tag, notify, branch, end)")

#: Why a provider cannot do what it cannot, where the reason helps the person writing the sequence;
#: "note" is a connect step with a note. `seqrun validate` shows the reason with the refusal.
WHY_NOT: dict[str, dict[str, str]] = {
    "salesflow-campaign": {
        "visit": _CAMPAIGN, "message": _CAMPAIGN, "inmail": _CAMPAIGN,
        "withdraw": "the Salesflow campaign withdraws invitations itself (its own settings); seqrun hears of it "
                    "as INVITATION_WITHDRAWN",
        "note": "the campaign sends its own invitation message (members/Import takes no note); remove `note:`",
    },
}


def why_not(provider: str, ability: str) -> str | None:
    """The reason `provider` cannot do `ability` (visit, connect, message, inmail, withdraw, note), if known."""
    return WHY_NOT.get(provider, {}).get(ability)


def _sandbox_factory(**options: object) -> Provider:
    from runner.providers.sandbox import SandboxProvider

    return SandboxProvider(**options)  # type: ignore[arg-type]


def _edges_factory(**options: object) -> Provider:
    from runner.providers.edges.driver import EdgesProvider

    return EdgesProvider(**options)  # type: ignore[arg-type]


def _salesflow_factory(**options: object) -> Provider:
    from runner.providers.salesflow.driver import SalesflowProvider

    return SalesflowProvider(**options)  # type: ignore[arg-type]


def _connectsafely_factory(**options: object) -> Provider:
    from runner.providers.connectsafely.driver import ConnectSafelyProvider

    return ConnectSafelyProvider(**options)  # type: ignore[arg-type]


def _salesflow_campaign_factory(**options: object) -> Provider:
    from runner.providers.salesflow_campaign.driver import CampaignProvider

    return CampaignProvider(**options)  # type: ignore[arg-type]


#: provider name -> factory(**options) for the drivers shipped in this version.
PROVIDERS: dict[str, Callable[..., Provider]] = {
    "sandbox": _sandbox_factory,
    "edges": _edges_factory,
    "salesflow": _salesflow_factory,
    "connectsafely": _connectsafely_factory,
    "salesflow-campaign": _salesflow_campaign_factory,
}

#: The public API of each HTTP provider, used when a sender's config gives no `base_url`.
BASE_URLS: dict[str, str] = {
    "edges": "https://api.edges.run/v1",
    # The docs' samples disagree (`/public/v1/…`, `/public/api/v1/…`); paths are `api/v1/…` below this.
    "salesflow": "https://api.salesflow.io/public",
    "connectsafely": "https://api.connectsafely.ai/linkedin",
    "salesflow-campaign": "https://mvc.salesflow.io/api",
}

#: Providers that report some things only by webhook, and what `seqrun run` (which receives no
#: webhooks) therefore misses; `seqrun serve` receives them.
WEBHOOK_ONLY: dict[str, str] = {
    "salesflow": "replies (its inbox syncs answer only by webhook)",
}

#: API requests per minute per key when a sender's config gives no `requests_per_minute`
#: (Edges' smallest plan, Trial, allows 30; ConnectSafely allows 60 per key; Salesflow documents none).
DEFAULT_REQUESTS_PER_MINUTE: dict[str, int] = {
    "edges": 30,
    "salesflow": 60,
    "connectsafely": 60,
    # Salesflow documents no request rate for its v1 API either; one request every two seconds is gentle.
    "salesflow-campaign": 30,
}

#: Quotas a provider counts per LinkedIn account over its own window, shown by `seqrun status` and
#: simulate's report and checked by its audit; the driver refuses an action over one (LIMIT_REACHED).
#: Only quotas seqrun can count from its audit log are listed (ConnectSafely's 150 new conversations
#: a day is kept by the driver alone: the log does not say which message started a conversation).
QUOTAS: dict[str, tuple[Quota, ...]] = {
    "connectsafely": (Quota("connect", 90, "week"),),
}
