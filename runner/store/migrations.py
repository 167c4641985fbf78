"""Numbered schema migrations, applied in order on open and recorded in `schema_migrations`.

Each migration is a list of SQL statements frozen at the time it was written: it never imports the
current models, so an old database can always be brought forward. Never edit a released migration;
append a new one.

The statements are written in SQLite's dialect; on Postgres each goes through
`backends.postgres.translate_ddl` (row ids from a sequence, REAL as double precision), so that both
backends run the same numbered migrations and record them the same way. Two processes opening a
database at once apply each migration once: on Postgres the second waits on an advisory lock, on
SQLite on the IMMEDIATE transaction, and each re-reads what is applied before applying anything.
"""
from __future__ import annotations

import datetime as dt

import peewee

from runner.store.fields import to_db_time

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (1, "initial", [
        """CREATE TABLE sender (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, provider TEXT NOT NULL,
            account_id TEXT NOT NULL, account_type TEXT NOT NULL DEFAULT 'classic',
            timezone TEXT NOT NULL DEFAULT 'UTC', profile_id TEXT, full_name TEXT,
            status TEXT NOT NULL DEFAULT 'active', paused_reason TEXT, first_action_at TEXT,
            created_at TEXT NOT NULL)""",
        """CREATE TABLE lead (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, profile_url TEXT NOT NULL,
            fields TEXT NOT NULL DEFAULT '{}', timezone TEXT, tags TEXT NOT NULL DEFAULT '[]',
            provider_ids TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        """CREATE TABLE block (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, profile_url TEXT NOT NULL, reason TEXT,
            created_at TEXT NOT NULL)""",
        """CREATE TABLE enrollment (
            id INTEGER PRIMARY KEY,
            lead_id INTEGER NOT NULL REFERENCES lead (id) ON DELETE CASCADE,
            sequence TEXT NOT NULL, sequence_hash TEXT NOT NULL,
            sender_id INTEGER REFERENCES sender (id),
            step_id TEXT, state TEXT NOT NULL DEFAULT 'active', outcome TEXT, due_at TEXT,
            attempt INTEGER NOT NULL DEFAULT 0, step_entered_at TEXT, facts TEXT NOT NULL DEFAULT '{}',
            last_error TEXT, paused_reason TEXT, lease_owner TEXT,
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL, finished_at TEXT,
            CHECK (state IN ('active', 'paused', 'done', 'failed')))""",
        # The interpreter's only hot query: due active enrollments, cheapest first.
        "CREATE INDEX enrollment_due ON enrollment (due_at) WHERE state = 'active'",
        # A lead is in at most one running (active or paused) sequence.
        "CREATE UNIQUE INDEX enrollment_one_running ON enrollment (lead_id) WHERE state IN ('active', 'paused')",
        "CREATE INDEX enrollment_lead ON enrollment (lead_id)",
        "CREATE INDEX enrollment_sequence ON enrollment (sequence, state, step_id)",
        "CREATE INDEX enrollment_sender ON enrollment (sender_id, state)",
        """CREATE TABLE action (
            id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE,
            enrollment_id INTEGER NOT NULL REFERENCES enrollment (id) ON DELETE CASCADE,
            lead_id INTEGER NOT NULL REFERENCES lead (id) ON DELETE CASCADE,
            sender_id INTEGER REFERENCES sender (id),
            sequence TEXT NOT NULL, step_id TEXT NOT NULL, action TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 0, variant TEXT, template TEXT, content TEXT, subject TEXT,
            status TEXT NOT NULL, charged INTEGER NOT NULL DEFAULT 0,
            planned_at TEXT NOT NULL, started_at TEXT, performed_at TEXT,
            provider_id TEXT, conversation_id TEXT, error_kind TEXT, error_message TEXT,
            CHECK (status IN ('in_flight', 'done', 'failed', 'skipped')))""",
        "CREATE INDEX action_enrollment ON action (enrollment_id)",
        "CREATE INDEX action_in_flight ON action (status) WHERE status = 'in_flight'",
        "CREATE INDEX action_planned ON action (planned_at)",
        """CREATE TABLE event (
            id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, source TEXT NOT NULL,
            sender_id INTEGER REFERENCES sender (id),
            lead_id INTEGER REFERENCES lead (id) ON DELETE CASCADE,
            enrollment_id INTEGER REFERENCES enrollment (id) ON DELETE SET NULL,
            occurred_at TEXT NOT NULL, received_at TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}')""",
        "CREATE INDEX event_lead ON event (lead_id, occurred_at)",
        "CREATE INDEX event_occurred ON event (occurred_at)",
        """CREATE TABLE sync_cursor (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL UNIQUE REFERENCES sender (id) ON DELETE CASCADE,
            last_synced_at TEXT, updated_at TEXT NOT NULL)""",
        """CREATE TABLE usage (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            sequence TEXT NOT NULL, action TEXT NOT NULL, day TEXT NOT NULL, used INTEGER NOT NULL DEFAULT 0,
            reserved INTEGER NOT NULL DEFAULT 0, last_at TEXT)""",
        "CREATE UNIQUE INDEX usage_key ON usage (sender_id, day, action, sequence)",
    ]),
    # The exact text of every version of a sequence that leads started on (runner.versions): an
    # enrollment's `sequence_hash` names its row, so a lead runs the version it started on.
    (2, "sequence versions", [
        """CREATE TABLE sequence_version (
            id INTEGER PRIMARY KEY, hash TEXT NOT NULL UNIQUE, sequence TEXT NOT NULL, path TEXT NOT NULL,
            source TEXT NOT NULL, templates TEXT NOT NULL DEFAULT '{}', templates_dir TEXT NOT NULL,
            created_at TEXT NOT NULL)""",
        "CREATE INDEX sequence_version_sequence ON sequence_version (sequence, created_at)",
        "CREATE INDEX enrollment_version ON enrollment (sequence, sequence_hash, state)",
    ]),
    (3, "leases", [
        # Leads a runner holds: read at every start-up (to take back a gone runner's leads) and by
        # `seqrun status`; small, because a lead's lease is cleared when it sleeps, pauses or ends.
        "CREATE INDEX enrollment_leased ON enrollment (lease_owner) WHERE state = 'active' AND lease_owner IS NOT NULL",
    ]),
    (4, "audit log", [
        # What an auditor needs to check each action without our code: the zones it was judged in,
        # the lead's relationship when it was performed, and whether a message started a thread.
        "ALTER TABLE action ADD COLUMN lead_timezone TEXT",
        "ALTER TABLE action ADD COLUMN sender_timezone TEXT",
        "ALTER TABLE action ADD COLUMN relationship TEXT",
        "ALTER TABLE action ADD COLUMN conversation TEXT",
        # Every step a lead entered, and when (the enrollment row keeps only the current one).
        """CREATE TABLE transition (
            id INTEGER PRIMARY KEY,
            enrollment_id INTEGER NOT NULL REFERENCES enrollment (id) ON DELETE CASCADE,
            lead_id INTEGER NOT NULL REFERENCES lead (id) ON DELETE CASCADE,
            sequence TEXT NOT NULL, step_id TEXT NOT NULL, entered_at TEXT NOT NULL)""",
        "CREATE INDEX transition_enrollment ON transition (enrollment_id)",
    ]),
    (5, "pacing points", [
        # Where each paced action of a sender is booked (`booked`, held by an enrollment) or was
        # performed (`used`), so that every new slot keeps its distance from all of them.
        """CREATE TABLE pace (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            action TEXT NOT NULL, sequence TEXT NOT NULL, day TEXT NOT NULL, at TEXT NOT NULL,
            spacing REAL NOT NULL, state TEXT NOT NULL,
            enrollment_id INTEGER REFERENCES enrollment (id) ON DELETE CASCADE,
            CHECK (state IN ('booked', 'used')))""",
        "CREATE INDEX pace_time ON pace (sender_id, action, at)",
        "CREATE INDEX pace_holder ON pace (enrollment_id) WHERE enrollment_id IS NOT NULL",
    ]),
    (6, "request holds", [
        # A provider's 429 reset, so that every runner sharing the database waits for it. `scope`
        # is a hash naming the provider, its base URL and the API key (or account), never the key.
        "CREATE TABLE request_hold (scope TEXT PRIMARY KEY, until TEXT NOT NULL)",
    ]),
    (7, "event inbox", [
        # Every event a poll, a webhook or a provider callback brought, appended from any thread or
        # process before it is applied (runner.engine.inbox); `payload` is the body as received (never
        # the headers: they carry signatures). Unique by provider and the provider's event id.
        """CREATE TABLE inbox (
            id INTEGER PRIMARY KEY, source TEXT NOT NULL, provider TEXT NOT NULL,
            sender_id INTEGER REFERENCES sender (id) ON DELETE SET NULL,
            event_id TEXT NOT NULL, kind TEXT NOT NULL, lead_key TEXT, account_id TEXT, conversation_id TEXT,
            data TEXT NOT NULL DEFAULT '{}', payload TEXT, received_at TEXT NOT NULL, occurred_at TEXT,
            state TEXT NOT NULL DEFAULT 'pending', error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            applied_at TEXT,
            CHECK (state IN ('pending', 'applied', 'dead')))""",
        "CREATE UNIQUE INDEX inbox_event ON inbox (provider, event_id)",
        "CREATE INDEX inbox_pending ON inbox (lead_key, id) WHERE state = 'pending'",
        "CREATE INDEX inbox_state ON inbox (state, id)",
        # Every write of an enrollment row checks and bumps it, so none overwrites a newer one.
        "ALTER TABLE enrollment ADD COLUMN version INTEGER NOT NULL DEFAULT 0",
    ]),
    (8, "runtime state", [
        # Every `seqrun run` (and later `seqrun serve`) on the database: who it is (`host:pid:nonce`,
        # as on its leases), since when, and its last heartbeat. A runner whose heartbeat is stale
        # is gone: another takes its leads back (runner.engine.presence).
        """CREATE TABLE runner (
            id TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL, command TEXT NOT NULL,
            started_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL, state TEXT NOT NULL DEFAULT 'running',
            stopped_at TEXT,
            CHECK (state IN ('running', 'stopped', 'gone')))""",
        "CREATE INDEX runner_running ON runner (heartbeat_at) WHERE state = 'running'",
        # When each sender is next polled, whichever runner polls it (a guarded write claims a poll).
        """CREATE TABLE poll_schedule (
            sender_id INTEGER PRIMARY KEY REFERENCES sender (id) ON DELETE CASCADE, next_at TEXT NOT NULL)""",
        # Until when a provider refuses an action of a sender (LIMIT_REACHED with its postponed_until,
        # NOT_READY): every lead of the sender waits, in every runner.
        """CREATE TABLE provider_hold (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            action TEXT NOT NULL, until TEXT NOT NULL, reason TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX provider_hold_key ON provider_hold (sender_id, action)",
        # Pacing hints (runner.engine.limits): the first sender-local day that may still have room for a
        # lead of a zone, the earliest day given back and not yet filled, and the largest spacing
        # of any point stored for a sender's action.
        """CREATE TABLE pace_hint (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            sequence TEXT NOT NULL, action TEXT NOT NULL, zone TEXT NOT NULL, first_free TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX pace_hint_key ON pace_hint (sender_id, sequence, action, zone)",
        """CREATE TABLE pace_vacated (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            sequence TEXT NOT NULL, action TEXT NOT NULL, day TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX pace_vacated_key ON pace_vacated (sender_id, sequence, action)",
        """CREATE TABLE pace_reach (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            action TEXT NOT NULL, spacing REAL NOT NULL)""",
        "CREATE UNIQUE INDEX pace_reach_key ON pace_reach (sender_id, action)",
    ]),
    (9, "one call per sender", [
        # The provider call in flight for each sender account, whichever runner makes it: a row is
        # inserted (and committed, with the action's outbox row) before the call and deleted when
        # its result is recorded. The unique index is what keeps a second call of the same account
        # from starting, across runners and backends; account safety on LinkedIn depends on it.
        """CREATE TABLE sender_call (
            id INTEGER PRIMARY KEY, sender_id INTEGER NOT NULL REFERENCES sender (id) ON DELETE CASCADE,
            enrollment_id INTEGER REFERENCES enrollment (id) ON DELETE CASCADE,
            action_key TEXT NOT NULL, runner TEXT NOT NULL, started_at TEXT NOT NULL)""",
        "CREATE UNIQUE INDEX sender_call_one ON sender_call (sender_id)",
        "CREATE INDEX sender_call_runner ON sender_call (runner)",
    ]),
    (10, "outgoing events", [
        # A subscription of seqrun.yaml's `outgoing:` by name; `*_at` are how far each source of facts
        # has been read (the latest fact time seen), `senders` the sender states last seen (JSON).
        # Never a URL or a secret: those stay in seqrun.yaml and the environment.
        """CREATE TABLE outgoing_subscription (
            id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, since TEXT NOT NULL,
            actions_at TEXT, events_at TEXT, finished_at TEXT, senders TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        # The outbox: one row per event and subscription, the signed body exactly as it is sent.
        """CREATE TABLE outgoing_event (
            id INTEGER PRIMARY KEY,
            subscription_id INTEGER NOT NULL REFERENCES outgoing_subscription (id) ON DELETE CASCADE,
            event_id TEXT NOT NULL, type TEXT NOT NULL, body TEXT NOT NULL, occurred_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT, last_attempt_at TEXT, last_error TEXT,
            created_at TEXT NOT NULL, delivered_at TEXT,
            CHECK (state IN ('pending', 'delivered', 'failed')))""",
        "CREATE UNIQUE INDEX outgoing_event_once ON outgoing_event (subscription_id, event_id)",
        "CREATE INDEX outgoing_event_due ON outgoing_event (next_attempt_at) WHERE state = 'pending'",
        "CREATE INDEX outgoing_event_state ON outgoing_event (subscription_id, state)",
        # The facts events are read from, by the time they happened.
        "CREATE INDEX action_performed ON action (performed_at) WHERE status = 'done'",
        "CREATE INDEX event_received ON event (received_at)",
        "CREATE INDEX enrollment_finished ON enrollment (finished_at) WHERE finished_at IS NOT NULL",
    ]),
    (11, "dashboard", [
        # A person marked a lead that needed one as handled (the dashboard's "Needs a human"), with
        # the enrollment's `updated_at` then: once the enrollment changes again, it needs a human again.
        """CREATE TABLE handled_mark (
            id INTEGER PRIMARY KEY,
            enrollment_id INTEGER NOT NULL UNIQUE REFERENCES enrollment (id) ON DELETE CASCADE,
            enrollment_updated_at TEXT NOT NULL, handled_at TEXT NOT NULL)""",
    ]),
]

LATEST = max(version for version, _, _ in MIGRATIONS)


def applied_versions(database: peewee.Database) -> set[int]:
    database.execute_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    return {row[0] for row in database.execute_sql("SELECT version FROM schema_migrations")}


def migrate(database: peewee.Database, now: dt.datetime | None = None) -> list[int]:
    """Apply pending migrations, each in its own transaction. Returns the versions applied."""
    from runner.store.backends import postgres, sqlite

    # The concrete database, not the proxy: another thread may rebind the proxy meanwhile, and the
    # lock must be released on the connection that took it.
    database = getattr(database, "obj", None) or database
    backend = postgres if postgres.is_postgres(database) else sqlite
    applied: list[int] = []
    stamp = to_db_time(now or dt.datetime.now(dt.UTC))
    backend.lock_migrations(database)
    try:
        done = applied_versions(database)
        _refuse_newer(done)
        if all(version in done for version, _, _ in MIGRATIONS):
            return applied  # the common case
        for version, name, statements in MIGRATIONS:
            with database.atomic("IMMEDIATE"):
                done = {row[0] for row in database.execute_sql("SELECT version FROM schema_migrations")}
                _refuse_newer(done)
                if version in done:
                    continue  # applied meanwhile by another process
                for sql in statements:
                    database.execute_sql(backend.translate_ddl(sql))
                database.execute_sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                                     (version, name, stamp))
            applied.append(version)
    finally:
        backend.unlock_migrations(database)
    return applied


def _refuse_newer(done: set[int]) -> None:
    if done and max(done) > LATEST:
        from runner.language.diagnostics import UserError

        raise UserError(f"the database was written by a newer seqrun (schema version {max(done)}; "
                        f"this version knows up to {LATEST}); upgrade seqrun")
