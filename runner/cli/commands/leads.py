"""`seqrun leads`: import leads from CSV into a sequence, block and unblock profiles, list leads, retry
failed ones, and move running leads to the current version of an edited sequence (`migrate`)."""
from __future__ import annotations

import datetime as dt
import json
import os
import sys
from typing import Any

import click

from runner.language.diagnostics import Diagnostic, format_text
from runner.leads import (
    LeadListing,
    block_profiles,
    import_leads,
    list_leads,
    profile_key,
    profiles_from_file,
    unblock_profile,
)
from runner.project.config import Config
from runner.project.discovery import open_project
from runner.project.leadsfile import read_leads
from runner.store import health, open_store
from runner.store.models import ENROLLMENT_STATES
from runner.terminal import json_printable, printable

DB_HELP = "Database: a SQLite path, sqlite:///path or postgresql://user@host/dbname. Default: SEQRUN_DB, then seqrun.yaml's database, then seqrun.db."


def db_option(function: click.decorators.FC) -> click.decorators.FC:
    return click.option("--db", "db_url", metavar="URL", help=DB_HELP)(function)


def open_db(config: Config, db_url: str | None) -> None:
    open_store(config.database_url(db_url))


def echo_warnings(diags: list[Diagnostic]) -> None:
    warnings = [d for d in diags if d.severity == "warning"]
    if warnings:
        click.echo(format_text(warnings), err=True)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@click.group("leads")
def command() -> None:
    """Import leads from CSV, block profiles, list leads, move leads to an edited sequence's version.

    \b
    Example:
      seqrun leads import leads.csv --sequence founders-q1
      seqrun leads block https://www.linkedin.com/in/jane-doe --reason "asked not to be contacted"
      seqrun leads list --sequence founders-q1 --state paused
      seqrun leads migrate --sequence founders-q1 --dry-run
      seqrun leads retry --all --dry-run
    """


@command.command("import")
@click.argument("csv_path", metavar="[CSV]", type=click.Path(dir_okay=False), required=False)
@click.option("--sequence", "-s", "sequence", required=True, metavar="NAME",
              help="The sequence to enroll the leads in (its `name`, from sequences/).")
@click.option("--from-campaign", "from_campaign", metavar="SENDER",
              help="Instead of a CSV: the members of this salesflow-campaign sender's Salesflow campaign.")
@click.option("--sender", "senders", multiple=True, metavar="NAME",
              help="Only assign these senders (repeatable). Default: the sequence's senders.")
@click.option("--skip-invalid", is_flag=True,
              help="Import the good rows and list the rejected ones (default: import nothing if any row is bad).")
@db_option
def import_command(csv_path: str | None, sequence: str, from_campaign: str | None, senders: tuple[str, ...],
                   skip_invalid: bool, db_url: str | None) -> None:
    """Enroll the leads of a CSV file in a sequence.

    The CSV needs a header row with a linkedin_profile_url column, plus the fields the sequence
    marks required. Every rejected row is reported with its number and reason (invalid URL,
    missing field, duplicate, blocked, already in a sequence). Nothing is imported if any row is
    rejected, unless --skip-invalid is given. Leads already in the database get their fields
    updated; each lead keeps the sender it had before, new leads go to the least busy sender.

    With --from-campaign SENDER instead of a CSV, the members of that salesflow-campaign sender's
    Salesflow campaign are brought under seqrun (ListContacts by campaign), all with that sender,
    under the same rules; a member's row number is its place in the campaign's list, from 2.

    \b
    Example:
      seqrun leads import leads.csv --sequence founders-q1
      seqrun leads import leads.csv -s founders-q1 --sender alice --skip-invalid
      seqrun leads import --from-campaign carol --sequence salesflow-campaign
    """
    if (csv_path is None) == (from_campaign is None):
        raise click.UsageError("give a CSV file or --from-campaign SENDER (one of them)")
    if from_campaign is not None and any(name != from_campaign for name in senders):
        raise click.UsageError("--from-campaign SENDER puts every member with that sender; leave out --sender")
    config, seq, warnings = open_project(sequence)
    assert seq is not None
    required = [f.name for f in seq.fields if f.required]
    if from_campaign is not None:
        from runner.campaigns import campaign_leads, campaign_sender

        source = f"campaign {campaign_sender(config, from_campaign).campaign_id} of {from_campaign}"
        open_db(config, db_url)  # the driver's request budget keeps a 429's reset there
        leads = campaign_leads(config, from_campaign, source, required_fields=required)
        senders = (from_campaign,)
    else:
        assert csv_path is not None
        leads = read_leads(csv_path, required_fields=required)
    echo_warnings(list(config.warnings) + warnings + leads.diagnostics)
    open_db(config, db_url)
    with _ProgressBar() as bar:
        result = import_leads(leads, seq, config, senders=senders, skip_invalid=skip_invalid, now=utc_now(),
                              progress=bar.update if sys.stderr.isatty() else None)
    if result.rejected:
        click.echo(format_text(result.rejected), err=True)
    skipped = ""
    if result.skipped:
        reasons = ", ".join(f"{kind}: {n}" for kind, n in result.skipped_by_kind.most_common())
        skipped = f" ({reasons})"
    click.echo(f"sequence {seq.name}: imported {result.imported}, updated {result.updated}, "
               f"skipped {result.skipped}{skipped}")
    if result.assigned:
        click.echo("senders: " + ", ".join(f"{name} {n}" for name, n in sorted(result.assigned.items())))
    if result.unknown_timezones:
        click.echo(f"note: {result.unknown_timezones} of these leads have a timezone that is not an IANA zone "
                   "name; the sequence calendar's fallback zone applies to them", err=True)


class _ProgressBar:
    """A click progress bar on stderr, started when the importer first says how much it will write."""

    def __init__(self) -> None:
        self.bar: Any = None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="importing", file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(done - self.bar.pos)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@command.command("block")
@click.argument("target", metavar="URL|CSV")
@click.option("--reason", metavar="TEXT", help="Why; shown in `seqrun leads list` and skip messages.")
@db_option
def block_command(target: str, reason: str | None, db_url: str | None) -> None:
    """Never contact a profile (or every profile of a CSV file) again.

    Blocked profiles are refused by `seqrun leads import`; leads that are in a sequence now end
    with outcome "blocked" at their next step.

    \b
    Example:
      seqrun leads block https://www.linkedin.com/in/jane-doe --reason "asked not to be contacted"
      seqrun leads block do-not-contact.csv
    """
    config, _, _ = open_project()
    if os.path.isfile(target) or target.lower().endswith(".csv"):
        leads = read_leads(target)
        echo_warnings(leads.diagnostics)
        profiles = profiles_from_file(leads)
    else:
        profiles = [profile_key(target)]
    open_db(config, db_url)
    result = block_profiles(profiles, reason, utc_now())
    line = f"blocked {_count(result.added, 'profile')}"
    if result.already:
        line += f" ({result.already} already blocked)"
    click.echo(line)
    if result.running:
        click.echo(f"{_count(result.running, 'lead')} in a running sequence will end with outcome \"blocked\" at "
                   "the next step")
    _leave_campaigns(config, [key for key, _ in profiles])


def _leave_campaigns(config: Config, keys: list[str]) -> None:
    """Blocked leads of salesflow-campaign senders leave their Salesflow campaign (DeleteContact)."""
    from runner.campaigns import remove_from_campaigns
    from runner.language.diagnostics import UserError

    removals = remove_from_campaigns(config, keys)
    for r in removals:
        if r.member_id is not None:
            click.echo(f"removed {r.profile_url} from the Salesflow campaign of {r.sender} (member {r.member_id})")
    failed = [r for r in removals if r.problem is not None]
    for r in failed:
        click.echo(f"could not remove {r.profile_url} from the Salesflow campaign of {r.sender}: {r.problem}",
                   err=True)
    if failed:
        raise UserError(f"{_count(len(failed), 'blocked lead')} may still be in a Salesflow campaign; the block "
                        "stands; run the same command again to retry the removal")


@command.command("unblock")
@click.argument("url", metavar="URL")
@db_option
def unblock_command(url: str, db_url: str | None) -> None:
    """Remove a profile from the block list (it can be imported again).

    \b
    Example:
      seqrun leads unblock https://www.linkedin.com/in/jane-doe
    """
    config, _, _ = open_project()
    key, canonical = profile_key(url)
    open_db(config, db_url)
    unblock_profile(key, canonical, utc_now())
    click.echo(f"unblocked {canonical}")


@command.command("migrate")
@click.option("--sequence", "-s", "sequence", required=True, metavar="NAME",
              help="The sequence whose leads move to the version in its file now.")
@click.option("--map", "maps", multiple=True, metavar="OLD=NEW",
              help="Leads at step OLD of their version go to step NEW of the current file (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would move; change nothing.")
@db_option
def migrate_command(sequence: str, maps: tuple[str, ...], dry_run: bool, db_url: str | None) -> None:
    """Move the running leads of a sequence from the version they started on to its current file.

    A lead keeps to the version of the sequence it started on, whatever the file says later. This
    moves the active and paused ones to the file as it is now. A step whose id names the same step
    in both versions maps to itself; every other step a lead stands on needs --map OLD=NEW. A move
    that would make a lead repeat an action it already had (an invite, a message, ...) is refused,
    and then nothing moves. Stop `seqrun run` first.

    \b
    Example:
      seqrun leads migrate --sequence founders-q1 --dry-run
      seqrun leads migrate --sequence founders-q1 --map accepted+2=accepted+3
    """
    from runner.engine.presence import refuse_beside_live_runner
    from runner.migrate import migrate_leads
    from runner.store.db import bound_name
    from runner.store.transactions import writing

    mapping = _parse_maps(maps)
    config, seq, warnings = open_project(sequence)
    assert seq is not None
    echo_warnings(list(config.warnings) + warnings)
    open_db(config, db_url)
    now = utc_now()
    with writing():  # no runner can start between the check and the move
        refuse_beside_live_runner("moving leads", bound_name(), now)
        plan = migrate_leads(seq, mapping, now, dry_run=dry_run)
    if not plan.moves:
        click.echo(f"sequence {seq.name}: no running lead is on an earlier version; nothing to move")
        return
    click.echo(f"sequence {seq.name}: {_count(len(plan.moves), 'lead')} on earlier versions")
    width = max(len(a) for a, _, _ in plan.routes())
    for old, new, n in plan.routes():
        click.echo(f"  {old.ljust(width)} -> {new}  {_count(n, 'lead')}")
    if dry_run:
        click.echo(f"dry run: {_count(len(plan.moves), 'lead')} would move to the current version; nothing changed")
    else:
        click.echo(f"moved {_count(len(plan.moves), 'lead')} to the current version of {seq.name}")


def _parse_maps(maps: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in maps:
        old, sep, new = item.partition("=")
        old, new = old.strip(), new.strip()
        if not sep or not old or not new:
            raise click.BadParameter(f'"{item}": expected OLD=NEW, two step ids', param_hint="--map")
        if old in out:
            raise click.BadParameter(f'step "{old}" is mapped twice', param_hint="--map")
        out[old] = new
    return out


@command.command("retry")
@click.option("--all", "all_failed", is_flag=True, help="Every failed lead.")
@click.option("--sequence", "-s", metavar="NAME", help="Failed leads of this sequence.")
@click.option("--sender", metavar="NAME", help="Failed leads of this sender.")
@click.option("--lead", metavar="URL", help="This lead, by LinkedIn profile URL.")
@click.option("--dry-run", is_flag=True, help="List the leads that would be retried and change nothing.")
@db_option
def retry_command(all_failed: bool, sequence: str | None, sender: str | None, lead: str | None, dry_run: bool,
                  db_url: str | None) -> None:
    """Put failed leads back into their sequence, at the step they failed on, due now.

    Use it once the cause is fixed: a provider outage over, a template corrected, an environment
    variable set. Each lead gets a fresh retry budget; an action whose outcome was unknown when the
    lead failed is checked with the provider before anything is sent again. Filters combine.

    \b
    Example:
      seqrun leads retry --all --dry-run
      seqrun leads retry --sequence founders-q1 --sender alice
      seqrun leads retry --lead https://www.linkedin.com/in/jane-doe
    """
    from runner.holds import LEAD, SENDER, SEQUENCE, find_target
    from runner.retry import failed_leads, retry

    if not (all_failed or sequence or sender or lead):
        raise click.UsageError("say which failed leads: --all, or any of --sequence, --sender, --lead")
    config, _, _ = open_project()
    open_db(config, db_url)
    filters: dict[str, Any] = {}
    if sequence is not None:
        filters["sequence"] = find_target(SEQUENCE, sequence).value
    if sender is not None:
        filters["sender_id"] = find_target(SENDER, sender).value
    if lead is not None:
        filters["lead_id"] = find_target(LEAD, lead).value
    candidates = failed_leads(**filters)
    if not candidates:
        click.echo("no failed leads match")
        return
    result = retry(candidates, utc_now(), dry_run=dry_run)
    verb = "would retry" if dry_run else "retried"
    line = f"{verb} {_count(len(result.retried), 'failed lead')}"
    if result.retried and not dry_run:
        line += ", due now"
    click.echo(line + (":" if dry_run and result.retried else ""))
    if dry_run:
        for item in result.retried:
            click.echo(f"  {item.profile_url}  [{item.sequence} @ {item.step or '-'}] {item.error or 'no error recorded'}")
    if result.reopened:
        click.echo(f"{_count(result.reopened, 'action')} of unknown outcome "
                   f"{'will be' if dry_run else 'are'} checked with the provider before anything is sent")
    if result.unchanged:
        total = sum(result.unchanged.values())
        why = ", ".join(f"{reason}: {n}" for reason, n in sorted(result.unchanged.items()))
        click.echo(f"{total} not retried ({why})")


@command.command("list")
@click.option("--sequence", "-s", metavar="NAME", help="Only leads enrolled in this sequence.")
@click.option("--state", type=click.Choice(ENROLLMENT_STATES), help="Only leads whose enrollment is in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
@db_option
def list_command(sequence: str | None, state: str | None, as_json: bool, db_url: str | None) -> None:
    """List leads with their sequence, state, step, sender and when they are due next.

    \b
    Example:
      seqrun leads list --sequence founders-q1 --state paused
      seqrun leads list --json > leads.json
    """
    config, _, _ = open_project()
    open_db(config, db_url)
    with health.reading():
        rows = list(list_leads(sequence=sequence, state=state))  # all read before any is printed
    if as_json:
        click.echo(json_printable(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False)))
        return
    _print_table(rows)


def _print_table(rows: list[LeadListing]) -> None:
    header = ("PROFILE", "NAME", "SEQUENCE", "STATE", "STEP", "SENDER", "DUE / OUTCOME / REASON")
    table = [header] + [_cells(r) for r in rows]
    if len(table) == 1:
        click.echo("no leads")
        return
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _cells(r: LeadListing) -> tuple[str, ...]:
    if r.state == "paused":
        status = r.paused_reason or ""
    elif r.state == "active" and r.due_at is not None:
        status = r.due_at.strftime("%Y-%m-%d %H:%M UTC")
    else:
        status = r.outcome or ""
    state = (r.state or "-") + (" (blocked)" if r.blocked else "")
    cells = (r.profile_url, r.full_name or "", r.sequence or "-", state, r.step or "", r.sender or "", status)
    return tuple(printable(cell) for cell in cells)  # names and reasons come from CSVs and people


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"

