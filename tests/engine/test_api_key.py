"""A rejected API key pauses the sender with "API key rejected", distinct from an expired LinkedIn session."""
from __future__ import annotations

import datetime as dt

import pytest

from runner.providers.base import ErrorKind, ProviderError
from runner.store import Action, Enrollment

from .conftest import UTC, HarnessFactory, lead_row, sequence_yaml

FLOW = """\
  - {id: connect, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - end: connected
"""
OPEN = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def rejected() -> ProviderError:
    return ProviderError(ErrorKind.API_KEY_REJECTED, "API key rejected (Edges answered 401)", status=401, label="401")


def test_api_key_rejected_on_an_action_pauses_the_sender_with_its_own_reason(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"), lead_row("ben"))
    h.provider.fail("connect", rejected())
    h.run(days=1, stop=lambda: h.provider.called("connect") != [])

    sender = h.sender_row()
    assert (sender.status, sender.paused_reason) == ("paused", "API key rejected")
    assert [(e.state, e.paused_reason) for e in Enrollment.select()] == [("paused", "API key rejected")] * 2
    (refused,) = Action.select()
    assert (refused.status, refused.charged, refused.error_kind) == ("failed", False, "401")


def test_api_key_rejected_in_a_poll_pauses_the_sender(make_harness: HarnessFactory,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness(sequence_yaml("s", FLOW))
    h.enroll(lead_row("anna"))
    h.provider.fail("poll_events", rejected())
    h.run(until=OPEN + dt.timedelta(minutes=5), stop=lambda: h.provider.called("poll_events") != [])
    sender = h.sender_row()
    assert (sender.status, sender.paused_reason) == ("paused", "API key rejected")
