"""`seqrun senders`: list the senders with their state, and resume one after its session expired."""
from __future__ import annotations

import json
from typing import Any

import click

from runner.cli.commands.leads import db_option, open_db, utc_now
from runner.cli.commands.pause import unchanged_line
from runner.holds import SENDER, SenderListing, find_target, list_senders, resume
from runner.language.diagnostics import UserError
from runner.project.discovery import open_project, sync_senders
from runner.terminal import printable


@click.group("senders")
def command() -> None:
    """List senders, check them with their providers, resume a paused one, set up webhooks.

    \b
    Example:
      seqrun senders list
      seqrun senders check
      seqrun senders resume alice
      seqrun senders webhooks carol --url https://hooks.example.com
    """


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@db_option
def list_command(as_json: bool, db_url: str | None) -> None:
    """Senders with provider, account type, status and enrollment counts.

    \b
    Example:
      seqrun senders list
      seqrun senders list --json
    """
    config, _, _ = open_project()
    open_db(config, db_url)
    sync_senders(config, utc_now())
    senders = list_senders(config)
    if as_json:
        click.echo(json.dumps([s.to_json() for s in senders], indent=2, ensure_ascii=False))
        return
    header = ("NAME", "PROVIDER", "ACCOUNT", "TIMEZONE", "STATUS", "ACTIVE", "PAUSED", "DONE")
    table = [header] + [_cells(s) for s in senders]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cells(s: SenderListing) -> tuple[str, ...]:
    status = f"paused: {s.paused_reason}" if s.status == "paused" and s.paused_reason else s.status
    if not s.configured:
        status += " (not in seqrun.yaml)"
    done = s.enrollments.get("done", 0) + s.enrollments.get("failed", 0)
    return (s.name, s.provider, s.account_type, s.timezone, status, str(s.enrollments.get("active", 0)),
            str(s.enrollments.get("paused", 0)), str(done))


@command.command("resume")
@click.argument("name")
@db_option
def resume_command(name: str, db_url: str | None) -> None:
    """Reactivate a paused sender and the leads paused with it, due now.

    Use it after re-authenticating the sender's account: after AUTH_EXPIRED the engine pauses
    the sender and all its leads with reason "auth expired"; this resumes them. Leads paused by
    hand or by a sequence pause stay paused.

    \b
    Example:
      seqrun senders resume alice
    """
    config, _, _ = open_project()
    open_db(config, db_url)
    sync_senders(config, utc_now())
    target = find_target(SENDER, name)
    result = resume(target, utc_now())
    click.echo(f"{target.label} is active; resumed {result.changed} "
               f"{'enrollment' if result.changed == 1 else 'enrollments'}")
    if result.unchanged:
        click.echo(unchanged_line(result))


@command.command("check")
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of lines.")
@db_option
def check_command(names: tuple[str, ...], as_json: bool, db_url: str | None) -> None:
    """Ask each sender's provider: credentials accepted, LinkedIn account usable, own LinkedIn id.

    Stores each sender's own LinkedIn id (used to tell who wrote last) and shows the provider's
    own limits where its API tells them (a weekly quota as a week). Exits 1 when any sender is not ready, saying what
    to do.

    \b
    Example:
      seqrun senders check
      seqrun senders check alice --json
    """
    from runner.project.discovery import real_provider_for
    from runner.project.senderscheck import check, selected, store_profile_ids
    from runner.store.db import bound_file

    config, _, _ = open_project()
    senders = selected(config, names)
    open_db(config, db_url)
    sync_senders(config, utc_now())
    reports = check(senders, real_provider_for(config, db_file=bound_file(), clock=utc_now))
    store_profile_ids(reports, config)
    if as_json:
        click.echo(json.dumps([r.to_json() for r in reports], indent=2, ensure_ascii=False))
    else:
        for r in reports:
            click.echo(_check_line(r))
    not_ready = [r.name for r in reports if not r.ready]
    if not_ready:
        raise UserError(f"{len(not_ready)} of {len(reports)} sender(s) not ready: {', '.join(not_ready)}")


def _check_line(r: Any) -> str:
    if not r.ready:
        return f"{r.name}: NOT READY ({r.provider}): {r.problem}"
    parts = [f"{r.name}: ready ({r.provider})", f"credentials {r.credentials}", f"account {r.account_status}"]
    if r.profile_id:
        parts.append(f"LinkedIn id {r.profile_id}")
    left = {a: v for a, v in r.limits.items() if isinstance(v, dict) and "remaining" in v}
    if left:
        # A weekly quota (ConnectSafely's invitations) says so; daily ones read as before.
        shown = ", ".join(f"{action} {v.get('remaining', '?')}/{v.get('limit', '?')}"
                          f"{' a week' if v.get('window') == 'week' else ''}" for action, v in left.items())
        parts.append(f"provider limits left: {shown}")
    daily = {a: v for a, v in r.limits.items() if a not in left}
    if daily:
        shown = ", ".join(f"{action} {v.get('limit', '?') if isinstance(v, dict) else v}"
                          for action, v in daily.items())
        parts.append(f"provider limits a day: {shown}")
    if r.lowered:
        shown = ", ".join(f"{action} {ours} -> {theirs}" for action, (ours, theirs) in r.lowered.items())
        parts.append(f"seqrun keeps below them: {shown}")
    campaign = (r.details or {}).get("campaign")
    if campaign:
        text = f"campaign {campaign.get('id')}"
        if campaign.get("name"):
            text += f' "{printable(str(campaign["name"]))}"'
        text += f" {campaign.get('status') or 'status unknown'}"
        statistics = (r.details or {}).get("statistics") or {}
        if statistics:
            text += ": " + ", ".join(f"{value} {name.lower()}" for name, value in statistics.items())
        parts.append(text)
    return "; ".join(parts)


@command.command("webhooks")
@click.argument("name")
@click.option("--url", "base_url", required=True, metavar="URL",
              help="The public address of the seqrun daemon that receives webhooks (https://…).")
@click.option("--remove", is_flag=True, help="Detach the webhook from the campaign and delete it.")
@db_option
def webhooks_command(name: str, base_url: str, remove: bool, db_url: str | None) -> None:
    """Set up (or remove) the campaign webhooks of a salesflow-campaign sender.

    Creates a webhook in Salesflow pointing at URL/webhooks/salesflow-campaign/NAME/TOKEN, where
    TOKEN is derived from the secret in the sender's credentials_env.webhook_secret (the daemon
    refuses deliveries without it), and attaches it to the sender's campaign for
    MEMBER_CONNECTED, REPLY_DETECTED and INVITATION_WITHDRAWN. It lists the webhooks first, so
    running it again changes nothing. With --remove it detaches the webhook from the campaign and
    deletes it. The token is never shown.

    \b
    Example:
      seqrun senders webhooks carol --url https://hooks.example.com
      seqrun senders webhooks carol --url https://hooks.example.com --remove
    """
    from runner.campaigns import campaign_sender, set_up_webhook

    config, _, _ = open_project()
    sender = campaign_sender(config, name)
    open_db(config, db_url)  # the driver's request budget keeps a 429's reset there
    change, shown = set_up_webhook(config, sender, base_url, remove=remove)
    if remove:
        if change.webhook_id is None:
            click.echo(f"{name}: no webhook for {shown} in campaign {sender.campaign_id}; nothing to remove")
            return
        detached = ", ".join(change.detached) or "nothing"
        click.echo(f"{name}: webhook {change.webhook_id} detached from campaign {sender.campaign_id} ({detached})"
                   + ("; deleted" if change.deleted else "; kept: still attached to other campaigns"))
        return
    state = "created" if change.created else "found"
    click.echo(f"{name}: webhook {change.webhook_id} {state} for {shown}")
    if change.attached:
        click.echo(f"  attached to campaign {sender.campaign_id} for {', '.join(change.attached)}")
    if change.already:
        click.echo(f"  already attached to campaign {sender.campaign_id} for {', '.join(change.already)}")
