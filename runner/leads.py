"""Leads in the store: importing CSV rows into a sequence, the block list, listing (pausing and
resuming is in `holds.py`).

`import_leads` is all-or-nothing by default: every row is checked (the file's own problems, then
the store: blocked, already in a running sequence, already through this one) and if any row is
rejected nothing is written, so fixing the file and importing again is always safe. With
`skip_invalid` the good rows are imported and the rejected ones reported. The writes happen in one
IMMEDIATE transaction, in large batches, so that 100k rows take seconds and a crash leaves nothing
half-imported.

Senders are assigned sticky (a lead that had a sender in this sequence, else in any earlier one,
keeps it when allowed: the conversation is with that person) and otherwise balanced by load (fewest
active enrollments first, ties by name) among the allowed senders that are not paused.

Nothing here prints; the commands in `runner/cli/commands/` turn results into text.
"""
from __future__ import annotations

import collections
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runner.language.diagnostics import Diagnostic, UserError
from runner.language.model import Sequence
from runner.language.urls import normalize_profile_url
from runner.project.config import Config
from runner.project.discovery import sync_senders
from runner.project.leadsfile import (
    CONTROL_CHARACTER,
    DUPLICATE,
    URL_FIELD,
    LeadRow,
    LeadsFile,
    RowProblem,
    problem_kind,
)
from runner.store import Lead, Sender, leadbook
from runner.store.fields import from_db_time, to_db_time
from runner.store.leadbook import RUNNING
from runner.store.transactions import writing
from runner.versions import remember

BLOCKED = "blocked"
IN_OTHER_SEQUENCE = "in another sequence"
IN_THIS_SEQUENCE = "already in this sequence"

#: progress(done, total): rows written so far out of the rows to write (each lead and enrollment).
Progress = Callable[[int, int], None]


# --- importing ------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    sequence: str
    imported: int = 0  # leads new to the store, enrolled
    updated: int = 0  # leads already in the store (fields updated), enrolled
    rejected: list[Diagnostic] = field(default_factory=list)  # one per rejected row problem
    skipped_by_kind: collections.Counter[str] = field(default_factory=collections.Counter)  # rows, by first problem
    assigned: collections.Counter[str] = field(default_factory=collections.Counter)  # sender -> new enrollments
    unknown_timezones: int = 0  # leads whose `timezone` column is not an IANA zone

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_kind.values())


@dataclass(frozen=True, slots=True)
class _History:
    """What the store knows about one lead before the import."""

    lead_id: int | None = None
    fields: dict[str, Any] | None = None
    blocked: tuple[str, str | None] | None = None  # (date, reason)
    running: tuple[str, str, str] | None = None  # (sequence, state, since date)
    finished_here: tuple[str, str] | None = None  # (outcome, date) of an earlier run of this sequence
    sticky_sender: int | None = None


def import_leads(leads: LeadsFile, seq: Sequence, config: Config, *, senders: Seq[str] = (),
                 skip_invalid: bool = False, now: dt.datetime, progress: Progress | None = None) -> ImportResult:
    """Enroll the file's rows in `seq`; raises UserError (nothing written) when rows are rejected
    and `skip_invalid` is false, or when the file itself is unusable."""
    if leads.fatal:
        raise UserError("nothing imported: the file cannot be read as a lead list",
                        [d for d in leads.diagnostics if d.severity == "error"])
    result = ImportResult(seq.name)
    with writing(immediate=True):
        rows_by_sender = sync_senders(config, now)
        allowed = _allowed_senders(seq, config, senders, rows_by_sender)
        history = _history([r.key for r in leads.rows if r.ok and r.key], seq.name)
        accepted = _check_rows(leads, history, seq.name, result)
        if result.rejected and not skip_invalid:
            good = len(accepted)
            raise UserError(f"nothing imported: {result.skipped} of {_rows(len(leads.rows))} rejected; fix them, "
                            f"or use --skip-invalid to import the {good} good {'row' if good == 1 else 'rows'}",
                            result.rejected)
        if accepted:
            remember(seq, now)  # the version these leads start on, kept for as long as they run
            assignment = _assign(accepted, history, allowed)
            _write(accepted, history, assignment, seq, now, result, progress)
            result.assigned.update(allowed.name_of[s] for s in assignment)
    return result


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


@dataclass
class _Allowed:
    ids: list[int]  # senders that may get new leads (allowed and not paused), by name
    sticky_ok: set[int]  # senders a lead may keep (allowed, paused or not)
    name_of: dict[int, str]


def _allowed_senders(seq: Sequence, config: Config, chosen: Seq[str], rows: dict[str, Sender]) -> _Allowed:
    """--sender options ∩ the sequence's `senders` ∩ the configured senders, minus paused ones."""
    configured = list(config.sender_names)
    for name in seq.senders:
        if name not in configured:
            raise UserError(f'sequence {seq.name} lists sender "{name}", which is not configured '
                            f"(configured: {', '.join(configured) or 'none'})")
    pool = list(seq.senders) or configured
    for name in chosen:
        if name not in configured:
            raise UserError(f'unknown sender "{name}" (configured: {", ".join(configured) or "none"})')
        if name not in pool:
            raise UserError(f'sender "{name}" is not one of the senders of sequence {seq.name} ({", ".join(pool)})')
    names = sorted(n for n in pool if not chosen or n in chosen)
    if not names:
        raise UserError(f"sequence {seq.name} has no sender to run it; configure one in seqrun.yaml")
    active = [n for n in names if rows[n].status == "active"]
    if not active:
        held = ", ".join(f"{n} ({rows[n].paused_reason or 'paused'})" for n in names)
        raise UserError(f"every sender that could take these leads is paused: {held}; resume one with "
                        "`seqrun senders resume NAME`")
    return _Allowed(ids=[rows[n].id for n in active], sticky_ok={rows[n].id for n in names},
                    name_of={rows[n].id: n for n in names})


def _history(keys: list[str], sequence: str) -> dict[str, _History]:
    """Per key: the stored lead, its block, its running enrollment, an earlier run of `sequence`,
    and the sender it last worked with (this sequence first)."""
    leads = {key: (lead_id, fields) for lead_id, key, fields in leadbook.leads_by_key(keys)}
    blocks = {key: (from_db_time(created).date().isoformat(), reason) for key, created, reason in
              leadbook.blocks_by_key(keys)}
    key_of = {lead_id: key for key, (lead_id, _) in leads.items()}
    enrollments: dict[str, list[tuple[Any, ...]]] = collections.defaultdict(list)
    for lead_id, *rest in leadbook.enrollments_of_leads(list(key_of)):
        enrollments[key_of[lead_id]].append(tuple(rest))
    return {key: _summarise(leads.get(key), blocks.get(key), enrollments.get(key, []), sequence) for key in keys}


def _summarise(lead: tuple[int, str] | None, block: tuple[str, str | None] | None,
               enrollments: list[tuple[Any, ...]], sequence: str) -> _History:
    running = finished = None
    sticky_here = sticky_any = None
    for seq_name, state, outcome, created, finished_at, sender_id in enrollments:  # oldest first
        if state in RUNNING:
            running = (seq_name, state, _date(created))
        elif seq_name == sequence:
            finished = (outcome or state, _date(finished_at or created))
        if sender_id is not None:
            sticky_any = sender_id
            if seq_name == sequence:
                sticky_here = sender_id
    return _History(lead_id=lead[0] if lead else None, fields=json.loads(lead[1]) if lead else None, blocked=block,
                    running=running, finished_here=finished,
                    sticky_sender=sticky_here if sticky_here is not None else sticky_any)


def _check_rows(leads: LeadsFile, history: dict[str, _History], sequence: str,
                result: ImportResult) -> list[LeadRow]:
    """Rows to import; every rejected row goes into `result` with all its problems."""
    accepted: list[LeadRow] = []
    for row in leads.rows:
        problems = list(row.errors)
        if not problems and row.key is not None:
            problems = _store_problems(history[row.key], sequence)
        if not problems:
            accepted.append(row)
            continue
        result.skipped_by_kind[problem_kind(problems[0])] += 1
        result.rejected.extend(leads.row_error(row, p) for p in problems)
    return accepted


def _store_problems(past: _History, sequence: str) -> list[str]:
    problems: list[str] = []
    if past.blocked is not None:
        since, reason = past.blocked
        problems.append(RowProblem(f"blocked since {since}" + (f" ({reason})" if reason else ""), BLOCKED))
    if past.running is not None:
        name, state, since = past.running
        if name == sequence:
            problems.append(RowProblem(f"already enrolled in this sequence ({state} since {since})", IN_THIS_SEQUENCE))
        else:
            problems.append(RowProblem(f'already in {state} sequence "{name}" (since {since})', IN_OTHER_SEQUENCE))
    elif past.finished_here is not None:
        outcome, when = past.finished_here
        problems.append(RowProblem(f'already went through this sequence (ended "{outcome}" on {when})',
                                   IN_THIS_SEQUENCE))
    return problems


def _assign(rows: list[LeadRow], history: dict[str, _History], allowed: _Allowed) -> list[int]:
    """A sender id per row: sticky when allowed, else the least loaded active sender (ties by name)."""
    load = leadbook.active_load(allowed.sticky_ok)
    names = allowed.name_of
    out: list[int] = []
    for row in rows:
        assert row.key is not None
        sender = history[row.key].sticky_sender
        if sender is None or sender not in allowed.sticky_ok:
            sender = min(allowed.ids, key=lambda s: (load[s], names[s]))
        load[sender] += 1
        out.append(sender)
    return out


def _write(rows: list[LeadRow], history: dict[str, _History], senders: list[int], seq: Sequence,
           now: dt.datetime, result: ImportResult, progress: Progress | None) -> None:
    """Upsert the leads, then enroll them: executemany in one transaction (the caller's)."""
    stamp = to_db_time(now)
    lead_rows: list[tuple[Any, ...]] = []
    for row in rows:
        assert row.key is not None and row.profile_url is not None
        past = history[row.key]
        fields = {k: v for k, v in row.fields.items() if k != URL_FIELD}
        if past.lead_id is None:
            result.imported += 1
        else:
            result.updated += 1
            fields = {**(past.fields or {}), **fields}  # a column missing from this file keeps its value
        zone = _zone(fields.get("timezone"))
        if fields.get("timezone") and zone is None:
            result.unknown_timezones += 1
        lead_rows.append((row.key, row.profile_url, Lead.fields.db_value(fields), zone, stamp, stamp))
    done = _Done(progress, 2 * len(lead_rows))
    leadbook.upsert_leads(lead_rows, done.add)
    ids = leadbook.lead_ids_by_key([r[0] for r in lead_rows])
    leadbook.enroll(((ids[r[0]], sender) for r, sender in zip(lead_rows, senders, strict=True)),
                    sequence=seq.name, sequence_hash=seq.source_hash, step_id=seq.steps[0].id, now=now,
                    on_batch=done.add)


class _Done:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.count = progress, total, 0

    def add(self, n: int) -> None:
        self.count += n
        if self.progress is not None:
            self.progress(self.count, self.total)


def _date(stored: str) -> str:
    return from_db_time(stored).date().isoformat()


def _zone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


# --- the block list -------------------------------------------------------------------------------


@dataclass
class BlockResult:
    added: int = 0
    already: int = 0
    running: int = 0  # blocked leads with a running enrollment (the engine ends them at their next step)


def profile_key(url: str) -> tuple[str, str]:
    """(key, canonical url) of a profile URL given on the command line; UserError when invalid."""
    try:
        return normalize_profile_url(url)
    except ValueError as exc:
        raise UserError(f'"{url}" is not a LinkedIn profile URL ({exc})') from None


def profiles_from_file(leads: LeadsFile) -> list[tuple[str, str]]:
    """Every profile of a CSV for blocking; a duplicate or a control character in a name is harmless
    there (the profile URL is what counts, and a bad one is its own problem), any other problem is not."""
    harmless = (DUPLICATE, CONTROL_CHARACTER)
    problems = [leads.row_error(row, p) for row in leads.rows for p in row.errors if problem_kind(p) not in harmless]
    if leads.fatal or problems:
        file_level = [d for d in leads.diagnostics if not d.message.startswith("row ") or leads.fatal]
        raise UserError("nothing blocked: fix the rows above first", problems + file_level)
    return list(dict.fromkeys((r.key, r.profile_url) for r in leads.rows if r.key and r.profile_url))


def block_profiles(profiles: Iterable[tuple[str, str]], reason: str | None, now: dt.datetime) -> BlockResult:
    """Add profiles to the block list (a new reason replaces the old one); one transaction."""
    result = BlockResult()
    items = list(profiles)
    keys = [k for k, _ in items]
    with writing(immediate=True):
        existing = leadbook.blocked_keys(keys)
        new = [(k, u) for k, u in items if k not in existing]
        leadbook.add_blocks(new, reason, now)
        if reason is not None and existing:
            leadbook.set_block_reason(list(existing), reason)
        result.added, result.already = len(new), len(existing)
        result.running = leadbook.running_count(keys)
    return result


def unblock_profile(key: str, url: str, now: dt.datetime) -> None:
    with writing(immediate=True):
        if not leadbook.remove_block(key):
            raise UserError(f"{url} is not blocked")
        leadbook.record_block_events("unblocked", [(key, url)], None, now)


# --- listing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeadListing:
    profile_url: str
    full_name: str | None
    sequence: str | None
    state: str | None
    step: str | None
    sender: str | None
    due_at: dt.datetime | None
    outcome: str | None
    paused_reason: str | None
    blocked: bool

    def to_json(self) -> dict[str, Any]:
        return {"profile_url": self.profile_url, "full_name": self.full_name, "sequence": self.sequence,
                "state": self.state, "step": self.step, "sender": self.sender,
                "due_at": self.due_at.isoformat() if self.due_at else None, "outcome": self.outcome,
                "paused_reason": self.paused_reason, "blocked": self.blocked}


def list_leads(*, sequence: str | None = None, state: str | None = None) -> Iterator[LeadListing]:
    """Each lead with its latest enrollment (in `sequence` when given), optionally of one state."""
    for url, fields, seq_name, st, step, sender, due_at, outcome, reason, blocked in \
            leadbook.leads_with_latest_enrollment(sequence, state):
        yield LeadListing(url, (fields or {}).get("full_name"), seq_name, st, step, sender, due_at, outcome,
                          reason, blocked)
