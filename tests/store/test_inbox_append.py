"""Appending received events to the inbox (`runner.store.inbox.append`) with one fixed statement
per event: the rows it stores are those peewee's `insert(**row).on_conflict_ignore()` stored, on
both backends (issue 6: the query builder cost more than the insert)."""
from __future__ import annotations

import datetime as dt
import pathlib
from typing import Any

import peewee
import pytest
from tests.backends import BACKENDS, fresh_store_url

from runner.providers.base import ProviderEvent
from runner.store import db, open_store
from runner.store import inbox as store_inbox
from runner.store.backends import postgres
from runner.store.inbox import Received
from runner.store.models import InboxEvent, Sender

AT = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)


def _event(event_id: str, **changes: Any) -> ProviderEvent:
    values: dict[str, Any] = dict(event_id=event_id, kind="invite_accepted", occurred_at=AT - dt.timedelta(minutes=5),
                                  account_id="acc-1", lead_key="jane-doe", conversation_id=None,
                                  data={"invitationId": "inv-1", "n": 2})
    values.update(changes)
    return ProviderEvent(**values)


def _peewee_append(event: ProviderEvent, payload: str | None, sender_id: int | None) -> None:
    """What `append` ran before (peewee's query builder), for the same event."""
    row = dict(source="poll", provider="sandbox", sender=sender_id, event_id=event.event_id, kind=event.kind,
               lead_key=event.lead_key, account_id=event.account_id, conversation_id=event.conversation_id,
               data=dict(event.data), payload=payload, received_at=AT, occurred_at=event.occurred_at)
    InboxEvent.insert(**row).on_conflict_ignore().execute()


def _stored(event_id: str) -> dict[str, Any]:
    columns = [f.column_name for f in InboxEvent._meta.sorted_fields if f.name not in ("id", "event_id")]
    row = db.execute_sql(f"SELECT {', '.join(columns)} FROM inbox WHERE event_id = ?", (event_id,)).fetchone()
    return dict(zip(columns, row, strict=True))


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Any:
    with fresh_store_url(request.param, tmp_path) as url:
        open_store(url, durable=False)
        try:
            yield Sender.create(name="alice", provider="sandbox", account_id="acc-1", created_at=AT).id
        finally:
            db.close()


def test_new_events_are_stored_as_the_query_builder_stored_them_and_their_ids_returned(store: int) -> None:
    events = [_event("e1"), _event("e2", kind="message_received", conversation_id="c-9", data={}),
              _event("e3", lead_key=None, account_id=None)]
    with db.atomic():
        ids = store_inbox.append([Received(e, f'{{"id": "{e.event_id}"}}') for e in events], source="poll",
                                 provider="sandbox", received_at=AT, sender_id=store)
    assert ids == [r[0] for r in db.execute_sql("SELECT id FROM inbox ORDER BY id").fetchall()]
    assert len(ids) == 3
    for event in events:
        _peewee_append(_event("old-" + event.event_id, kind=event.kind, conversation_id=event.conversation_id,
                              lead_key=event.lead_key, account_id=event.account_id, data=event.data),
                       f'{{"id": "{event.event_id}"}}', store)
        assert _stored(event.event_id) == _stored("old-" + event.event_id)
    assert _stored("e1")["state"] == "pending"
    assert _stored("e1")["attempts"] == 0


def test_an_event_stored_already_is_not_stored_again_nor_returned(store: int) -> None:
    first = store_inbox.append([Received(_event("e1"))], source="webhook", provider="sandbox", received_at=AT)
    again = store_inbox.append([Received(_event("e1", kind="message_received")), Received(_event("e2"))],
                               source="poll", provider="sandbox", received_at=AT + dt.timedelta(minutes=1),
                               sender_id=store)
    assert len(first) == 1 and len(again) == 1 and again[0] != first[0]
    assert db.execute_sql("SELECT event_id, kind, source FROM inbox ORDER BY id").fetchall() == [
        ("e1", "invite_accepted", "webhook"), ("e2", "invite_accepted", "poll")]
    # another provider's event of the same id is another event
    other = store_inbox.append([Received(_event("e1"))], source="webhook", provider="salesflow", received_at=AT)
    assert len(other) == 1


def test_an_event_whose_time_cannot_be_stored_is_stored_dead_with_the_reason(store: int) -> None:
    naive = _event("e1", occurred_at=dt.datetime(2026, 3, 2, 9, 55))
    ids = store_inbox.append([Received(naive)], source="poll", provider="sandbox", received_at=AT)
    assert len(ids) == 1
    row = _stored("e1")
    assert (row["state"], row["attempts"], row["occurred_at"]) == ("dead", 1, None)
    assert row["error"] == ("ValueError: naive datetime datetime.datetime(2026, 3, 2, 9, 55): seqrun stores only "
                            "timezone-aware times")


def test_a_row_that_breaks_not_null_is_skipped_on_sqlite_and_refused_on_postgres(store: int) -> None:
    # What peewee's on_conflict_ignore did: SQLite's INSERT OR IGNORE skips a row that breaks any
    # constraint but a foreign key; Postgres' ON CONFLICT DO NOTHING only one that breaks a unique one.
    events = [Received(_event("e1", kind=None)), Received(_event("e2"))]
    if postgres.is_postgres(db):
        with pytest.raises(peewee.IntegrityError):
            store_inbox.append(events, source="poll", provider="sandbox", received_at=AT)
        assert db.execute_sql("SELECT event_id FROM inbox").fetchall() == []
    else:
        ids = store_inbox.append(events, source="poll", provider="sandbox", received_at=AT)
        assert db.execute_sql("SELECT id, event_id FROM inbox").fetchall() == [(ids[0], "e2")]
        assert len(ids) == 1
