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

from . import flow, leases, limits, steps
from .providers.base import ErrorKind, ProviderError, ProviderEvent
from .runtime import Runtime, SenderRuntime
from .store import Enrollment, Event, Lead, Sender, SyncCursor, db, enrollments, health
from .store.fields import to_db_time
from .store.leases import lease_holders, release_claims, release_leases_of
from .store.transactions import writing
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
            ids = self.due_ids(now, batch)
            claimed = self.claim_many(ids, now)
            for index, enrollment_id in enumerate(claimed):
                if self._stopping(report):
                    # Hand back what this pass claimed and did not start: due at once for the next run.
                    release_claims(claimed[index:], self.rt.owner, now)
                    return report
                at = max(now, clock()) if clock is not None else now
                if self._run(enrollment_id, at, report):
                    report.processed += 1
            if len(ids) < batch:
                break
        limits.fill_gaps(self.rt, now)  # capacity given back during the pass goes to waiting leads
        self._want_polls(now)
        return report

    def _stopping(self, report: TickReport) -> bool:
        if self.rt.stop_requested():
            report.stopped = True
        return report.stopped

    def due_ids(self, now: dt.datetime, limit: int) -> list[int]:
        return enrollments.due_ids(now, limit)

    def claim_many(self, ids: list[int], now: dt.datetime) -> list[int]:
        """Claim a batch with one guarded write (one transaction instead of one per lead); returns the
        ids this runner got, in the order given (due order). A row another runner claimed first, or
        that stopped being due, is not returned."""
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        got = {r[0] for r in db.execute_sql(
            f"UPDATE enrollment SET due_at = ?, lease_owner = ? WHERE id IN ({marks}) AND state = 'active' "
            f"AND due_at <= ? RETURNING id",
            (to_db_time(now + self.rt.lease), self.rt.owner, *ids, to_db_time(now))).fetchall()}
        return [i for i in ids if i in got]

    def next_due(self) -> dt.datetime | None:
        """The earliest moment anything will be due: a lead's `due_at` or a sender's next poll."""
        candidates = [t for t in self._next_poll.values()]
        due = enrollments.earliest_due()
        if due is not None:
            candidates.append(due)
        return min(candidates) if candidates else None

    def _run(self, enrollment_id: int, now: dt.datetime, report: TickReport) -> bool:
        enr = enrollments.load_enrollment(enrollment_id)
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
        with writing():
            attempt = enrollments.attempt_of(enr.id) + 1
            retry_at = (None if attempt > self.rt.max_attempts
                        else now + flow.backoff(self.rt, attempt, key=str(enr.id)))
            enrollments.note_crash(enr.id, attempt, redact_secrets(f"{type(exc).__name__}: {exc}"), now,
                                   retry_at=retry_at)

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
        return enrollments.wake_leads_in_flight(now)

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
