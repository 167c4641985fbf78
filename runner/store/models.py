"""The store's tables as peewee models. Times are aware UTC datetimes (see fields.py).

- Sender: an identity with a LinkedIn account; `status` active|paused; warm-up counts from
  `first_action_at`.
- Lead: one person, unique by normalised profile `key`; CSV columns in `fields`.
- Block: the do-not-contact list, by key (a lead may be blocked before it is imported).
- Enrollment: a lead in a sequence with a sticky sender; `state` active|paused|done|failed; the
  interpreter's cursor (`step_id`, `attempt`, `due_at`) and what it learnt (`facts`);
  `lease_owner` is the runner (`host:pid:nonce`, see runner/engine/leases.py) that claimed it and has not
  finished with it (indexed for active rows since migration 3).
- Action: the ledger and outbox. A row is written (in_flight) and committed before the provider is
  called, and marked done/failed after; `key` (enrollment:step:attempt) is the idempotency key.
  It also keeps what an audit needs: the zones used, the lead's relationship at the time, whether a
  message started a conversation.
- Event: append-only things that happened (accepted, replied, auth_expired, ...), unique by the
  provider's event id so that re-deliveries and overlapping polls are harmless.
- InboxEvent (table `inbox`): every event received (poll, webhook, callback), appended from any
  thread or process, then applied once (`applied`) or given up on after bounded attempts (`dead`,
  with its error); the applied ones are also in Event, the ledger.
- Transition: every step a lead entered, and when (the audit log's step transitions).
- SyncCursor: per-sender `last_synced_at` for inbox/connection polling (seed 000's lastSyncedAtUtc).
- SequenceVersion: the exact text (YAML and templates) of a version of a sequence, by the hash an
  enrollment's `sequence_hash` holds: the version the lead started on and runs (runner.versions).
- Usage: actions performed (and pacing slots reserved) per sender, sender-local day, action and
  sequence; a sender's total for a day is the sum over its sequences.
- Pace: the moments of a sender's paced actions, booked by a waiting enrollment or used by one that
  acted, each with the spacing it keeps from the others (runner.engine.limits).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import peewee

from runner.store import written
from runner.store.fields import IntBooleanField, JSONField, UTCDateTimeField

log = logging.getLogger(__name__)
_SQL_LOG = logging.getLogger("peewee")  # peewee logs every statement here at DEBUG
T = TypeVar("T")


class Database(peewee.SqliteDatabase):
    """SQLite that waits for another process's write lock instead of failing.

    SQLite itself waits up to the busy timeout; past it, a statement fails with "database is
    locked". Another process holding the lock longer is normal (a big import, a backup, a `seqrun
    pause` in a long transaction), so whatever can be tried again is: every BEGIN (transactions
    take the write lock at BEGIN, IMMEDIATE, so nothing inside one waits for it) and every statement
    outside a transaction. They are retried with a growing pause, logged, for as long as it takes;
    Ctrl-C still stops the process while it waits.
    """

    #: pauses between attempts (seconds); the busy timeout already waited before each one fails
    backoff: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)
    #: how to pause (tests inject one that does not sleep)
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._gate = FairGate()
        self._holding = threading.local()

    def begin(self, lock_type: str | None = None) -> None:
        # Threads of this process take turns, first come first served, before they ask SQLite for
        # its lock: left to SQLite's busy handler (a sleep between tries), a thread storing a webhook
        # delivery lost the lock to the engine's back-to-back transactions for seconds.
        self._gate.acquire()
        self._holding.gate = True
        try:
            self._patiently(lambda: super(Database, self).begin(lock_type))
        except BaseException:
            self._let_go()
            raise

    def commit(self) -> None:
        super().commit()
        written.note_commit()
        self._let_go()

    def rollback(self) -> None:
        ROLLBACKS[0] += 1
        try:
            super().rollback()
        finally:
            self._let_go()

    def _let_go(self) -> None:
        if getattr(self._holding, "gate", False):
            self._holding.gate = False
            self._gate.release()

    def execute_sql(self, sql: str, params: Any = None) -> Any:
        conn = self._state.conn
        if conn is not None and conn.in_transaction:
            # Inside a transaction a failed statement cannot simply run again; IMMEDIATE
            # transactions hold the write lock from BEGIN, so this only fails for a reason.
            if not self.query_hooks and not _SQL_LOG.isEnabledFor(logging.DEBUG):
                # What peewee's execute_sql does then, without its layers (half the time of a
                # simple statement): errors are still peewee's (its wrapper raises them as its own).
                try:
                    cursor = conn.execute(sql, params or ())
                except Exception as exc:
                    peewee.__exception_wrapper__.__exit__(type(exc), exc, exc.__traceback__)
                    raise
            else:
                cursor = super().execute_sql(sql, params)
        else:
            cursor = self._patiently(lambda: super(Database, self).execute_sql(sql, params))
        written.note(sql)  # a simulation's own writes (runner.store.written; nothing outside one)
        return cursor

    def _patiently(self, attempt: Callable[[], T]) -> T:
        waited = 0
        while True:
            try:
                return attempt()
            except peewee.OperationalError as exc:
                if not is_locked(exc):
                    raise
                pause = self.backoff[min(waited, len(self.backoff) - 1)]
                if waited % 10 == 0:
                    log.warning("the database is locked by another process; waiting for it (attempt %d)",
                                waited + 1)
                waited += 1
                self.sleep(pause)


#: rollbacks (of a transaction or a savepoint) seen by this process: what it kept in memory of rows
#: it wrote may be stale once this moves (`transactions.sole_writer`); a list, to be moved in place
ROLLBACKS = [0]


class _Savepoint(peewee._savepoint):
    """peewee's savepoint, counted when rolled back, and always of the same name (peewee draws a
    uuid4 for each: measurable when every lead of a simulation runs in its own). Savepoints nest
    as blocks do, and SQLite's RELEASE and ROLLBACK TO act on the innermost of the name: the same
    as a name of its own for each, and the statements are prepared once (the driver keeps them by
    their text)."""

    def __init__(self, db: Any, sid: str | None = None) -> None:
        super().__init__(db, sid or "s")

    def rollback(self, begin: bool = True) -> None:
        """Undo the block's writes. A savepoint rolled back to stays on SQLite's (and Postgres')
        stack: ending the block (`begin` false) releases it too, or the next RELEASE / ROLLBACK TO
        of the name would reach it instead of the enclosing block's savepoint; going on (`begin`)
        keeps it, open and empty, as the block's savepoint."""
        ROLLBACKS[0] += 1
        self.db.execute_sql(f"ROLLBACK TO SAVEPOINT {self.quoted_sid};")
        if not begin:
            self.db.execute_sql(f"RELEASE SAVEPOINT {self.quoted_sid};")


class _Proxy(peewee.DatabaseProxy):
    """The models' database, bound by `open_store`; its savepoints are `_Savepoint`s."""

    def savepoint(self) -> peewee._savepoint:
        return _Savepoint(self)


class FairGate:
    """A lock handed to its waiters in the order they came (a plain lock lets the thread that just
    released it take it again at once, before any waiter wakes)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: collections.deque[threading.Event] = collections.deque()

    def acquire(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiting.append(turn)
        try:
            turn.wait()
        except BaseException:  # Ctrl-C while waiting: leave the queue, or pass on a turn just given
            with self._mutex:
                if turn in self._waiting:
                    self._waiting.remove(turn)
                    raise
            self.release()
            raise

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()  # handed over: it stays held
            else:
                self._held = False


def is_locked(exc: BaseException) -> bool:
    return str(exc).startswith(("database is locked", "database table is locked"))


#: The models' database: SQLite (`Database`) or Postgres (`backends.postgres.PostgresDatabase`),
#: chosen by `open_store` from the URL.
db = _Proxy()
db.initialize(Database(None, lock_type="IMMEDIATE"))

ENROLLMENT_STATES = ("active", "paused", "done", "failed")
ACTION_STATUSES = ("in_flight", "done", "failed", "skipped")


class BaseModel(peewee.Model):
    class Meta:
        database = db
        legacy_table_names = False


class Sender(BaseModel):
    name = peewee.TextField(unique=True)
    provider = peewee.TextField()
    account_id = peewee.TextField()
    account_type = peewee.TextField(default="classic")
    timezone = peewee.TextField(default="UTC")
    profile_id = peewee.TextField(null=True)
    full_name = peewee.TextField(null=True)
    status = peewee.TextField(default="active")
    paused_reason = peewee.TextField(null=True)
    first_action_at = UTCDateTimeField(null=True)
    created_at = UTCDateTimeField()


class Lead(BaseModel):
    key = peewee.TextField(unique=True)
    profile_url = peewee.TextField()
    fields = JSONField(default=dict)
    timezone = peewee.TextField(null=True)
    tags = JSONField(default=list)
    provider_ids = JSONField(default=dict)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()


class Block(BaseModel):
    key = peewee.TextField(unique=True)
    profile_url = peewee.TextField()
    reason = peewee.TextField(null=True)
    created_at = UTCDateTimeField()


class Enrollment(BaseModel):
    lead = peewee.ForeignKeyField(Lead, backref="enrollments", on_delete="CASCADE")
    sequence = peewee.TextField()
    sequence_hash = peewee.TextField()
    sender = peewee.ForeignKeyField(Sender, null=True, backref="enrollments")
    step_id = peewee.TextField(null=True)
    state = peewee.TextField(default="active")
    outcome = peewee.TextField(null=True)
    due_at = UTCDateTimeField(null=True)
    attempt = peewee.IntegerField(default=0)
    step_entered_at = UTCDateTimeField(null=True)
    facts = JSONField(default=dict)
    last_error = peewee.TextField(null=True)
    paused_reason = peewee.TextField(null=True)
    lease_owner = peewee.TextField(null=True)
    created_at = UTCDateTimeField()
    updated_at = UTCDateTimeField()
    finished_at = UTCDateTimeField(null=True)
    version = peewee.IntegerField(default=0)  # bumped by every guarded write (runner.store.enrollment_writes)


class Action(BaseModel):
    key = peewee.TextField(unique=True)
    enrollment = peewee.ForeignKeyField(Enrollment, backref="actions", on_delete="CASCADE")
    lead = peewee.ForeignKeyField(Lead, on_delete="CASCADE")
    sender = peewee.ForeignKeyField(Sender, null=True)
    sequence = peewee.TextField()
    step_id = peewee.TextField()
    action = peewee.TextField()
    attempt = peewee.IntegerField(default=0)
    variant = peewee.TextField(null=True)
    template = peewee.TextField(null=True)
    content = peewee.TextField(null=True)
    subject = peewee.TextField(null=True)
    status = peewee.TextField()
    charged = IntBooleanField(default=False)
    planned_at = UTCDateTimeField()
    started_at = UTCDateTimeField(null=True)
    performed_at = UTCDateTimeField(null=True)
    provider_id = peewee.TextField(null=True)
    conversation_id = peewee.TextField(null=True)
    error_kind = peewee.TextField(null=True)
    error_message = peewee.TextField(null=True)
    lead_timezone = peewee.TextField(null=True)  # the zone the calendar judged the lead in, at the time
    sender_timezone = peewee.TextField(null=True)  # the zone the sender's daily limits count days in
    relationship = peewee.TextField(null=True)  # connected | invite_pending | not_connected; NULL: not checked
    conversation = peewee.TextField(null=True)  # messages: started | existing


class Event(BaseModel):
    event_id = peewee.TextField(unique=True)
    kind = peewee.TextField()
    source = peewee.TextField()
    sender = peewee.ForeignKeyField(Sender, null=True)
    lead = peewee.ForeignKeyField(Lead, null=True, on_delete="CASCADE")
    enrollment = peewee.ForeignKeyField(Enrollment, null=True, on_delete="SET NULL")
    occurred_at = UTCDateTimeField()
    received_at = UTCDateTimeField()
    data = JSONField(default=dict)


class InboxEvent(BaseModel):
    source = peewee.TextField()  # poll | webhook | callback
    provider = peewee.TextField()
    sender = peewee.ForeignKeyField(Sender, null=True, on_delete="SET NULL")
    event_id = peewee.TextField()
    kind = peewee.TextField()
    lead_key = peewee.TextField(null=True)
    account_id = peewee.TextField(null=True)
    conversation_id = peewee.TextField(null=True)
    data = JSONField(default=dict)
    payload = peewee.TextField(null=True)  # the body as received; never headers (signatures)
    received_at = UTCDateTimeField()
    occurred_at = UTCDateTimeField(null=True)  # NULL: the payload's time could not be read (dead)
    state = peewee.TextField(default="pending")  # pending | applied | dead
    error = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    applied_at = UTCDateTimeField(null=True)

    class Meta:
        table_name = "inbox"
        indexes = ((("provider", "event_id"), True),)


class Transition(BaseModel):
    enrollment = peewee.ForeignKeyField(Enrollment, on_delete="CASCADE")
    lead = peewee.ForeignKeyField(Lead, on_delete="CASCADE")
    sequence = peewee.TextField()
    step_id = peewee.TextField()
    entered_at = UTCDateTimeField()


class SyncCursor(BaseModel):
    sender = peewee.ForeignKeyField(Sender, unique=True, on_delete="CASCADE")
    last_synced_at = UTCDateTimeField(null=True)
    updated_at = UTCDateTimeField()


class Usage(BaseModel):
    sender = peewee.ForeignKeyField(Sender, on_delete="CASCADE")
    sequence = peewee.TextField()
    action = peewee.TextField()
    day = peewee.TextField()  # YYYY-MM-DD in the sender's time zone
    used = peewee.IntegerField(default=0)
    reserved = peewee.IntegerField(default=0)
    last_at = UTCDateTimeField(null=True)

    class Meta:
        indexes = ((("sender", "day", "action", "sequence"), True),)


class SequenceVersion(BaseModel):
    hash = peewee.TextField(unique=True)
    sequence = peewee.TextField()
    path = peewee.TextField()  # the file it was loaded from, as given then
    source = peewee.TextField()  # the YAML
    templates = JSONField(default=dict)  # template name -> text
    templates_dir = peewee.TextField()
    created_at = UTCDateTimeField()


class Pace(BaseModel):
    sender = peewee.ForeignKeyField(Sender, on_delete="CASCADE")
    action = peewee.TextField()
    sequence = peewee.TextField()
    day = peewee.TextField()  # YYYY-MM-DD in the sender's time zone
    at = UTCDateTimeField()
    spacing = peewee.FloatField()  # seconds this point keeps from the sender's other points of the action
    state = peewee.TextField()  # booked | used
    enrollment = peewee.ForeignKeyField(Enrollment, null=True, on_delete="CASCADE")

    class Meta:
        indexes = ((("sender", "action", "at"), False),)


class RequestHold(BaseModel):
    scope = peewee.TextField(primary_key=True)  # a hash of provider, base URL and key: never the key itself
    until = UTCDateTimeField()  # nothing goes out for the scope before it (a 429's reset)


MODELS = (Sender, Lead, Block, Enrollment, Action, Event, InboxEvent, Transition, SyncCursor, Usage, SequenceVersion, Pace,
          RequestHold)
