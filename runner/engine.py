"""The interpreter: `Engine.tick(now)` moves every due lead through its sequence.

One tick:
1. polls each sender's provider for acceptances and replies when its poll is due (per-sender cursor,
   re-read with an overlap, cursor saved only after the sync finished) and applies the events;
2. claims due enrollments through the partial index on `due_at` (cost grows with the number due,
   not the number enrolled) with one guarded UPDATE each (a lease: `due_at` moves to now + lease, so
   a crashed run's leads come back by themselves);
3. runs each claimed lead's steps (`runner.steps`) until it must wait, act later, or end, committing
   every transition before the next external action.

Errors in one lead never stop the loop: the error is recorded on the enrollment and the retry policy
applied. Configuration errors are raised before the first tick by whoever builds the `Runtime`.
Time is always a parameter; the engine never reads the clock.

A run asked to stop (`Runtime.stop_requested`) finishes the external call in flight, commits it,
makes no new one, and hands the leads it claimed and did not get to back (due at once, no owner);
at start-up `take_back_leases` does the same for the leases of runners that are gone (a kill -9).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from . import leases, limits, steps
from .providers.base import ErrorKind, ProviderError, ProviderEvent
from .runtime import Runtime, SenderRuntime
from .store import Action, Enrollment, Event, Lead, Sender, SyncCursor, claims, db, health
from .store.fields import to_db_time
from .store.leases import lease_holders, release_claims, release_leases_of
from .urls import redact_secrets

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    processed: int = 0
    transitions: int = 0
    events: int = 0
    errors: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    stopped: bool = False  # the pass ended early because the run was asked to stop


_ENR_FIELDS = [f for f in Enrollment._meta.sorted_fields]
_LEAD_FIELDS = [f for f in Lead._meta.sorted_fields]
_LOAD_SQL = (f"SELECT {', '.join('e.' + f.column_name for f in _ENR_FIELDS)}, "
             f"{', '.join('l.' + f.column_name for f in _LEAD_FIELDS)} "
             "FROM enrollment e JOIN lead l ON l.id = e.lead_id WHERE e.id = ?")


def load_enrollment(enrollment_id: int) -> Enrollment:
    """An enrollment with its lead, read with one plain query (peewee's query builder is the
    slowest part of a tick otherwise)."""
    row = db.execute_sql(_LOAD_SQL, (enrollment_id,)).fetchone()
    n = len(_ENR_FIELDS)
    lead = Lead(**{f.name: f.python_value(v) for f, v in zip(_LEAD_FIELDS, row[n:])})
    values = {f.name: f.python_value(v) for f, v in zip(_ENR_FIELDS, row[:n]) if f.name != "lead"}
    enr = Enrollment(**values)
    enr.lead = lead
    return enr


class Engine:
    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._next_poll: dict[int, dt.datetime] = {}

    # --- the loop ----------------------------------------------------------------------------------

    def tick(self, now: dt.datetime, *, limit: int | None = None,
             clock: Callable[[], dt.datetime] | None = None) -> TickReport:
        """Process everything due at `now` (at most `limit` leads). Safe to call as often as you like.

        With a `clock`, each lead is processed at the time the clock says when its turn comes (real
        runs: provider calls take time, and a window may close during a long pass); without one,
        every lead is processed at `now` (simulations and tests, whose clock moves only between ticks).
        """
        report = TickReport()
        self.sync(now, report)
        while (limit is None or report.processed < limit) and not self._stopping(report):
            batch = self.rt.batch if limit is None else min(self.rt.batch, limit - report.processed)
            claimed = claims.claim_due(now, batch, self.rt.owner, now + self.rt.lease)
            for index, enrollment_id in enumerate(claimed):
                if self._stopping(report):
                    # Hand back what this pass claimed and did not start: due at once for the next run.
                    release_claims(claimed[index:], self.rt.owner, now)
                    return report
                at = max(now, clock()) if clock is not None else now
                if self._run(enrollment_id, at, report):
                    report.processed += 1
            if len(claimed) < batch:
                break
        limits.fill_gaps(self.rt, now)  # capacity given back during the pass goes to waiting leads
        self._want_polls(now)
        return report

    def _stopping(self, report: TickReport) -> bool:
        if self.rt.stop_requested():
            report.stopped = True
        return report.stopped

    def due_ids(self, now: dt.datetime, limit: int) -> list[int]:
        rows = db.execute_sql(
            "SELECT id FROM enrollment WHERE state = 'active' AND due_at <= ? ORDER BY due_at LIMIT ?",
            (to_db_time(now), limit)).fetchall()
        return [r[0] for r in rows]

    def claim_many(self, ids: list[int], now: dt.datetime) -> list[int]:
        """Claim a batch with one guarded write (one transaction instead of one per lead); returns the
        ids this runner got, in the order given (due order). A row another runner claimed first, or
        that stopped being due, is not returned."""
        return claims.claim_ids(ids, now, self.rt.owner, now + self.rt.lease)

    def next_due(self) -> dt.datetime | None:
        """The earliest moment anything will be due: a lead's `due_at` or a sender's next poll."""
        row = db.execute_sql("SELECT MIN(due_at) FROM enrollment WHERE state = 'active'").fetchone()
        candidates = [t for t in self._next_poll.values()]
        if row and row[0]:
            from .store.fields import from_db_time

            candidates.append(from_db_time(row[0]))
        return min(candidates) if candidates else None

    def _run(self, enrollment_id: int, now: dt.datetime, report: TickReport) -> bool:
        enr = load_enrollment(enrollment_id)
        if enr.state != "active" or enr.lease_owner != self.rt.owner:
            return False  # paused (e.g. its sender's auth expired) since the batch was claimed
        try:
            outcome = steps.advance(self.rt, enr, now)
            report.transitions += outcome.transitions
            if outcome.final == steps.STOPPED:
                release_claims([enr.id], self.rt.owner, now)  # the rest of its work is the next run's
                return False
            if outcome.final:
                report.outcomes[outcome.final] += 1
        except Exception as exc:  # noqa: BLE001 - one bad lead must not stop the others
            if _interrupted(exc):
                # A Ctrl-C that surfaced as another error (a rollback failing while it unwound) is
                # still a Ctrl-C: the process stops; it is not this lead's failure.
                raise KeyboardInterrupt from exc
            if health.damaged(exc):
                raise  # the database file, not this lead: stop; the user repairs the file
            report.errors += 1
            log.exception("lead %s (enrollment %s) step %s failed unexpectedly", enr.lead.key, enr.id, enr.step_id)
            self._record_crash(enr, now, exc)
        return True

    def _record_crash(self, enr: Enrollment, now: dt.datetime, exc: Exception) -> None:
        """An unexpected error in our own code: retry with backoff, then fail the lead with the error kept."""
        with db.atomic():
            fresh = Enrollment.get_by_id(enr.id)
            fresh.attempt += 1
            fresh.last_error = redact_secrets(f"{type(exc).__name__}: {exc}")
            fresh.updated_at = now
            fresh.lease_owner = None  # it sleeps in its backoff; nobody is working on it
            if fresh.attempt > self.rt.max_attempts:
                fresh.state, fresh.outcome, fresh.finished_at, fresh.due_at = "failed", "error", now, None
            else:
                fresh.due_at = now + steps.backoff(self.rt, fresh.attempt, key=str(fresh.id))
            fresh.save()

    # --- events ------------------------------------------------------------------------------------

    def sync(self, now: dt.datetime, report: TickReport | None = None) -> int:
        """Apply the webhook events received since the last tick, then poll every active sender
        whose poll is due; returns the number of new events applied."""
        total = self._apply_webhooks(now)
        for sender in self.rt.senders.values():
            if self.rt.stop_requested():
                break
            due = self._next_poll.get(sender.id)
            if due is not None and due > now:
                continue
            self._next_poll[sender.id] = now + self.rt.poll_every
            if Sender.get_by_id(sender.id).status != "active":
                continue
            total += self._sync_sender(sender, now)
        if report is not None:
            report.events += total
        return total

    def _apply_webhooks(self, now: dt.datetime) -> int:
        """Verified webhook events (runner.webhooks), applied here so that one thread writes the store."""
        if self.rt.webhook_events is None:
            return 0
        applied = 0
        for ev in self.rt.webhook_events():
            try:
                applied += self.apply_event(ev, now, source="webhook")
            except Exception:  # noqa: BLE001 - one malformed event must not stop the others
                log.exception("webhook event %s (%s) could not be applied", ev.event_id, ev.kind)
        return applied

    def _want_polls(self, now: dt.datetime) -> None:
        """Senders whose provider wants a poll sooner than the schedule (Salesflow: the inbox sync
        5-10 minutes after a message, seed 000) get it then."""
        for sender in self.rt.senders.values():
            poll_due = getattr(sender.provider, "poll_due", None)
            wanted = poll_due(sender.account) if callable(poll_due) else None
            if wanted is not None and wanted > now:
                current = self._next_poll.get(sender.id)
                self._next_poll[sender.id] = wanted if current is None else min(current, wanted)

    def _sync_sender(self, sender: SenderRuntime, now: dt.datetime) -> int:
        cursor = SyncCursor.get_or_none(SyncCursor.sender == sender.id)
        since = cursor.last_synced_at - self.rt.sync_overlap if cursor and cursor.last_synced_at else None
        try:
            result = sender.provider.poll_events(sender.account, since=since)
        except ProviderError as err:
            if err.kind is ErrorKind.AUTH_EXPIRED:
                steps.pause_sender(sender.id, "auth expired", now)
            elif err.kind is ErrorKind.API_KEY_REJECTED:
                steps.pause_sender(sender.id, steps.API_KEY_REJECTED, now)
            log.warning("sender %s: polling failed: %s", sender.name, err)
            return 0
        applied, failed = 0, 0
        # A session renewed since it expired: the old expiry (first seen now, e.g. because the
        # sender was paused and not polled) must not pause the sender that was just resumed.
        restored = max((ev.occurred_at for ev in result.events if ev.kind == "auth_restored"), default=None)
        for ev in result.events:
            try:
                stale = ev.kind == "auth_expired" and restored is not None and ev.occurred_at <= restored
                applied += self.apply_event(ev, now, source="poll", sender=sender, stale=stale)
            except Exception:  # noqa: BLE001 - one malformed event must not stop every lead
                failed += 1
                log.exception("sender %s: event %s (%s) could not be applied", sender.name, ev.event_id, ev.kind)
        if failed:
            return applied  # the cursor stays: the next poll brings the failed events again
        if result.synced_until is None:
            return applied  # the provider's sync has not finished: the cursor stays where it is
        # Only now, after every event is stored, may the cursor move (seed 000).
        with db.atomic():
            if cursor is None:
                SyncCursor.create(sender=sender.id, last_synced_at=result.synced_until, updated_at=now)
            else:
                cursor.last_synced_at, cursor.updated_at = result.synced_until, now
                cursor.save()
        return applied

    def apply_event(self, event: ProviderEvent, now: dt.datetime, *, source: str,
                    sender: SenderRuntime | None = None, stale: bool = False) -> bool:
        """Store an event (once, by event id) and apply it to the lead's running enrollment (a `stale`
        one, superseded by a later event, is only stored)."""
        with db.atomic():
            if Event.select(Event.id).where(Event.event_id == event.event_id).exists():
                return False
            lead = Lead.get_or_none(Lead.key == event.lead_key) if event.lead_key else None
            if sender is None and event.account_id is not None:
                sender = next((s for s in self.rt.senders.values() if s.account.account_id == event.account_id), None)
            enr = None
            if lead is not None:
                query = Enrollment.select().where(Enrollment.lead == lead.id, Enrollment.state.in_(("active", "paused")))
                if sender is not None:
                    query = query.where(Enrollment.sender == sender.id)
                enr = query.first()
            Event.create(event_id=event.event_id, kind=event.kind, source=source,
                         sender=sender.id if sender else None, lead=lead.id if lead else None,
                         enrollment=enr.id if enr else None, occurred_at=event.occurred_at, received_at=now,
                         data=dict(event.data))
            if stale:
                pass
            elif event.kind == "auth_expired" and sender is not None:
                steps.pause_sender(sender.id, "auth expired", now)
            elif enr is not None:
                steps.apply_event_to_enrollment(self.rt, enr, event, now)
        return True

    # --- recovery ----------------------------------------------------------------------------------

    def recover(self, now: dt.datetime) -> int:
        """At start-up: make every lead with an action left in flight due now.

        Its step handler reconciles the action with the provider (`find_action`) before anything is
        retried, so a crash between "recorded" and "marked done" never sends twice.
        """
        ids = [a.enrollment_id for a in Action.select(Action.enrollment).where(Action.status == "in_flight")]
        if not ids:
            return 0
        # Only leads a run was working on (still leased). A lead that sleeps in a backoff after a
        # timeout also has its action in flight on purpose; it keeps its backoff.
        return Enrollment.update(due_at=now, lease_owner=None).where(
            Enrollment.id.in_(ids), Enrollment.state == "active", Enrollment.lease_owner.is_null(False)).execute()

    def take_back_leases(self, now: dt.datetime) -> dict[str, int]:
        """At start-up: leads leased by runners that are gone (killed, or stopped without handing
        them back) are due at `now` instead of when their lease runs out. Returns, per gone runner,
        how many leads came back. Leases of runners that may still run are left alone."""
        gone = {owner: count for owner, (count, _) in lease_holders().items()
                if leases.is_gone(owner, me=self.rt.owner)}
        if gone:
            release_leases_of(list(gone), now)
        return gone


def _interrupted(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is among the causes of `exc`."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
