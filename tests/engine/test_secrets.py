"""Secrets in URLs never reach the store: error messages and outbox contents are redacted on write."""
from __future__ import annotations

import datetime as dt

from runner.store import Action, db
from runner.store.rows import insert_action

from .conftest import HarnessFactory, lead_row, sequence_yaml

LEAKY = "Client error '401 Unauthorized' for url 'https://user:pw@crm.example.com/hook?token=s3cr3t&a=1'"
REDACTED = "Client error '401 Unauthorized' for url 'https://***@crm.example.com/hook?token=***&a=1'"


def test_a_failing_notify_stores_its_error_without_the_secret(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", '  - {id: crm, action: notify, url: "https://crm.example.com/hook"}\n'
                                        "  - end: synced\n"), max_attempts=1)
    h.enroll(lead_row("anna"))

    def refusing(url: str, headers: object, payload: object) -> None:
        raise RuntimeError(LEAKY)

    h.engine.rt.notifier = refusing
    h.run(days=2)
    assert {a.error_message for a in h.actions("anna")} == {f"notify failed: {REDACTED}"}


def test_an_unexpected_error_is_stored_without_the_secret(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", "  - {id: visit, action: visit}\n  - end: done\n"), max_attempts=1)
    h.enroll(lead_row("anna"))
    h.provider.fail("visit", RuntimeError(LEAKY))
    h.run(days=2)
    assert h.enrollment("anna").last_error == f"RuntimeError: {REDACTED}"


def test_the_outbox_redacts_urls_it_is_given(make_harness: HarnessFactory) -> None:
    # Sequences with credentials in a notify URL do not validate; the store redacts all the same.
    h = make_harness(sequence_yaml("s", "  - {id: visit, action: visit}\n  - end: done\n"))
    h.enroll(lead_row("anna"))
    enrollment = db.execute_sql("SELECT id, lead_id FROM enrollment").fetchone()
    at = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)
    with db.atomic():
        act = insert_action(key="k", enrollment=enrollment[0], lead=enrollment[1], sender=h.sender_id(), sequence="s",
                            step_id="crm", action="notify", status="failed", planned_at=at,
                            content="https://crm.example.com/hook?api_key=sk_live_1", error_message=LEAKY)
    stored = Action.get_by_id(act.id)
    assert (stored.content, stored.error_message) == ("https://crm.example.com/hook?api_key=***", REDACTED)
