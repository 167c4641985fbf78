"""Assembling a project for the commands: finding it, its sequences, config, store, runtime.

`open_project` finds the project around the working directory (its seqrun.yaml, and one sequence of
its sequences/ by name) for every command that works on a project's database;
`load_sequences` loads sequence files and fails loudly (UserError with every diagnostic) when any has
errors; `sync_senders` writes the configured senders into the store; `build_runtime` binds each
sender to its provider driver with credentials from the environment. Configuration errors surface
here, at start-up, never in the middle of a tick.
"""
from __future__ import annotations

import datetime as dt
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from runner.engine.limits import SenderCaps
from runner.engine.runtime import Notifier, Runtime, SenderRuntime
from runner.language.calendar import resolve_zone
from runner.language.diagnostics import Diagnostic, UserError, error, has_errors
from runner.language.loader import load_paths
from runner.language.model import ActionStep, Calendar, Sequence
from runner.language.paths import SANDBOX_STATE_SUFFIX
from runner.language.templates import check_sequence_templates
from runner.project.config import (
    Config,
    SenderConfig,
    default_limits,
    load_project_config,
    project_dir,
    resolve_credentials,
)
from runner.providers import BASE_URLS, DEFAULT_REQUESTS_PER_MINUTE, PROVIDERS
from runner.providers.base import Account, Provider
from runner.providers.http import RequestBudget, budget_key, make_client, register_secret
from runner.store import Sender
from runner.store.configured_senders import save_configured_sender
from runner.store.leadbook import sequences_with_running_leads
from runner.store.request_holds import hold_requests, requests_held_until


def load_sequences(paths: Iterable[str]) -> dict[str, Sequence]:
    """Load sequences by file or directory; any error is fatal (a half-valid project never runs)."""
    seqs, diags, _ = load_paths(list(paths))
    for seq in seqs:
        diags += check_sequence_templates(seq)
    if has_errors(diags):
        raise UserError("fix the errors above before running (see `seqrun validate`)",
                        [d for d in diags if d.severity == "error"])
    by_name: dict[str, Sequence] = {}
    for seq in seqs:
        if seq.name in by_name:
            raise UserError(f'two sequences are named "{seq.name}": {by_name[seq.name].path} and {seq.path}')
        by_name[seq.name] = seq
    return by_name


def load_sequence_by_name(name: str, root: str) -> tuple[Sequence, list[Diagnostic]]:
    """The sequence called `name` in the project's sequences/ directory, and the load warnings."""
    directory = os.path.join(root, "sequences")
    # Named relative to the cwd when inside it, so messages show sequences/x.yaml, not /home/…
    shown = os.path.relpath(directory) if directory.startswith(os.getcwd() + os.sep) else directory
    seqs, diags, _ = load_paths([shown])
    for seq in seqs:
        if seq.name == name:
            return seq, [d for d in diags if d.severity == "warning" and d.file == seq.path]
    known = ", ".join(sorted(s.name for s in seqs)) or "none"
    if has_errors(diags):
        raise UserError(f'no valid sequence named "{name}" in {shown} (valid: {known}); some files have '
                        "errors, shown above", [d for d in diags if d.severity == "error"])
    raise UserError(f'no sequence named "{name}" in {shown} (known: {known})')


def open_project(sequence: str | None = None,
                 start: str | None = None) -> tuple[Config, Sequence | None, list[Diagnostic]]:
    """Config and (optionally) one sequence of the project containing `start` (default: the cwd)."""
    root = project_dir(start)
    if sequence is None:
        return load_project_config(root), None, []
    seq, warnings = load_sequence_by_name(sequence, str(root))
    config = load_project_config(root, sequences=[seq])
    return config, seq, warnings


def project_sequences(config: Config) -> dict[str, Sequence]:
    directory = pathlib.Path(config.root) / "sequences"
    if not directory.is_dir():
        return {}
    return load_sequences([str(directory)])


def sync_senders(config: Config, now: dt.datetime) -> dict[str, Sender]:
    """Upsert the configured senders into the store (status and warm-up start are kept)."""
    return {sc.name: save_configured_sender(sc.name, now, provider=sc.provider, account_id=sc.account_id,
                                            account_type=sc.account_type, timezone=sc.timezone,
                                            profile_id=sc.profile_id, full_name=sc.full_name)
            for sc in config.senders}


def sender_caps(sc: SenderConfig, row: Sender) -> SenderCaps:
    caps = {**default_limits(sc.account_type), **dict(sc.limits)}
    zone = resolve_zone(Calendar(timezone=sc.timezone, fallback="UTC"), lead_tz=None, sender_tz=None)
    return SenderCaps(sender_id=row.id, name=sc.name, zone=zone, caps=caps, first_action_at=row.first_action_at)


ProviderFor = Callable[[SenderConfig, Mapping[str, str]], Provider]


def real_provider_for(config: Config, client: httpx.Client | None = None, db_file: str = ":memory:",
                      clock: Callable[[], dt.datetime] | None = None) -> ProviderFor:
    """Providers as configured. The sandbox keeps its simulated LinkedIn in a file beside the
    database (unless `sandbox.state_path` says where), so that separate runs see the same world.
    `clock` is the command's (HTTP drivers' request budgets judge 429 resets by it)."""

    def make(sc: SenderConfig, credentials: Mapping[str, str]) -> Provider:
        factory = PROVIDERS.get(sc.provider)
        if factory is None:
            raise UserError(f'sender {sc.name}: provider "{sc.provider}" has no driver in this version')
        options: dict[str, Any] = {}
        if sc.provider == "sandbox":
            options = dict(config.sandbox)
            if "state_path" not in options and db_file != ":memory:":
                options["state_path"] = db_file + SANDBOX_STATE_SUFFIX
        elif sc.provider in BASE_URLS:
            options = http_driver_options(config, sc, clock=clock)
        return factory(**options)

    return make


def http_driver_options(config: Config, sc: SenderConfig,
                        clock: Callable[[], dt.datetime] | None = None) -> dict[str, Any]:
    """An HTTP driver's client (base URL from the sender's config) and its request budget, shared by
    the senders of the same provider and base URL (`build_runtime` shares the driver). The budget
    keeps 429 resets in the store, so every runner sharing the database waits for them."""
    rates = [s.requests_per_minute or DEFAULT_REQUESTS_PER_MINUTE[s.provider] for s in config.senders
             if s.provider == sc.provider and s.base_url == sc.base_url]
    base_url = sc.base_url or BASE_URLS[sc.provider]
    client = make_client(base_url)
    holds = StoreHolds(sc.provider, base_url)
    return {"client": client, "owns_client": True, "budget": RequestBudget(min(rates), wall=clock, holds=holds)}


class StoreHolds:
    """A request budget's `holds` in the store. A budget's keys are already hashes of the API key
    or account; the scope adds the provider and base URL, so two APIs never hold each other."""

    def __init__(self, provider: str, base_url: str) -> None:
        self._api = (provider, base_url)

    def held_until(self, key: str) -> dt.datetime | None:
        return requests_held_until(budget_key(*self._api, key))

    def hold(self, key: str, until: dt.datetime) -> None:
        hold_requests(budget_key(*self._api, key), until)


def build_runtime(config: Config, sequences: Mapping[str, Sequence], rows: Mapping[str, Sender], *,
                  provider_for: ProviderFor, notifier: Notifier, **knobs: Any) -> Runtime:
    senders: dict[int, SenderRuntime] = {}
    shared: dict[str, Provider] = {}
    for sc in config.senders:
        row = rows[sc.name]
        credentials = resolve_credentials(sc)
        for value in credentials.values():
            register_secret(value)  # never shown in a log line or an error from here on
        # One driver per provider (and API base URL), shared by its senders (the sandbox is one
        # simulated LinkedIn; an HTTP driver keeps one connection pool and one request budget).
        share = f"{sc.provider} {sc.base_url or ''}"
        provider = shared.get(share) or provider_for(sc, credentials)
        shared.setdefault(share, provider)
        account = Account(sender=sc.name, account_id=sc.account_id, account_type=sc.account_type,
                          profile_id=sc.profile_id, credentials=credentials, settings=sc.settings)
        senders[row.id] = SenderRuntime(caps=sender_caps(sc, row), account=account, provider=provider,
                                        full_name=sc.full_name or sc.name, timezone=sc.timezone)
    from runner.versions import load_version

    knobs.setdefault("load_version", load_version)
    knobs.setdefault("retry_budget", dt.timedelta(hours=config.retry_budget_hours))
    return Runtime(sequences=dict(sequences), senders=senders, notifier=notifier, **knobs)


def apply_provider_limits(rt: Runtime) -> dict[str, dict[str, tuple[int, int]]]:
    """Keep every sender's daily caps at or below its provider account's own limits (Salesflow's
    `GET accounts/{id}/limits`), for providers that tell them. Returns, per sender, each cap that
    was lowered as (configured, provider's)."""
    import dataclasses

    lowered: dict[str, dict[str, tuple[int, int]]] = {}
    for sender in rt.senders.values():
        account_limits = getattr(sender.provider, "account_limits", None)
        if not callable(account_limits):
            continue
        theirs = account_limits(sender.account)
        caps = dict(sender.caps.caps)
        for action, limit in theirs.items():
            if action in caps and limit < caps[action]:
                lowered.setdefault(sender.name, {})[action] = (caps[action], limit)
                caps[action] = limit
        sender.caps = dataclasses.replace(sender.caps, caps=caps)
    return lowered


def missing_environment(sequences: Mapping[str, Sequence],
                        getenv: Callable[[str], str | None] = os.environ.get) -> list[tuple[Sequence, Diagnostic]]:
    """Every environment variable a sequence needs (the `headers_from_env` of its notify steps) that
    is not set, as a diagnostic at the step that needs it."""
    out: list[tuple[Sequence, Diagnostic]] = []
    for seq in sequences.values():
        for step, header, variable in _unset_variables(seq, getenv):
            out.append((seq, error(seq.path, step.pos.line, step.pos.column,
                                   f"steps[id={step.id}].headers_from_env.{header}: environment variable "
                                   f"{variable} is not set", step.id)))
    return out


def missing_environment_of_earlier_versions(sequences: Mapping[str, Sequence],
                                            getenv: Callable[[str], str | None] = os.environ.get
                                            ) -> list[tuple[Sequence, Diagnostic]]:
    """Like `missing_environment`, for the earlier versions running leads keep to (`runner.versions`):
    a variable the file no longer names may still be needed by them. Variables the file itself
    misses are left to `missing_environment`."""
    from runner.store.versions import running_versions
    from runner.versions import load_version

    counts: dict[tuple[str, str, str, str], int] = {}
    for name, version, leads in running_versions():
        seq = sequences.get(name)
        if seq is None or version == seq.source_hash:
            continue
        old = load_version(version)
        if old is None:
            continue
        current = {variable for _, _, variable in _unset_variables(seq, getenv)}
        for step, header, variable in _unset_variables(old, getenv):
            if variable not in current:
                key = (name, step.id, header, variable)
                counts[key] = counts.get(key, 0) + leads
    out: list[tuple[Sequence, Diagnostic]] = []
    for (name, step_id, header, variable), leads in sorted(counts.items()):
        seq = sequences[name]
        one = leads == 1
        out.append((seq, error(seq.path, seq.pos.line, seq.pos.column, (
            f"{leads} running lead{'' if one else 's'} of sequence {name} run{'s' if one else ''} an earlier version "
            f"whose step {step_id} needs environment variable {variable} (for header {header}), which is not set; "
            f"set it, or move the lead{'' if one else 's'} with `seqrun leads migrate --sequence {name}`"))))
    return out


def _unset_variables(seq: Sequence, getenv: Callable[[str], str | None]) -> list[tuple[ActionStep, str, str]]:
    """(step, header, variable) for every `headers_from_env` variable of `seq` that is not set."""
    return [(step, header, variable) for step in seq.steps if isinstance(step, ActionStep)
            for header, variable in step.headers_from_env.items() if getenv(variable) is None]


def running_sequences() -> set[str]:
    """Sequences with leads in them that are not finished (active or paused)."""
    return set(sequences_with_running_leads())


def http_notifier(client: httpx.Client) -> Notifier:
    """Notify steps POST JSON; any non-2xx answer is a failure the engine retries."""

    def notify(url: str, headers: Mapping[str, str], payload: Mapping[str, Any]) -> None:
        response = client.post(url, json=dict(payload), headers=dict(headers), timeout=10.0)
        response.raise_for_status()

    return notify
