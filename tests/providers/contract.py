"""The provider contract: behaviour every driver must show through the `Provider` protocol alone.

A driver's test module subclasses `ProviderContract` and supplies a `harness` fixture returning a
`ProviderHarness`: the driver under test, the account it acts for, and the few world-side levers a
test needs (a fresh lead, the lead accepting or replying, a clock to move). The sandbox pulls them
with its own options and a `FakeClock`; an HTTP driver pulls them on its fake server.

    class TestEdgesContract(ProviderContract):
        @pytest.fixture
        def harness(self, tmp_path): return EdgesHarness(tmp_path)
"""
from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Protocol

import pytest

from runner.providers.base import Account, ActionResult, ErrorKind, LeadRef, PollResult, Provider, ProviderError
from runner.simulate import VirtualClock

UTC = dt.UTC


FakeClock = VirtualClock  # a clock tests move by hand


class ProviderHarness(Protocol):
    provider: Provider
    account: Account
    #: Optional: how finely the provider dates acceptances (ConnectSafely's connections carry only a
    #: date: one day). Events further apart than this are told apart by `poll_events(since=…)`.
    event_resolution: dt.timedelta

    def now(self) -> dt.datetime:
        """What the provider takes as the current time."""
        ...

    def advance(self, delta: dt.timedelta) -> None:
        ...

    def fresh_lead(self) -> LeadRef:
        """A lead never seen before: accessible, not connected, no pending invite, no thread."""
        ...

    def make_accept(self, lead: LeadRef) -> None:
        """Afterwards the lead has accepted its pending invite (the harness may move the clock)."""
        ...

    def make_reply(self, lead: LeadRef) -> None:
        """Afterwards the lead has answered in its thread (the harness may move the clock)."""
        ...


_keys = itertools.count(1)


def new_key() -> str:
    return f"contract-key-{next(_keys)}"


def needs(harness: ProviderHarness, ability: str) -> None:
    """Skip, saying why, a contract case for an action the provider does not offer (a Salesflow
    campaign sends its own messages and withdraws its own invitations)."""
    if ability not in harness.provider.capabilities:
        pytest.skip(f"{harness.provider.name} cannot {ability} (capabilities: "
                    f"{', '.join(sorted(harness.provider.capabilities))})")


def expect_error(kind: ErrorKind, call: Callable[[], object]) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        call()
    assert isinstance(caught.value.kind, ErrorKind)
    assert caught.value.kind is kind, caught.value
    return caught.value


class ProviderContract:
    """Mixin of contract tests; subclasses provide the `harness` fixture."""

    # --- helpers -----------------------------------------------------------------------------

    def connect(self, h: ProviderHarness, lead: LeadRef, note: str | None = None) -> ActionResult:
        return h.provider.connect(h.account, lead, note=note, key=new_key())

    def message(self, h: ProviderHarness, lead: LeadRef, text: str = "Hi there", *,
                conversation_id: str | None = None, key: str | None = None) -> ActionResult:
        return h.provider.send_message(h.account, lead, text=text, conversation_id=conversation_id, subject=None,
                                       inmail=False, key=key or new_key())

    def connected_lead(self, h: ProviderHarness) -> LeadRef:
        lead = h.fresh_lead()
        self.connect(h, lead)
        h.make_accept(lead)
        return lead

    @staticmethod
    def events_for(result: PollResult, lead: LeadRef, kind: str) -> list[str]:
        return [e.event_id for e in result.events if e.lead_key == lead.key and e.kind == kind]

    # --- relationship and invites --------------------------------------------------------------

    def test_fresh_lead_is_a_stranger(self, harness: ProviderHarness) -> None:
        lead = harness.fresh_lead()
        rel = harness.provider.relationship(harness.account, lead)
        assert (rel.connected, rel.invite_pending) == (False, False)
        assert not harness.provider.conversation(harness.account, lead).exists

    def test_connect_then_relationship_shows_pending(self, harness: ProviderHarness) -> None:
        lead = harness.fresh_lead()
        result = self.connect(harness, lead)
        assert result.performed_at <= harness.now()
        rel = harness.provider.relationship(harness.account, lead)
        assert (rel.connected, rel.invite_pending) == (False, True)
        if result.invitation_id is not None and rel.invitation_id is not None:
            assert rel.invitation_id == result.invitation_id

    def test_connect_with_a_used_key_is_idempotent(self, harness: ProviderHarness) -> None:
        lead, key = harness.fresh_lead(), new_key()
        first = harness.provider.connect(harness.account, lead, note=None, key=key)
        harness.advance(dt.timedelta(minutes=5))
        again = harness.provider.connect(harness.account, lead, note=None, key=key)
        assert again == first
        assert harness.provider.relationship(harness.account, lead).invite_pending

    def test_second_invite_while_pending_is_refused(self, harness: ProviderHarness) -> None:
        lead = harness.fresh_lead()
        self.connect(harness, lead)
        expect_error(ErrorKind.INVITATION_PENDING, lambda: self.connect(harness, lead))

    def test_withdraw_clears_pending(self, harness: ProviderHarness) -> None:
        needs(harness, "withdraw")
        lead = harness.fresh_lead()
        self.connect(harness, lead)
        invitation_id = harness.provider.relationship(harness.account, lead).invitation_id
        harness.provider.withdraw(harness.account, lead, invitation_id=invitation_id, key=new_key())
        rel = harness.provider.relationship(harness.account, lead)
        assert (rel.connected, rel.invite_pending) == (False, False)
        expect_error(ErrorKind.NOT_FOUND, lambda: harness.provider.withdraw(
            harness.account, lead, invitation_id=invitation_id, key=new_key()))

    def test_accepted_invite_connects(self, harness: ProviderHarness) -> None:
        lead = self.connected_lead(harness)
        rel = harness.provider.relationship(harness.account, lead)
        assert (rel.connected, rel.invite_pending) == (True, False)
        expect_error(ErrorKind.ALREADY_CONNECTED, lambda: self.connect(harness, lead))

    # --- messages and conversations ------------------------------------------------------------

    def test_message_to_unconnected_lead_raises_not_connected(self, harness: ProviderHarness) -> None:
        needs(harness, "message")
        lead = harness.fresh_lead()
        expect_error(ErrorKind.NOT_CONNECTED, lambda: self.message(harness, lead))
        self.connect(harness, lead)
        expect_error(ErrorKind.NOT_CONNECTED, lambda: self.message(harness, lead))

    def test_conversation_after_a_message_has_our_message(self, harness: ProviderHarness) -> None:
        needs(harness, "message")
        lead = self.connected_lead(harness)
        sent = self.message(harness, lead)
        assert sent.conversation_id is not None
        conversation = harness.provider.conversation(harness.account, lead)
        assert conversation.conversation_id == sent.conversation_id
        last = conversation.last_message
        assert last is not None and not last.from_lead
        if sent.provider_id is not None:
            assert last.message_id == sent.provider_id

    def test_message_with_a_used_key_is_sent_once(self, harness: ProviderHarness) -> None:
        needs(harness, "message")
        lead, key = self.connected_lead(harness), new_key()
        first = self.message(harness, lead, key=key)
        again = self.message(harness, lead, key=key)
        assert again == first
        ours = [m for m in harness.provider.conversation(harness.account, lead).messages if not m.from_lead]
        assert len(ours) == 1

    def test_message_into_the_known_conversation(self, harness: ProviderHarness) -> None:
        needs(harness, "message")
        lead = self.connected_lead(harness)
        first = self.message(harness, lead)
        second = self.message(harness, lead, "A follow-up", conversation_id=first.conversation_id)
        assert second.conversation_id == first.conversation_id

    def test_reply_shows_in_conversation_and_events(self, harness: ProviderHarness) -> None:
        needs(harness, "message")
        lead = self.connected_lead(harness)
        sent = self.message(harness, lead)
        harness.make_reply(lead)
        conversation = harness.provider.conversation(harness.account, lead)
        assert conversation.lead_wrote_since(sent.performed_at)
        polled = harness.provider.poll_events(harness.account, since=sent.performed_at)
        assert len(self.events_for(polled, lead, "replied")) == 1

    # --- events --------------------------------------------------------------------------------

    def test_poll_events_respects_since(self, harness: ProviderHarness) -> None:
        start = harness.now()
        early = self.connected_lead(harness)
        harness.advance(getattr(harness, "event_resolution", dt.timedelta()))
        mark = harness.now()
        harness.advance(dt.timedelta(minutes=1))
        late = self.connected_lead(harness)

        everything = harness.provider.poll_events(harness.account, since=start)
        assert len(self.events_for(everything, early, "accepted")) == 1
        assert len(self.events_for(everything, late, "accepted")) == 1
        after_mark = harness.provider.poll_events(harness.account, since=mark)
        assert self.events_for(after_mark, early, "accepted") == []
        assert len(self.events_for(after_mark, late, "accepted")) == 1
        for event in after_mark.events:
            assert mark < event.occurred_at <= after_mark.synced_until
        assert harness.provider.poll_events(harness.account, since=after_mark.synced_until).events == ()

    def test_poll_events_are_sorted_and_stable(self, harness: ProviderHarness) -> None:
        start = harness.now()
        for _ in range(3):
            self.connected_lead(harness)
        first = harness.provider.poll_events(harness.account, since=start)
        again = harness.provider.poll_events(harness.account, since=start)
        assert [e.event_id for e in first.events] == [e.event_id for e in again.events]
        times = [e.occurred_at for e in first.events]
        assert times == sorted(times)
        assert all(e.account_id in (None, harness.account.account_id) for e in first.events)

    def test_poll_events_walks_every_page(self, harness: ProviderHarness) -> None:
        """More acceptances than a provider's page (Edges: 40 connections) all come back, once."""
        start = harness.now()
        leads = [harness.fresh_lead() for _ in range(45)]
        for lead in leads:
            self.connect(harness, lead)
        for lead in leads:
            harness.make_accept(lead)
        polled = harness.provider.poll_events(harness.account, since=start)
        accepted = [e.lead_key for e in polled.events if e.kind == "accepted"]
        assert sorted(accepted) == sorted(lead.key for lead in leads)

    # --- reconciliation and errors ---------------------------------------------------------------

    def test_find_action_answers_from_performed_keys(self, harness: ProviderHarness) -> None:
        lead, key = harness.fresh_lead(), new_key()
        since = harness.now()
        assert harness.provider.find_action(harness.account, lead, action="connect", key=key, since=since) is None
        done = harness.provider.connect(harness.account, lead, note=None, key=key)
        found = harness.provider.find_action(harness.account, lead, action="connect", key=key, since=since)
        assert found == done

    def test_errors_are_provider_errors_with_known_kinds(self, harness: ProviderHarness) -> None:
        lead = harness.fresh_lead()
        failing: list[Callable[[], object]] = [
            lambda: self.message(harness, lead),
            lambda: harness.provider.withdraw(harness.account, lead, invitation_id=None, key=new_key()),
        ]
        for call in failing:
            with pytest.raises(ProviderError) as caught:
                call()
            assert isinstance(caught.value.kind, ErrorKind)
            assert caught.value.kind in set(ErrorKind)
