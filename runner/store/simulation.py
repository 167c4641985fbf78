"""The SQL the simulator reads for its report and `simulate --wire` for comparing the fakes'
ledgers with the audit log (`runner.simulate`, `runner.wire`). The funnel it shares with
`seqrun status` is in `reports.py`; enrolling the generated leads is in `leadbook.py`."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from runner.store.fields import from_db_time
from runner.store.models import Enrollment, db
from runner.store.transactions import KeptRead

LINKEDIN_ACTIONS = ("visit", "connect", "message", "inmail", "withdraw")


def has_enrollments() -> bool:
    """Whether the store holds any lead's enrollment (a simulation needs a new store)."""
    return Enrollment.select().exists()


_PAUSED: KeptRead[list[tuple[int, str, str | None]]] = KeptRead("sender")  # asked after every tick: known until a sender is written


def paused_senders() -> list[tuple[int, str, str | None]]:
    """(id, name, paused reason) of every paused sender."""
    return list(_PAUSED.read(lambda: [tuple(r) for r in db.execute_sql(
        "SELECT id, name, paused_reason FROM sender WHERE status = 'paused'").fetchall()]))


def active_by_step(sequence: str) -> dict[str, int]:
    """Active enrollments of a sequence per step they wait at."""
    return dict(db.execute_sql(
        "SELECT step_id, COUNT(*) FROM enrollment WHERE sequence = ? AND state = 'active' GROUP BY step_id",
        (sequence,)).fetchall())


def facts_of(sequence: str) -> list[tuple[int, str]]:
    """(enrollment id, facts as stored JSON) of every enrollment of a sequence."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT id, facts FROM enrollment WHERE sequence = ?", (sequence,)).fetchall()]


def messages_sent(sequence: str) -> list[tuple[int, str, dt.datetime | None]]:
    """(enrollment id, step id, performed at) of every message and InMail of a sequence that was
    sent, in the order they were."""
    return [(enrollment_id, step_id, from_db_time(performed) if performed else None) for enrollment_id, step_id, performed in db.execute_sql(
        "SELECT enrollment_id, step_id, performed_at FROM action WHERE sequence = ? AND action IN ('message', 'inmail') "
        "AND status = 'done' ORDER BY performed_at", (sequence,)).fetchall()]


def usage_by_day(sender_id: int) -> list[tuple[str, str, int | None]]:
    """(sender-local day, action, used) of a sender, by day and action."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT day, action, SUM(used) FROM usage WHERE sender_id = ? GROUP BY day, action ORDER BY day, action",
        (sender_id,)).fetchall()]


def reserved_by_action() -> dict[str, int]:
    """Paced slots booked now, per action, from the usage counts (every booking is counted there with
    its point: `limits._book`, `_unbook`, `_pull_forward`): what `dashboard.booked_slots` counts from
    the points, without a scan of every point (simulate asks every simulated hour)."""
    return {action: int(n) for action, n in db.execute_sql(
        "SELECT action, SUM(reserved) FROM usage WHERE reserved > 0 GROUP BY action ORDER BY action").fetchall()}


def bookings(sender_id: int) -> list[tuple[str, str, int]]:
    """(action, last day booked, leads waiting) of the slots a sender's leads have reserved ahead."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT action, MAX(day), SUM(reserved) FROM usage WHERE sender_id = ? AND reserved > 0 GROUP BY action",
        (sender_id,)).fetchall()]


# --- simulate --wire ------------------------------------------------------------------------------


def profiles_by_sender() -> list[tuple[int, str]]:
    """(sender id, profile url) of every enrollment."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT e.sender_id, l.profile_url FROM enrollment e JOIN lead l ON l.id = e.lead_id").fetchall()]


def sender_names() -> dict[int, str]:
    return dict(db.execute_sql("SELECT id, name FROM sender").fetchall())


def senders_named(names: Iterable[str]) -> list[tuple[int, str, str]]:
    """(id, name, account id) of the stored senders among `names`."""
    wanted = sorted(names)
    if not wanted:
        return []
    return [tuple(r) for r in db.execute_sql(
        f"SELECT id, name, account_id FROM sender WHERE name IN ({', '.join('?' * len(wanted))})", wanted).fetchall()]


def done_at_linkedin(sequence: str) -> list[tuple[str, str, int, str]]:
    """(idempotency key, action, sender id, lead key) of every LinkedIn action of a sequence that was done."""
    return [tuple(r) for r in db.execute_sql(
        "SELECT a.key, a.action, a.sender_id, l.key FROM action a JOIN lead l ON l.id = a.lead_id "
        f"WHERE a.sequence = ? AND a.status = 'done' AND a.action IN ({', '.join('?' * len(LINKEDIN_ACTIONS))})",
        (sequence, *LINKEDIN_ACTIONS)).fetchall()]


def event_counts(sender_ids: Iterable[int]) -> list[tuple[str, str, int]]:
    """(source, kind, events) of these senders' events, by source and kind."""
    ids = sorted(sender_ids)
    if not ids:
        return []
    return [tuple(r) for r in db.execute_sql(
        f"SELECT source, kind, COUNT(*) FROM event WHERE sender_id IN ({', '.join('?' * len(ids))}) "
        "GROUP BY source, kind ORDER BY source, kind", ids).fetchall()]


def sync_cursors_by_account() -> dict[str, dt.datetime]:
    """Each sender's inbox sync cursor (when it has one), by the sender's account id."""
    return {str(account): from_db_time(at) for account, at in db.execute_sql(
        "SELECT s.account_id, c.last_synced_at FROM sync_cursor c JOIN sender s ON s.id = c.sender_id "
        "WHERE c.last_synced_at IS NOT NULL").fetchall()}
