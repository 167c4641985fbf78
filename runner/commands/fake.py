"""`seqrun fake edges|connectsafely`: a fake provider API on 127.0.0.1, to try a real driver without an account."""
from __future__ import annotations

import os
import threading

import click

from ..config import load_project_config
from ..diagnostics import UserError


@click.group("fake")
def command() -> None:
    """Serve a fake provider API on 127.0.0.1 (a simulated LinkedIn in the provider's shapes).

    \b
    Example:
      seqrun fake edges --port 8787
      seqrun fake connectsafely --port 8788
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
    from ..providers.edges.fake import SMART_LIMITS, EdgesFake
    from ..providers.fakeserver import FakeHTTPServer
    from ..providers.http import install_log_redaction

    install_log_redaction()
    config = load_project_config()
    sandbox = {k: v for k, v in dict(config.sandbox).items() if k not in ("state_path", "seed")}
    api_keys = None
    if api_key_env is not None:
        value = os.environ.get(api_key_env, "")
        if not value:
            raise UserError(f"environment variable {api_key_env} (--api-key-env) is not set")
        api_keys = {value}
    secret = os.environ.get(webhook_secret_env) or None
    if webhook_url and secret is None:
        raise UserError(f"--webhook-url needs the shared secret in environment variable {webhook_secret_env} "
                        "(--webhook-secret-env)")
    fake = EdgesFake(seed=seed if seed is not None else int(config.sandbox.get("seed", 0)), api_keys=api_keys,
                     webhook_url=webhook_url, webhook_secret=secret, rate_per_minute=rate,
                     smart_limits=None if no_smart_limits else SMART_LIMITS, sandbox=sandbox)
    try:
        server = FakeHTTPServer(fake, port=port)
    except OSError as exc:
        raise UserError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
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
    from ..providers.connectsafely.fake import BUDGETS, ConnectSafelyFake
    from ..providers.fakeserver import FakeHTTPServer
    from ..providers.http import install_log_redaction

    install_log_redaction()
    config = load_project_config()
    sandbox = {k: v for k, v in dict(config.sandbox).items() if k not in ("state_path", "seed")}
    api_keys = None
    if api_key_env is not None:
        value = os.environ.get(api_key_env, "")
        if not value:
            raise UserError(f"environment variable {api_key_env} (--api-key-env) is not set")
        api_keys = {value}
    secret = os.environ.get(webhook_secret_env) or None
    if webhook_url and secret is None:
        raise UserError(f"--webhook-url needs the signing secret in environment variable {webhook_secret_env} "
                        "(--webhook-secret-env)")
    fake = ConnectSafelyFake(seed=seed if seed is not None else int(config.sandbox.get("seed", 0)),
                             api_keys=api_keys, webhook_url=webhook_url, webhook_secret=secret,
                             budgets=None if no_rate_limits else BUDGETS, sandbox=sandbox)
    try:
        server = FakeHTTPServer(fake, port=port)
    except OSError as exc:
        raise UserError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
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
