"""The store's contract, the same tests on every backend (`store_url`: SQLite always, Postgres when
SEQRUN_TEST_POSTGRES is set): claims, leases, limit charges, the action ledger, cursors, holds and
migrations."""
from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

import peewee
import pytest

from runner.language.diagnostics import UserError
from runner.store import Action, Enrollment, Lead, Sender, SyncCursor, Usage, charges, claims, db, health, open_store
from runner.store.backends import postgres
from runner.store.leases import lease_holders, release_claims, release_leases_of
from runner.store.lookups import lead_key_by_provider_id
from runner.store.migrations import LATEST, MIGRATIONS, migrate
from runner.store.request_holds import hold_requests, requests_held_until
from runner.store.rows import close_action_row, insert_action

NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
LEASE = dt.timedelta(minutes=10)


@pytest.fixture
def store(store_url: str) -> str:
    open_store(store_url)
    return store_url


def _sender(name: str = "alice") -> int:
    return Sender.create(name=name, provider="sandbox", account_id=f"acc-{name}", created_at=NOW).id


def _enrollments(n: int, *, due: dt.datetime = NOW) -> list[int]:
    sender = _sender()
    ids = []
    for i in range(n):
        lead = Lead.create(key=f"lead-{i}", profile_url=f"https://www.linkedin.com/in/lead-{i}", created_at=NOW,
                           updated_at=NOW)
        ids.append(Enrollment.create(lead=lead, sequence="s", sequence_hash="h", sender=sender, step_id="a",
                                     due_at=due + dt.timedelta(seconds=i), created_at=NOW, updated_at=NOW).id)
    return ids


def in_threads(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """`fn(i)` in n threads at once, each on its own connection (like n processes)."""
    results: list[Any] = [None] * n
    start = threading.Barrier(n)

    def work(i: int) -> None:
        try:
            start.wait()
            results[i] = fn(i)
        finally:
            db.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def test_a_claim_takes_due_leads_earliest_first_and_leases_them(store: str) -> None:
    ids = _enrollments(3)
    Enrollment.update(due_at=NOW + dt.timedelta(hours=1)).where(Enrollment.id == ids[1]).execute()
    assert claims.claim_due(NOW + dt.timedelta(seconds=5), 10, "runner-a", NOW + LEASE) == [ids[0], ids[2]]
    assert claims.claim_due(NOW + dt.timedelta(seconds=5), 10, "runner-b", NOW + LEASE) == []
    assert {e.id: e.lease_owner for e in Enrollment.select()} == {ids[0]: "runner-a", ids[1]: None, ids[2]: "runner-a"}
    assert lease_holders() == {"runner-a": (2, NOW + LEASE)}


def test_a_lease_that_runs_out_makes_the_lead_due_again(store: str) -> None:
    (only,) = _enrollments(1)
    assert claims.claim_due(NOW, 10, "runner-a", NOW + LEASE) == [only]
    assert claims.claim_due(NOW + LEASE - dt.timedelta(seconds=1), 10, "runner-b", NOW + 2 * LEASE) == []
    assert claims.claim_due(NOW + LEASE, 10, "runner-b", NOW + 2 * LEASE) == [only]


def test_claimed_leads_are_handed_back(store: str) -> None:
    ids = _enrollments(2)
    assert claims.claim_due(NOW + dt.timedelta(minutes=1), 10, "runner-a", NOW + LEASE) == ids
    assert release_claims([ids[0]], "runner-b", NOW) == 0  # not its own
    assert release_claims([ids[0]], "runner-a", NOW) == 1
    assert release_leases_of(["runner-a"], NOW) == 1
    assert claims.claim_ids(ids, NOW, "runner-c", NOW + LEASE) == ids


def test_concurrent_claims_never_take_a_lead_twice(store: str) -> None:
    ids = _enrollments(40)
    got = in_threads(4, lambda i: [x for _ in range(20) for x in claims.claim_due(
        NOW + dt.timedelta(minutes=1), 3, f"runner-{i}", NOW + LEASE)])
    taken = [x for batch in got for x in batch]
    assert sorted(taken) == sorted(ids)  # every lead once, none twice


def test_a_charge_stops_at_the_sequence_cap_and_at_the_sender_cap(store: str) -> None:
    sender = _sender()

    def charge(sequence: str) -> bool:
        with db.atomic():
            charges.lock_sender(sender)
            return charges.charge_usage(sender, "2026-03-02", "connect", sequence, sequence_cap=2, sender_cap=3, at=NOW)

    assert [charge("a") for _ in range(3)] == [True, True, False]
    assert [charge("b") for _ in range(2)] == [True, False]  # the sender's 3 are used
    assert sorted((u.sequence, u.used) for u in Usage.select()) == [("a", 2), ("b", 1)]


def test_concurrent_charges_never_exceed_a_cap(store: str) -> None:
    sender = _sender()

    def charge(i: int) -> int:
        won = 0
        for _ in range(10):
            with db.atomic("IMMEDIATE"):
                charges.lock_sender(sender)
                won += charges.charge_usage(sender, "2026-03-02", "connect", f"seq-{i % 2}", sequence_cap=100,
                                            sender_cap=7, at=NOW)
        return won

    assert sum(in_threads(4, charge)) == 7
    assert sum(u.used for u in Usage.select()) == 7


def _action(enrollment_id: int, key: str) -> Action:
    enr = Enrollment.get_by_id(enrollment_id)
    return insert_action(key=key, enrollment=enr.id, lead=enr.lead_id, sender=enr.sender_id, sequence="s", step_id="a",
                         action="connect", attempt=0, status="in_flight", charged=True, planned_at=NOW, started_at=NOW)


def test_the_ledger_records_an_action_once_by_its_key_and_closes_it(store: str) -> None:
    (enr,) = _enrollments(1)
    act = _action(enr, "1:a:0:0")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        _action(enr, "1:a:0:0")
    act.status, act.performed_at, act.provider_id = "done", NOW, "p-1"
    close_action_row(act)
    row = Action.get(Action.key == "1:a:0:0")
    assert (row.id, row.status, row.charged, row.performed_at, row.provider_id) == (act.id, "done", True, NOW, "p-1")


def test_a_sync_cursor_is_kept_per_sender(store: str) -> None:
    sender = _sender()
    SyncCursor.create(sender=sender, last_synced_at=NOW, updated_at=NOW)
    with pytest.raises(peewee.IntegrityError), db.atomic():
        SyncCursor.create(sender=sender, last_synced_at=NOW, updated_at=NOW)
    assert SyncCursor.get(SyncCursor.sender == sender).last_synced_at == NOW


def test_a_request_hold_keeps_the_later_time(store: str) -> None:
    assert requests_held_until("scope") is None
    hold_requests("scope", NOW + dt.timedelta(minutes=5))
    hold_requests("scope", NOW + dt.timedelta(minutes=1))
    assert requests_held_until("scope") == NOW + dt.timedelta(minutes=5)
    hold_requests("scope", NOW + dt.timedelta(minutes=9))
    assert requests_held_until("scope") == NOW + dt.timedelta(minutes=9)


def test_migrations_are_applied_once_and_recorded(store: str) -> None:
    rows = db.execute_sql("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [tuple(r) for r in rows] == [(v, name) for v, name, _ in MIGRATIONS]
    assert migrate(db) == []
    open_store(store)  # opening again applies nothing
    assert db.execute_sql("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def test_processes_opening_a_new_database_at_once_apply_each_migration_once(backend: str, store_url: str) -> None:
    def versions(database: Any) -> list[int]:
        return [r[0] for r in database.execute_sql("SELECT version FROM schema_migrations ORDER BY version").fetchall()]

    def opening(_: int) -> list[int]:
        if backend == "sqlite":
            open_store(store_url)
            return versions(db)
        # Each thread its own database object, as each process has: the shared proxy would be
        # rebound by the other threads while this one migrates.
        database = postgres.open_database(store_url)
        try:
            migrate(database)
            return versions(database)
        finally:
            database.close()

    results = in_threads(3, opening)
    assert results == [[v for v, _, _ in MIGRATIONS]] * 3


def test_a_database_from_a_newer_seqrun_is_refused(store: str) -> None:
    db.execute_sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', '2030-01-01')",
                   (LATEST + 100,))
    with pytest.raises(UserError) as refused:
        open_store(store)
    assert str(refused.value) == (f"the database was written by a newer seqrun (schema version {LATEST + 100}; "
                                  f"this version knows up to {LATEST}); upgrade seqrun")


def test_placeholders_and_percent_signs_work_as_written(store: str) -> None:
    row = db.execute_sql("SELECT ? || '%' || '?', 'a%b' LIKE ?", ("x", "a%")).fetchone()
    assert tuple(row) == ("x%?", True if row[1] is True else 1)


def test_a_lead_is_found_by_a_provider_id_in_its_json(store: str) -> None:
    Lead.create(key="jane", profile_url="https://www.linkedin.com/in/jane", provider_ids={"salesflow_member_id": "4687"}, created_at=NOW, updated_at=NOW)
    assert lead_key_by_provider_id("salesflow_member_id", "4687") == "jane"
    assert lead_key_by_provider_id("salesflow_member_id", "1") is None
    assert lead_key_by_provider_id("other_id", "4687") is None


def test_the_check_before_an_export_passes_on_a_sound_store(store: str) -> None:
    health.quick_check("nothing was exported")  # SQLite's pragma; nothing to run on Postgres


def test_a_sender_another_process_creates_meanwhile_is_taken_not_a_crash(
        store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Three commands started at once on a fresh database each found no row for alice, and the two
    # that inserted second stopped with exit 3 (IntegrityError on sender_name_key).
    from runner.store.configured_senders import save_configured_sender

    read = Sender.get_or_none

    def another_process_inserts_first(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(Sender, "get_or_none", read)
        row = read(*args, **kwargs)
        Sender.create(name="alice", provider="sandbox", account_id="acc-alice", created_at=NOW)
        return row

    monkeypatch.setattr(Sender, "get_or_none", another_process_inserts_first)
    row = save_configured_sender("alice", NOW, provider="sandbox", account_id="acc-alice-2", account_type="classic",
                                 timezone="Europe/Berlin", profile_id=None, full_name="Alice")
    assert [(s.id, s.name, s.account_id, s.timezone) for s in Sender.select()] == [
        (row.id, "alice", "acc-alice-2", "Europe/Berlin")]
