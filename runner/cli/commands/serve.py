"""`seqrun serve`: the long-running daemon (webhook receiver, engine loop, health and metrics).

The process is `runner.server.lifecycle.Daemon`; this module checks the options and the project,
binds the socket and maps the way it stopped to an exit code: 0 after SIGTERM or Ctrl-C (a
deliberate stop of a daemon is a success; `seqrun run` keeps 130 for Ctrl-C), 130 after a second
Ctrl-C (stopped at once, without finishing), 1 for anything the user must fix before it can start.
"""
from __future__ import annotations

import datetime as dt
import os
import signal
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import click

from runner.cli.commands.run import prepare
from runner.language.diagnostics import UserError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from runner.server.app import ServerState

TOKEN_ENV = "SEQRUN_DASHBOARD_TOKEN"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to listen on. Beyond loopback only with {TOKEN_ENV} set (the dashboard's login).")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="Log lines as text or as one JSON object per line.")
@click.option("--interval", type=click.IntRange(1, 3600), default=60, show_default=True,
              help="At most this many seconds between engine passes (a webhook or a lead coming due wakes it sooner).")
@click.option("--grace", type=click.IntRange(1, 600), default=30, show_default=True,
              help="On SIGTERM or Ctrl-C: seconds the HTTP requests in flight may take to finish.")
@click.option("--db", "db_url", default=None, help="Database (default: SEQRUN_DB, the config's database, seqrun.db).")
@click.option("--time-warp", default=None, hidden=True, metavar="FACTOR@EPOCH",
              help="For tests and benchmarks only: the clock runs FACTOR times faster from Unix time EPOCH on.")
@click.pass_context
def command(ctx: click.Context, host: str, port: int, log_format: str, interval: int, grace: int,
            db_url: str | None, time_warp: str | None) -> None:
    """Run seqrun as a service: receive the providers' webhooks, move leads the moment they are due
    or an acceptance or reply arrives, sync each sender at its provider's cadence, and serve
    /healthz, /readyz and /metrics.

    Webhooks go to POST /webhooks/PROVIDER (Salesflow campaigns: /webhooks/salesflow-campaign/SENDER/TOKEN);
    each is verified with the provider's secret and stored before it is answered. SIGTERM or Ctrl-C
    finish the call in flight and stop with exit 0 (a second Ctrl-C stops at once: 130). See docs/serve.md.

    \b
    Example:
      seqrun serve
      seqrun serve --host 0.0.0.0 --port 8787 --log-format json   # needs SEQRUN_DASHBOARD_TOKEN
    """
    from runner.server import lifecycle, logs

    if not lifecycle.is_loopback(host) and not (os.environ.get(TOKEN_ENV) or "").strip():
        raise UserError(f"--host {host} is reachable from other machines: set {TOKEN_ENV} (the dashboard's login "
                        f"secret) first, or listen on 127.0.0.1 behind a reverse proxy (see docs/serve.md)")
    with logs.configured(log_format, debug=bool((ctx.find_root().obj or {}).get("debug"))):
        config, sequences, url = prepare(db_url, "seqrun serve")
        clock, pace = _clock(time_warp)
        sock = lifecycle.listen(host, port)
        try:
            daemon = lifecycle.Daemon(config, sequences, sock, interval=float(interval), grace=float(grace),
                                      clock=clock, pace=pace, dashboard=_dashboard(config, sequences, clock))
            click.echo(f"seqrun serve: listening on {daemon.url} (webhooks at {daemon.url}/webhooks/PROVIDER); "
                       "Ctrl-C to stop", err=True)
            try:
                signum = daemon.run()
            except KeyboardInterrupt:  # a second Ctrl-C: stopped at once (the next start reconciles)
                from runner.cli.main import EXIT_INTERRUPTED

                click.echo("Interrupted.", err=True)
                raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        finally:
            sock.close()
    if signum is not None:
        click.echo(f"stopped ({signal.Signals(signum).name})", err=True)


def _dashboard(config: Any, sequences: Mapping[str, Any],
               clock: Callable[[], dt.datetime]) -> Callable[[ServerState], ASGIApp]:
    """The dashboard at `/`, showing the daemon's delivery log; with SEQRUN_DASHBOARD_TOKEN set, it asks for
    that token to log in (wherever it listens; docs/dashboard.md)."""
    from runner.server.dashboard import Project, create_dashboard

    token = (os.environ.get(TOKEN_ENV) or "").strip() or None

    def build(state: ServerState) -> ASGIApp:
        return create_dashboard(Project(config, dict(sequences)), clock=clock, deliveries=state.deliveries,
                                login_token=token, require_login=token is not None)

    return build


def _clock(time_warp: str | None) -> tuple[Callable[[], dt.datetime], float]:
    """The daemon's clock and its pace: the wall clock, or the warped clock of the kill -9 harness."""
    from runner.cli.commands.run import utc_now
    from runner.server.lifecycle import warped_clock

    if time_warp is None:
        return utc_now, 1.0
    factor, _, epoch = time_warp.partition("@")
    try:
        pace, start = float(factor), float(epoch)
    except ValueError:
        raise click.BadParameter("expected FACTOR@EPOCH, e.g. 1000@1767225600", param_hint="--time-warp") from None
    if not pace > 0:
        raise click.BadParameter("FACTOR must be above 0", param_hint="--time-warp")
    return warped_clock(pace, start), pace
