"""`seqrun fake edges|connectsafely|salesflow|salesflow-campaign`: a fake provider API on 127.0.0.1, to try
a real driver without an account."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import click

from runner.language.diagnostics import UserError
from runner.project.config import load_project_config


def _project_world() -> tuple[Any, dict[str, Any]]:
    """The project's config and the simulated LinkedIn's options from its `sandbox:` (no state file,
    no seed: a fake has its own world and takes its seed from --seed); log lines are redacted."""
    from runner.providers.http import install_log_redaction

    install_log_redaction()
    config = load_project_config()
    return config, {k: v for k, v in dict(config.sandbox).items() if k not in ("state_path", "seed")}


def _seed(seed: int | None, config: Any) -> int:
    return seed if seed is not None else int(config.sandbox.get("seed", 0))


def _accepted_keys(env: str | None, option: str) -> set[str] | None:
    """The one key a fake accepts, read as seqrun reads credentials (config.resolve_credentials);
    None: any non-empty key."""
    if env is None:
        return None
    value = os.environ.get(env, "").strip()
    if not value:
        raise UserError(f"environment variable {env} ({option}) is not set")
    return {value}


def _webhook_secret(env: str, url: str | None, kind: str) -> str | None:
    secret = (os.environ.get(env) or "").strip() or None  # as seqrun reads it
    if url and secret is None:
        raise UserError(f"--webhook-url needs the {kind} secret in environment variable {env} (--webhook-secret-env)")
    return secret


def _listen(fake: Any, port: int, *, on_failure: Callable[[], None] | None = None) -> Any:
    from runner.providers.fakeserver import FakeHTTPServer

    try:
        return FakeHTTPServer(fake, port=port)
    except OSError as exc:
        if on_failure is not None:
            on_failure()
        raise UserError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None


@click.group("fake")
def command() -> None:
    """Serve a fake provider API on 127.0.0.1 (a simulated LinkedIn in the provider's shapes).

    \b
    Example:
      seqrun fake edges --port 8787
      seqrun fake connectsafely --port 8788
      seqrun fake salesflow --port 8789 --webhook-url http://127.0.0.1:8790/webhooks/salesflow
      seqrun fake salesflow-campaign --port 8791
    """


@command.command("edges")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--webhook-url", default=None, help="Deliver integration webhooks (AUTH_EXPIRED, AUTH_SUCCESS) here.")
@click.option("--webhook-secret-env", default="EDGES_WEBHOOK_SECRET", show_default=True,
              help="Environment variable holding the shared secret sent in X-Webhook-Secret.")
@click.option("--api-key-env", default=None,
              help="Accept only the key in this environment variable (default: any non-empty key).")
@click.option("--seed", type=int, default=None,
              help="Seed of the simulated LinkedIn (default: seqrun.yaml's sandbox seed).")
@click.option("--rate", type=click.IntRange(1, 100_000), default=None,
              help="API requests per minute per key before 429 (default: unlimited).")
@click.option("--no-smart-limits", is_flag=True, help="Do not enforce Edges' daily Smart Limits.")
def edges_command(port: int, webhook_url: str | None, webhook_secret_env: str, api_key_env: str | None,
                  seed: int | None, rate: int | None, no_smart_limits: bool) -> None:
    """A fake Edges API: `base_url: http://127.0.0.1:PORT/v1` in a sender of seqrun.yaml.

    The simulated LinkedIn takes the project's `sandbox:` options (acceptance and reply rates and
    delays). Its clock starts at the real time; move it with POST /_fake/clock
    {"advance_seconds": 86400} to see acceptances and replies. Control endpoints: docs/providers/edges.md.

    \b
    Example:
      seqrun fake edges --port 8787
      curl -X POST localhost:8787/_fake/clock -d '{"advance_seconds": 172800}'
    """
    from runner.providers.edges.fake import SMART_LIMITS, EdgesFake

    config, sandbox = _project_world()
    api_keys = _accepted_keys(api_key_env, "--api-key-env")
    secret = _webhook_secret(webhook_secret_env, webhook_url, "shared")
    fake = EdgesFake(seed=_seed(seed, config), api_keys=api_keys,
                     webhook_url=webhook_url, webhook_secret=secret, rate_per_minute=rate,
                     smart_limits=None if no_smart_limits else SMART_LIMITS, sandbox=sandbox)
    server = _listen(fake, port)
    click.echo(f"fake Edges API on {server.url}/v1 (use it as base_url); control endpoints under {server.url}/_fake/")
    click.echo("Ctrl-C to stop", err=True)
    try:
        server.serve_forever()
    finally:
        server.stop()


@command.command("connectsafely")
@click.option("--port", type=click.IntRange(0, 65535), default=8788, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--webhook-url", default=None, help="Deliver signed message.received webhooks here.")
@click.option("--webhook-secret-env", default="CONNECTSAFELY_WEBHOOK_SECRET", show_default=True,
              help="Environment variable holding the secret the deliveries are signed with.")
@click.option("--api-key-env", default=None,
              help="Accept only the key in this environment variable (default: any non-empty key).")
@click.option("--seed", type=int, default=None,
              help="Seed of the simulated LinkedIn (default: seqrun.yaml's sandbox seed).")
@click.option("--no-rate-limits", is_flag=True,
              help="Do not enforce the per-minute budgets (60 per key; 30 reads, 15 writes per account).")
def connectsafely_command(port: int, webhook_url: str | None, webhook_secret_env: str, api_key_env: str | None,
                          seed: int | None, no_rate_limits: bool) -> None:
    """A fake ConnectSafely API: `base_url: http://127.0.0.1:PORT/linkedin` in a sender of seqrun.yaml.

    The simulated LinkedIn takes the project's `sandbox:` options. Quotas are ConnectSafely's (90
    invitations a week, 150 new conversations a day, per account); its clock starts at the real
    time; move it with POST /_fake/clock {"advance_seconds": 86400}. Replies are delivered to
    --webhook-url as they come due (checked every 5 seconds, and at once when the clock is moved).
    Control endpoints: docs/providers/connectsafely.md.

    \b
    Example:
      seqrun fake connectsafely --port 8788
      curl -X POST localhost:8788/_fake/clock -d '{"advance_seconds": 172800}'
    """
    from runner.providers.connectsafely.fake import BUDGETS, ConnectSafelyFake

    config, sandbox = _project_world()
    api_keys = _accepted_keys(api_key_env, "--api-key-env")
    secret = _webhook_secret(webhook_secret_env, webhook_url, "signing")
    fake = ConnectSafelyFake(seed=_seed(seed, config),
                             api_keys=api_keys, webhook_url=webhook_url, webhook_secret=secret,
                             budgets=None if no_rate_limits else BUDGETS, sandbox=sandbox)
    server = _listen(fake, port)
    click.echo(f"fake ConnectSafely API on {server.url}/linkedin (use it as base_url); control endpoints under "
               f"{server.url}/_fake/")
    click.echo("Ctrl-C to stop", err=True)
    stop = threading.Event()
    if webhook_url:
        fake.deliver_every(5.0, stop)  # replies come due as the real clock passes them
    try:
        server.serve_forever()
    finally:
        stop.set()
        server.stop()


@command.command("salesflow")
@click.option("--port", type=click.IntRange(0, 65535), default=8789, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--webhook-url", default=None,
              help="Deliver webhooks here: inbox-sync pages (New Messages) and NEW_CONNECTION.")
@click.option("--webhook-secret-env", default="SALESFLOW_WEBHOOK_SECRET", show_default=True,
              help="Environment variable holding the shared secret sent in X-Webhook-Secret.")
@click.option("--api-key-env", default=None,
              help="Accept only the key in this environment variable (default: any non-empty key).")
@click.option("--seed", type=int, default=None,
              help="Seed of the simulated LinkedIn (default: seqrun.yaml's sandbox seed).")
@click.option("--rate", type=click.IntRange(1, 100_000), default=None,
              help="API requests per minute per key before 429 (default: unlimited).")
@click.option("--no-limits", is_flag=True, help="Do not enforce Salesflow's daily account limits.")
@click.option("--connection-delay-hours", type=click.FloatRange(0, 48), default=6.0, show_default=True,
              help="NEW_CONNECTION comes up to this late after the acceptance.")
@click.option("--reorder-rate", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Share of inbox syncs whose pages are delivered out of order.")
@click.option("--duplicate-rate", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Chance that a page is delivered twice (and that a page of the previous sync comes again).")
def salesflow_command(port: int, webhook_url: str | None, webhook_secret_env: str, api_key_env: str | None,
                      seed: int | None, rate: int | None, no_limits: bool, connection_delay_hours: float,
                      reorder_rate: float, duplicate_rate: float) -> None:
    """A fake Salesflow API (new API): `base_url: http://127.0.0.1:PORT` in a sender of seqrun.yaml.

    Inbox syncs answer 202 and POST their pages to --webhook-url as New Messages webhooks (now and
    then out of order or twice); acceptances come as NEW_CONNECTION up to --connection-delay-hours
    late. Its clock starts at the real time; move it with POST /_fake/clock {"advance_seconds": 86400}.
    Control endpoints: docs/providers/salesflow.md.

    \b
    Example:
      seqrun fake salesflow --port 8789 --webhook-url http://127.0.0.1:8790/webhooks/salesflow
      curl -X POST localhost:8789/_fake/clock -d '{"advance_seconds": 172800}'
    """
    from runner.providers.salesflow.fake import DEFAULT_LIMITS, SalesflowFake

    config, sandbox = _project_world()
    api_keys = _accepted_keys(api_key_env, "--api-key-env")
    secret = _webhook_secret(webhook_secret_env, webhook_url, "shared")
    fake = SalesflowFake(seed=_seed(seed, config), api_keys=api_keys,
                         webhook_url=webhook_url, webhook_secret=secret, rate_per_minute=rate,
                         enforce_limits=not no_limits, limits=DEFAULT_LIMITS,
                         connection_delay_hours=connection_delay_hours, reorder_rate=reorder_rate,
                         duplicate_rate=duplicate_rate, sandbox=sandbox)
    server = _listen(fake, port, on_failure=fake.close)
    click.echo(f"fake Salesflow API on {server.url} (use it as base_url); control endpoints under {server.url}/_fake/")
    if not webhook_url:
        click.echo("no --webhook-url: inbox syncs answer 202 but their pages go nowhere, and seqrun's messages "
                   "wait for them", err=True)
    click.echo("Ctrl-C to stop", err=True)
    try:
        server.serve_forever()
    finally:
        server.stop()
        fake.close()


@command.command("salesflow-campaign")
@click.option("--port", type=click.IntRange(0, 65535), default=8791, show_default=True,
              help="Port on 127.0.0.1 (0: any free port).")
@click.option("--token-env", default=None,
              help="Accept only the API token in this environment variable (default: any non-empty token).")
@click.option("--seed", type=int, default=None,
              help="Seed of the simulated LinkedIn (default: seqrun.yaml's sandbox seed).")
@click.option("--invite-every", type=click.FloatRange(0.0, min_open=True), default=20.0, show_default=True,
              metavar="MINUTES", help="A campaign sends one invitation every so many minutes.")
@click.option("--invites-per-day", type=click.IntRange(1, 100_000), default=25, show_default=True,
              help="At most this many invitations per campaign per day (UTC).")
def campaign_command(port: int, token_env: str | None, seed: int | None, invite_every: float,
                     invites_per_day: int) -> None:
    """A fake Salesflow v1 API (campaigns): `base_url: http://127.0.0.1:PORT/api` in a sender.

    The campaigns of the project's salesflow-campaign senders exist from the start (others are
    made on first use). Each campaign invites its members at its own pace, messages them an hour
    after they accept, and withdraws invitations after three weeks, on a simulated LinkedIn that
    takes the project's `sandbox:` options. Webhooks set up with `seqrun senders webhooks` are
    delivered as the fake's clock passes the events. Control endpoints:
    docs/providers/salesflow-campaign.md.

    \b
    Example:
      seqrun fake salesflow-campaign --port 8791
      curl -X POST localhost:8791/_fake/clock -d '{"advance_seconds": 86400}'
    """
    import datetime as dt

    from runner.providers.salesflow_campaign.fake import CampaignFake, Pace

    config, sandbox = _project_world()
    tokens = _accepted_keys(token_env, "--token-env")
    accounts: dict[str, list[int]] = {}
    for sender in config.senders:
        if sender.provider == "salesflow-campaign" and sender.campaign_id:
            accounts.setdefault(sender.account_id, []).append(int(sender.campaign_id))
    pace = Pace(invite_every=dt.timedelta(minutes=invite_every), invites_per_day=invites_per_day)
    fake = CampaignFake(seed=_seed(seed, config), tokens=tokens,
                        sandbox=sandbox, pace=pace)
    for account, campaigns in accounts.items():
        for number in campaigns:
            fake.campaigns.campaign(account, number)
    server = _listen(fake, port)
    click.echo(f"fake Salesflow v1 API on {server.url}/api (use it as base_url); control endpoints under "
               f"{server.url}/_fake/")
    if accounts:
        click.echo("campaigns: " + ", ".join(f"account {a} campaign {c}" for a, cs in accounts.items() for c in cs))
    click.echo("Ctrl-C to stop", err=True)
    try:
        server.serve_forever()
    finally:
        server.stop()
