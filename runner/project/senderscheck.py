"""`seqrun senders check`: ask each sender's provider whether the sender is ready to run.

For every sender: are the credentials there and accepted, is the LinkedIn account usable, what is
its own LinkedIn id (stored on the sender for reply detection), and the provider's own limits where
its API tells them. Nothing here prints; the command turns the reports into text or JSON.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.language.diagnostics import UserError
from runner.project.config import Config, SenderConfig, resolve_credentials
from runner.providers.base import Account, ErrorKind, Provider, ProviderError, SenderCheck
from runner.providers.http import redact, register_secret
from runner.store.senders import store_profile_id


@dataclass(frozen=True, slots=True)
class SenderReport:
    name: str
    provider: str
    ready: bool
    credentials: str
    account_status: str
    profile_id: str | None = None
    limits: Mapping[str, Any] = field(default_factory=dict)
    problem: str | None = None
    #: action -> (seqrun.yaml's daily cap, the provider's lower one): `run` keeps to the provider's
    lowered: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)  # e.g. a Salesflow campaign's status

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"limits": dict(self.limits),
                                           "lowered": {a: list(v) for a, v in self.lowered.items()},
                                           "details": dict(self.details)}


def selected(config: Config, names: Iterable[str]) -> list[SenderConfig]:
    """The named senders (all when none is named); an unknown name is a UserError."""
    wanted = list(names)
    unknown = [n for n in wanted if config.sender(n) is None]
    if unknown:
        raise UserError(f"no sender named {', '.join(unknown)} in seqrun.yaml "
                        f"(defined: {', '.join(config.sender_names) or 'none'})")
    return [s for s in config.senders if not wanted or s.name in wanted]


def check(senders: list[SenderConfig], provider_for: Callable[[SenderConfig, Mapping[str, str]], Provider]
          ) -> list[SenderReport]:
    """One report per sender, in order; one sender's failure never hides the others'."""
    reports = []
    shared: dict[str, Provider] = {}
    for sc in senders:
        try:
            credentials = resolve_credentials(sc)
        except UserError as exc:
            reports.append(SenderReport(sc.name, sc.provider, False, "missing", "unknown",
                                        problem=f"{exc}; export it, then check again"))
            continue
        for value in credentials.values():
            register_secret(value)
        share = f"{sc.provider} {sc.base_url or ''}"
        provider = shared.get(share) or provider_for(sc, credentials)
        shared.setdefault(share, provider)
        account = Account(sender=sc.name, account_id=sc.account_id, account_type=sc.account_type,
                          profile_id=sc.profile_id, credentials=credentials, settings=sc.settings)
        reports.append(_one(sc, provider, account))
    for provider in shared.values():
        close = getattr(provider, "close", None)
        if callable(close):
            close()
    return reports


def _one(sc: SenderConfig, provider: Provider, account: Account) -> SenderReport:
    probe = getattr(provider, "check", None)
    try:
        result: SenderCheck = probe(account) if callable(probe) else SenderCheck(True, "ok", "unknown")
    except ProviderError as err:
        status = "rejected" if err.kind is ErrorKind.API_KEY_REJECTED else "unknown"
        result = SenderCheck(False, status, "unknown", problem=redact(err.message))
    return SenderReport(sc.name, sc.provider, result.ready, result.credentials, result.account_status,
                        result.profile_id, dict(result.limits), result.problem, _lowered(sc, result.limits),
                        dict(result.details))


def _lowered(sc: SenderConfig, limits: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """Caps of seqrun.yaml above the provider's own daily limits (seqrun keeps to the provider's)."""
    out = {}
    ours = sc.daily_limits
    for action, value in limits.items():
        theirs = value.get("limit") if isinstance(value, Mapping) else None
        if isinstance(theirs, int) and "remaining" not in value and action in ours and ours[action] > theirs:
            out[action] = (ours[action], theirs)
    return out


def store_profile_ids(reports: list[SenderReport], config: Config) -> int:
    """Keep each ready sender's own LinkedIn id on its row, unless seqrun.yaml names one."""
    changed = 0
    for report in reports:
        sc = config.sender(report.name)
        if report.profile_id and sc is not None and not sc.profile_id:
            changed += store_profile_id(report.name, report.profile_id)
    return changed
