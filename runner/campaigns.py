"""What the CLI does with the Salesflow campaigns of `salesflow-campaign` senders, beyond running.

- `set_up_webhook`: the sender's campaign webhook (created and attached idempotently, or removed),
  at the daemon's URL with the sender's token (never shown: `shown_url` masks it);
- `remove_from_campaigns`: blocked profiles leave the campaigns they were imported into
  (DeleteContact), nothing else in the campaign is touched;
- `campaign_leads`: a campaign's members as lead rows, for `seqrun leads import --from-campaign`,
  checked like the rows of a CSV.
Each builds the sender's real driver from seqrun.yaml and the environment; nothing here prints.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from runner.language.diagnostics import UserError
from runner.language.urls import normalize_profile_url
from runner.project.config import Config, SenderConfig, resolve_credentials
from runner.project.leadsfile import DUPLICATE, MISSING_FIELD, MISSING_URL, URL_FIELD, LeadRow, LeadsFile, RowProblem
from runner.providers.base import Account, LeadRef, ProviderError
from runner.providers.http import MASK, redact, register_secret
from runner.providers.salesflow_campaign.admin import WebhookChange
from runner.providers.salesflow_campaign.driver import CampaignProvider
from runner.providers.salesflow_campaign.members import PROVIDER
from runner.providers.salesflow_campaign.webhook import ROUTE, webhook_url
from runner.store.enrollments import enrolled_with

_BASE_URL = re.compile(r"https?://[^\s?#]+")


def campaign_sender(config: Config, name: str) -> SenderConfig:
    """The sender called `name`, which must act through a Salesflow campaign."""
    sender = config.sender(name)
    if sender is None:
        raise UserError(f"no sender named {name} in seqrun.yaml (defined: {', '.join(config.sender_names) or 'none'})")
    if sender.provider != PROVIDER:
        raise UserError(f"sender {name} acts through {sender.provider}; campaign webhooks exist only for "
                        f"{PROVIDER} senders")
    return sender


def _driver_and_account(config: Config, sender: SenderConfig) -> tuple[CampaignProvider, Account]:
    from runner.project.discovery import real_provider_for

    credentials = resolve_credentials(sender)
    for value in credentials.values():
        register_secret(value)
    driver = real_provider_for(config)(sender, credentials)
    assert isinstance(driver, CampaignProvider), f"{sender.provider} built {type(driver).__name__}"
    account = Account(sender=sender.name, account_id=sender.account_id, account_type=sender.account_type,
                      profile_id=sender.profile_id, credentials=credentials, settings=sender.settings)
    return driver, account


def shown_url(base_url: str, sender: str) -> str:
    return f"{base_url.rstrip('/')}/{ROUTE}/{sender}/{MASK}"


def set_up_webhook(config: Config, sender: SenderConfig, base_url: str, *,
                   remove: bool = False) -> tuple[WebhookChange, str]:
    """Create and attach (or detach and delete) the sender's webhook; (the change, the URL as shown)."""
    if not _BASE_URL.fullmatch(base_url):
        raise UserError("--url: expected the daemon's public http(s) address without query string or fragment, "
                        "like https://hooks.example.com (the value is not shown)")
    credentials = resolve_credentials(sender)
    secret = credentials.get("webhook_secret")
    if not secret:
        raise UserError(f"sender {sender.name} needs credentials_env.webhook_secret: the name of an environment "
                        "variable holding a long random secret (for instance the output of "
                        "`python3 -c \"import secrets; print(secrets.token_urlsafe(32))\"`); seqrun derives the "
                        "webhook URL's token from it")
    driver, account = _driver_and_account(config, sender)
    url = webhook_url(base_url, sender.name, secret)  # its token is a registered secret from here on
    try:
        change = driver.remove_webhook(account, url) if remove else driver.setup_webhook(account, url)
    except ProviderError as err:
        raise UserError(f"sender {sender.name}: {redact(err.message)}") from None
    finally:
        driver.close()
    return change, shown_url(base_url, sender.name)


@dataclass(frozen=True, slots=True)
class Removal:
    """One blocked lead and its campaign: the MemberId removed, or why it was not."""

    profile_url: str
    sender: str
    member_id: str | None = None  # removed
    problem: str | None = None  # could not ask Salesflow (the block itself stands)


def remove_from_campaigns(config: Config, keys: Iterable[str]) -> list[Removal]:
    """DeleteContact, in its sender's campaign, of every lead among `keys` enrolled with a
    salesflow-campaign sender (any state: a finished lead may still be a member)."""
    campaign_senders = {s.name: s for s in config.senders if s.provider == PROVIDER}
    if not campaign_senders:
        return []
    wanted = list(dict.fromkeys(keys))
    rows = enrolled_with(wanted, list(campaign_senders))
    seen: set[tuple[str, str]] = set()
    drivers: dict[str, tuple[CampaignProvider, Account]] = {}
    out: list[Removal] = []
    try:
        for key, url, provider_ids, name in rows:
            if (key, name) in seen:
                continue
            seen.add((key, name))
            try:
                if name not in drivers:
                    drivers[name] = _driver_and_account(config, campaign_senders[name])
                driver, account = drivers[name]
                ref = LeadRef(key=key, profile_url=url, provider_ids=dict(provider_ids or {}))
                removed = driver.remove_member(account, ref)
                out.append(Removal(url, name, member_id=removed))
            except (ProviderError, UserError) as err:
                message = err.message if isinstance(err, ProviderError) else str(err)
                out.append(Removal(url, name, problem=redact(message)))
    finally:
        for driver, _ in drivers.values():
            driver.close()
    return out


def campaign_leads(config: Config, name: str, source: str, *, required_fields: Iterable[str] = ()) -> LeadsFile:
    """The members of sender `name`'s campaign as lead rows, checked as a CSV's rows are (a member
    without a public profile, a duplicate, a required field it lacks); rows are numbered in the
    campaign's list from 2, as a spreadsheet would under its header. `source` names them in messages."""
    sender = campaign_sender(config, name)
    driver, account = _driver_and_account(config, sender)
    try:
        members = driver.campaign_members(account)
    except ProviderError as err:
        raise UserError(f"sender {name}: could not list campaign {sender.campaign_id}: {redact(err.message)}") from None
    finally:
        driver.close()
    required = list(required_fields)
    rows: list[LeadRow] = []
    seen: dict[str, int] = {}
    for number, member in enumerate(members, start=2):
        errors: list[str] = []
        key = canonical = None
        if member.profile_url is None:
            errors.append(RowProblem(f"Salesflow member {member.member_id or '?'} has no public profile URL",
                                     MISSING_URL))
        else:
            key, canonical = normalize_profile_url(member.profile_url)
            if key in seen:
                errors.append(RowProblem(f"duplicate of row {seen[key]} ({canonical})", DUPLICATE))
            seen.setdefault(key, number)
        fields = dict(member.fields)
        errors += [RowProblem(f"required field {column} is empty", MISSING_FIELD)
                   for column in required if not fields.get(column)]
        if canonical:
            fields[URL_FIELD] = canonical
        rows.append(LeadRow(row=number, line=number, fields=fields, key=key, profile_url=canonical,
                            errors=tuple(errors)))
    columns = tuple(dict.fromkeys(column for row in rows for column in row.fields))
    return LeadsFile(path=source, columns=columns, rows=rows)
