"""`seqrun simulate`: run a sequence over a virtual month against the sandbox and report the result."""
from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import sys
import tempfile
from collections import defaultdict
from typing import Any

import click

from runner.cli.outfile import atomic_output, check_output, owned_files
from runner.language.diagnostics import UserError
from runner.project.capabilities import require_capabilities
from runner.project.config import load_project_config
from runner.project.discovery import load_sequences
from runner.simulate import SimOptions, SimReport, run_simulation
from runner.store import open_store
from runner.store.simulation import has_enrollments

#: The days a simulation may start on: the calendar, time zones and the store's timestamps are sure
#: in this range, with room after it for the longest simulation and the waits it books beyond its end.
FIRST_START, LAST_START = dt.date(1970, 1, 1), dt.date(2999, 12, 31)


def next_monday(today: dt.date) -> dt.datetime:
    days = (7 - today.weekday()) % 7 or 7
    return dt.datetime.combine(today + dt.timedelta(days=days), dt.time(0), tzinfo=dt.UTC)


@click.command("simulate")
@click.argument("sequence", type=click.Path(dir_okay=False))
@click.option("--leads", "leads_n", type=click.IntRange(1, 2_000_000), default=None,
              help="Generate this many synthetic leads (default 1000).")
@click.option("--leads-file", type=click.Path(dir_okay=False), default=None, help="Use the leads in this CSV instead.")
@click.option("--days", type=click.IntRange(1, 366), default=30, show_default=True, help="Simulated days.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the simulated LinkedIn and the leads.")
@click.option("--accept-rate", type=click.FloatRange(0, 1), default=None, help="Share of invites accepted (default 0.35).")
@click.option("--reply-rate", type=click.FloatRange(0, 1), default=None,
              help="Chance of a reply to the first message (default 0.15); each later message: times "
                   "sandbox.reply_decay.")
@click.option("--start", type=click.DateTime(["%Y-%m-%d"]), default=None, help="First simulated day (UTC); default next Monday.")
@click.option("--reauth-after", "reauth_hours", type=click.FloatRange(0, min_open=True), default=None, metavar="HOURS",
              help="Hours until a person renews a sender whose session expired and resumes it "
                   "(default: sandbox.reauth_after_hours, 24).")
@click.option("--db", "db_url", default=None, help="Keep the simulated store in this new SQLite file (for `seqrun export`); never the "
                                                      "project's own database.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False), default=None, metavar="PATH",
              help="Also write the report as one self-contained HTML file with plots.")
@click.option("--wire", is_flag=True,
              help="Run the senders' real drivers against their fake servers over HTTP on 127.0.0.1.")
@click.option("--provider", metavar="NAME", default=None,
              help="With --wire: every sender acts through this provider (e.g. edges), no credentials needed.")
def command(sequence: str, leads_n: int | None, leads_file: str | None, days: int, seed: int,
            accept_rate: float | None, reply_rate: float | None, start: dt.datetime | None,
            reauth_hours: float | None, db_url: str | None, as_json: bool, html_path: str | None, wire: bool,
            provider: str | None) -> None:
    """Simulate SEQUENCE on a virtual clock against a simulated LinkedIn.

    Uses the same interpreter as `seqrun run`, with the senders of seqrun.yaml (or the embedded
    sandbox senders) all acting through the sandbox provider. Prints the funnel per step and
    outcome, actions per sender per day against their limits, the time from acceptance to the first
    message, and an audit of windows, limits and replies. A sender whose session expires is paused,
    as in a real run; a simulated person renews it after --reauth-after hours and resumes it, and
    the report opens with how long each sender was paused and why.

    \b
    Example:
      seqrun simulate sequences/edges-full-flow.yaml --leads 10000 --days 30
      seqrun simulate sequences/two-senders-ab.yaml --leads-file examples/leads.csv --db sim.db --json
      seqrun simulate sequences/edges-full-flow.yaml --wire --provider edges --leads 2000 --days 30

    With --wire the senders' real drivers (every sender's with --provider NAME) talk over HTTP on
    127.0.0.1 to the provider's fake server, which plays the same simulated LinkedIn on the same
    virtual clock; the report adds the requests made and checks the fake's ledger of performed
    actions against seqrun's audit log.
    """
    if leads_n is not None and leads_file is not None:
        raise click.UsageError("use either --leads or --leads-file, not both")
    if provider is not None and not wire:
        raise click.UsageError("--provider needs --wire")
    if start is not None and not FIRST_START <= start.date() <= LAST_START:
        raise UserError(f"--start {start.date().isoformat()}: choose a day from {FIRST_START} to {LAST_START}")
    seq = next(iter(load_sequences([sequence]).values()))
    config = load_project_config(sequence, [seq])
    require_capabilities([seq], config.senders, provider=provider)
    owned = owned_files(root=config.root, config_path=config.path,
                        databases=(config.database_url(), config.project_database_url()),
                        sandbox_state=config.sandbox.get("state_path"))
    if db_url:  # simulated leads and actions never go into the project's own files
        check_output(db_url, root=config.root, owned=owned, what_for="the simulation")
    if html_path:
        check_output(html_path, root=config.root, owned=owned, what_for="the HTML report")
    options = SimOptions(leads=leads_n or 1000, leads_file=leads_file, days=days, seed=seed,
                         accept_rate=accept_rate, reply_rate=reply_rate, wire=wire, provider=provider,
                         reauth_after=dt.timedelta(hours=reauth_hours) if reauth_hours else None,
                         start=start.replace(tzinfo=dt.UTC) if start else next_monday(dt.date.today()))
    with tempfile.TemporaryDirectory(prefix="seqrun-sim-") as tmp:
        path = db_url or os.path.join(tmp, "simulation.db")
        if db_url and pathlib.Path(db_url).exists() and pathlib.Path(db_url).stat().st_size > 0:
            open_store(path, durable=False)
            if has_enrollments():
                raise UserError(f'database "{db_url}" already holds leads; simulate needs a new file')
        database = open_store(path, durable=False)
        try:
            report = _run(seq, config, options, as_json)
        finally:
            database.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        click.echo(format_report(report, seed))
    if html_path:
        from runner.simhtml import render

        with atomic_output(html_path) as out:
            out.write(render(report, seed))
        click.echo(f"wrote the HTML report to {html_path}", err=True)
    if report.violations:
        raise UserError(f"the simulation broke {len(report.violations)} promise(s); this is a bug, please report it")


def _run(seq: Any, config: Any, options: SimOptions, quiet: bool) -> SimReport:
    if quiet or not sys.stderr.isatty():
        return run_simulation(seq, config, options)
    with click.progressbar(length=1000, label="simulating", file=sys.stderr) as bar:
        done = [0]

        def progress(fraction: float) -> None:
            step = int(fraction * 1000)
            if step > done[0]:
                bar.update(step - done[0])
                done[0] = step

        return run_simulation(seq, config, options, progress)


def _quota_lines(r: SimReport) -> list[str]:
    """The providers' own quotas, per their window (a week from Monday 00:00 UTC), not per day."""
    if not r.quotas:
        return []
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for q in r.quotas:
        groups[(q["sender"], q["provider"], q["action"])].append(q)
    out = ["", "Provider quotas per sender (per the provider's window, not per day)"]
    out.append(f"  {'sender':<12} {'action':<9} {'quota':<26} {'windows':>7} {'max used':>9} {'at quota':>9}")
    for (sender, provider, action), rows in sorted(groups.items()):
        quota = f"{provider} {rows[0]['limit']} a {rows[0]['period']}"
        top = max(q["used"] for q in rows)
        full = sum(1 for q in rows if q["used"] >= q["limit"])
        out.append(f"  {sender:<12} {action:<9} {quota:<26} {len(rows):>7} {top:>9} {full:>9}")
    return out


def _wire_check_lines(r: SimReport) -> list[str]:
    """What the fakes' own checks found (ConnectSafely: invitations per week, noted threads)."""
    checks = (r.wire or {}).get("checks") or {}
    out = []
    for name, facts in sorted(checks.items()):
        if "connects_per_week_max" in facts:
            out.append(f"Wire ({name}): at most {facts['connects_per_week_max']} invitations in any week per account "
                       f"(quota {facts['connect_quota']}); asked past a quota: "
                       f"{sum(facts.get('refused_over_quota', {}).values())} time(s)")
        if "first_messages_after_noted_invite" in facts:
            out.append(f"Wire ({name}): {facts['first_messages_after_noted_invite']} first messages after a noted "
                       f"invite, {facts['into_the_invite_conversation']} of them into that invite's conversation")
    return out


def _pauses(r: SimReport) -> list[str]:
    """First thing in the report: a paused sender does nothing, and every lead it owns waits."""
    out = [f"Senders paused (no actions while paused; a person renews an expired session after "
           f"{r.reauth_after_hours:g} h, see --reauth-after)"]
    totals: dict[str, float] = defaultdict(float)
    for p in r.pauses:
        totals[p["sender"]] += p["hours"]
        start = dt.datetime.fromisoformat(p["from"])
        until = f"{dt.datetime.fromisoformat(p['until']):%a %Y-%m-%d %H:%M}" if p["until"] else "the end"
        out.append(f"  {p['sender']:<12} {p['hours']:>6.1f} h  {p['reason']}: {start:%a %Y-%m-%d %H:%M} UTC to {until}")
    for sender, hours in sorted(totals.items()):
        share = 100 * hours / (r.days * 24)
        out.append(f"  {sender:<12} paused {hours:.1f} h in total ({share:.0f}% of the simulated time)")
    out.append("")
    return out


def format_report(r: SimReport, seed: int) -> str:
    out = [f"Simulated {r.sequence}: {r.leads:,} leads over {r.days} days from {r.start:%a %Y-%m-%d} (seed {seed})", ""]
    if r.pauses:
        out.extend(_pauses(r))
    out.append("Funnel by step")
    out.append(f"  {'step':<22} {'kind':<10} {'entered':>8} {'done':>7} {'skipped':>8} {'failed':>7} {'waiting':>8}")
    for s in r.steps:
        kind = s.get("action", s["kind"])
        cells = [f"{s.get(k, ''):>{w}}" if k in s else " " * w for k, w in (("done", 7), ("skipped", 8), ("failed", 7))]
        out.append(f"  {s['id']:<22} {kind:<10} {s['entered']:>8} {' '.join(cells)} {s['waiting']:>8}")
    out.append("")
    out.append("Outcomes")
    for outcome, n in r.outcomes.items():
        out.append(f"  {outcome:<22} {n:>8}  {100 * n / max(r.leads, 1):5.1f}%")
    running = r.states.get("active", 0) + r.states.get("paused", 0)
    out.append(f"  {'(still in sequence)':<22} {running:>8}  {100 * running / max(r.leads, 1):5.1f}%")
    if any(m["sent"] for m in r.replies):
        out.append("")
        out.append("Replies per message (each reply counts for the last message before it)")
        out.append(f"  {'step':<22} {'sent':>8} {'replies':>8} {'yield':>7}")
        for m in r.replies:
            rate = f"{100 * m['replies'] / m['sent']:6.1f}%" if m["sent"] else f"{'-':>7}"
            out.append(f"  {m['step']:<22} {m['sent']:>8} {m['replies']:>8} {rate}")
    out.append("")
    out.append("Actions per sender per day (against the sequence's daily limit)")
    summary: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for u in r.usage:
        summary[(u["sender"], u["action"])].append(u)
    out.append(f"  {'sender':<12} {'action':<9} {'days':>5} {'total':>7} {'max/day':>8} {'limit':>6} {'days at limit':>14}")
    for (sender, action), rows in sorted(summary.items()):
        total = sum(u["used"] for u in rows)
        top = max(u["used"] for u in rows)
        at_limit = sum(1 for u in rows if u["used"] >= u["limit"])
        out.append(f"  {sender:<12} {action:<9} {len(rows):>5} {total:>7} {top:>8} {rows[-1]['limit']:>6} {at_limit:>14}")
    if not summary:
        out.append("  (no actions performed)")
    out += _quota_lines(r)
    long_queues = [b for b in r.booked if dt.date.fromisoformat(b["until"]) > r.end.date() + dt.timedelta(days=7)]
    if long_queues:
        out.append("")
        out.append("Queues past the end (leads holding a paced slot; more senders or higher limits shorten them)")
        for b in long_queues:
            out.append(f"  {b['sender']:<12} {b['action']:<9} {b['leads']:>7} leads, booked until {b['until']}")
    out.append("")
    h = r.accept_to_message_hours
    if h.get("count"):
        out.append(f"Acceptance to first message: median {h['median']} h, p90 {h['p90']} h ({h['count']} leads)")
    else:
        out.append("Acceptance to first message: no lead got that far")
    for step_id, counts in r.variants.items():
        parts = ", ".join(f"{name} {n}" for name, n in sorted(counts.items()))
        out.append(f"A/B variants at {step_id}: {parts}")
    out.append("")
    out += _wire_check_lines(r)
    if r.wire is not None and not r.wire["providers"]:
        out.append("Wire: every sender acts through the sandbox; nothing went over HTTP (try --provider edges)")
    elif r.wire is not None:
        w = r.wire
        line = (f"Wire: {', '.join(w['providers'])} over HTTP on 127.0.0.1, {w['requests']:,} "
                f"requests; the fake's ledger has {w['ledger_actions']:,} actions, the audit log {w['audit_actions']:,}")
        out.append(line + ("; they agree, none performed twice" if not w["mismatches"] else "; they DISAGREE"))
        hooks = w.get("webhooks") or {}
        if hooks:
            out.append(f"Webhooks received on 127.0.0.1: {hooks.get('received', 0):,} verified, "
                       f"{hooks.get('refused', 0) + hooks.get('malformed', 0):,} refused, {hooks.get('events', 0):,} "
                       f"events for the engine, {hooks.get('duplicate_events', 0):,} repeated events dropped")
        for source, kinds in sorted((w.get("events") or {}).items()):
            listed = ", ".join(f"{n:,} {kind.replace('_', ' ')}" for kind, n in sorted(kinds.items()))
            out.append(f"Events from the fakes by {'polling' if source == 'poll' else source}: {listed}")
        for name, checks in sorted((w.get("checks") or {}).items()):
            out.extend(f"{name.title()} {line}" for line in checks.get("summary", ()))
    if r.violations:
        out.append(f"Audit: {len(r.violations)} violation(s):")
        out.extend(f"  {v}" for v in r.violations[:50])
    else:
        out.append("Audit: no action outside its window, no limit exceeded, nothing sent after a reply, nothing sent twice")
    return "\n".join(out)
