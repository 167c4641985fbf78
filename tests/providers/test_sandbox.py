"""The sandbox provider: the shared contract (in memory and on a state file) plus what only it promises."""
from __future__ import annotations

import datetime as dt
import itertools
import random
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.language.diagnostics import UserError
from runner.providers import PROVIDERS
from runner.providers.base import Account, ErrorKind, LeadRef, Provider, ProviderError
from runner.providers.sandbox import OPTIONS, SandboxProvider

from .contract import FakeClock, ProviderContract, expect_error

UTC = dt.UTC
START = dt.datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ALICE = Account(sender="alice", account_id="acc-alice")
BOB = Account(sender="bob", account_id="acc-bob")
#: every lead is a stranger on first sight
NO_HISTORY: dict[str, Any] = dict(connected_rate=0.0, pending_rate=0.0, messaged_first_rate=0.0,
                                  recent_conversation_rate=0.0, inaccessible_rate=0.0)
#: every invite is accepted after exactly 2 hours, every message answered after exactly 3
CERTAIN: dict[str, Any] = dict(accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=1.0,
                               reply_delay_hours=(3, 3), **NO_HISTORY)


def lead(name: str) -> LeadRef:
    return LeadRef(key=name, profile_url=f"https://www.linkedin.com/in/{name}")


class SandboxHarness:
    def __init__(self, state_path: str | None = None) -> None:
        self.clock = FakeClock(START)
        self.provider = SandboxProvider(seed=3, clock=self.clock, state_path=state_path, **CERTAIN)
        self.account = ALICE
        self._numbers = itertools.count(1)

    def now(self) -> dt.datetime:
        return self.clock.now

    def advance(self, delta: dt.timedelta) -> None:
        self.clock.advance(delta)

    def fresh_lead(self) -> LeadRef:
        return lead(f"lead-{next(self._numbers)}")

    def make_accept(self, lead: LeadRef) -> None:
        self.clock.advance(hours=2)

    def make_reply(self, lead: LeadRef) -> None:
        self.clock.advance(hours=3)


class TestSandboxContract(ProviderContract):
    @pytest.fixture
    def harness(self) -> Iterator[SandboxHarness]:
        h = SandboxHarness()
        yield h
        h.provider.close()


class TestSandboxStateFileContract(ProviderContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[SandboxHarness]:
        h = SandboxHarness(str(tmp_path / "sandbox.db"))
        yield h
        h.provider.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


def sandbox(clock: FakeClock, **options: Any) -> SandboxProvider:
    return SandboxProvider(seed=11, clock=clock, **{**CERTAIN, **options})


def connect(provider: SandboxProvider, who: LeadRef, note: str | None = None, key: str | None = None,
            account: Account = ALICE) -> Any:
    return provider.connect(account, who, note=note, key=key or f"connect:{who.key}:{note}")


def message(provider: SandboxProvider, who: LeadRef, key: str, *, conversation_id: str | None = None,
            text: str = "Hello") -> Any:
    return provider.send_message(ALICE, who, text=text, conversation_id=conversation_id, subject=None,
                                 inmail=False, key=key)


# --- registry ----------------------------------------------------------------------------------

def test_registry_builds_the_sandbox(clock: FakeClock) -> None:
    typed: Provider = SandboxProvider(clock=clock)  # mypy checks the class against the protocol
    assert typed.name == "sandbox"
    provider = PROVIDERS["sandbox"](seed=7, clock=clock)
    assert isinstance(provider, SandboxProvider)
    assert provider.name == "sandbox"
    assert provider.capabilities == frozenset({"visit", "connect", "message", "inmail", "withdraw"})


# --- determinism -------------------------------------------------------------------------------

def outcomes(provider: SandboxProvider, clock: FakeClock, names: list[str]) -> dict[str, Any]:
    """Invite every lead (in the given order), then look at them all 30 days later."""
    start = clock.now
    for name in names:
        try:
            provider.relationship(ALICE, lead(name))
            connect(provider, lead(name), note="Hi" if name.endswith("7") else None)
        except ProviderError as error:
            assert error.kind in (ErrorKind.ALREADY_CONNECTED, ErrorKind.INVITATION_PENDING,
                                  ErrorKind.PROFILE_NOT_ACCESSIBLE)
    clock.advance(days=30)
    seen: dict[str, Any] = {}
    for name in sorted(names):
        try:
            seen[name] = (provider.relationship(ALICE, lead(name)), provider.conversation(ALICE, lead(name)))
        except ProviderError as error:
            seen[name] = error.kind
    seen["events"] = provider.poll_events(ALICE, since=start).events
    return seen


def test_same_seed_same_outcomes_whatever_the_call_order() -> None:
    names = [f"lead-{n}" for n in range(300)]
    shuffled = names[:]
    random.Random(5).shuffle(shuffled)
    results = []
    for order in (names, shuffled):
        clock = FakeClock(START)
        results.append(outcomes(SandboxProvider(seed=42, clock=clock), clock, order))
    assert results[0] == results[1]
    assert sum(1 for name in names if isinstance(results[0][name], tuple) and results[0][name][0].connected) > 50


def test_a_lead_behaves_the_same_whatever_else_happens() -> None:
    alone_clock, crowd_clock = FakeClock(START), FakeClock(START)
    alone = outcomes(SandboxProvider(seed=42, clock=alone_clock), alone_clock, ["lead-7"])
    crowd = outcomes(SandboxProvider(seed=42, clock=crowd_clock), crowd_clock,
                     [f"other-{n}" for n in range(200)] + ["lead-7"])
    assert alone["lead-7"] == crowd["lead-7"]


def test_another_seed_gives_other_outcomes() -> None:
    names = [f"lead-{n}" for n in range(200)]
    results = []
    for seed in (1, 2):
        clock = FakeClock(START)
        results.append(outcomes(SandboxProvider(seed=seed, clock=clock), clock, names))
    assert results[0] != results[1]


# --- rates -------------------------------------------------------------------------------------

def test_rates_roughly_as_configured_over_10k_leads(clock: FakeClock) -> None:
    provider = SandboxProvider(seed=9, clock=clock)  # the documented defaults
    leads = [lead(f"lead-{n}") for n in range(10_000)]
    profiles: dict[str, int] = {"inaccessible": 0, "connected": 0, "pending": 0, "messaged_first": 0,
                                "recent_conversation": 0}
    invited = []
    for who in leads:
        try:
            rel = provider.relationship(ALICE, who)
        except ProviderError as error:
            assert error.kind is ErrorKind.PROFILE_NOT_ACCESSIBLE
            profiles["inaccessible"] += 1
            continue
        last = provider.conversation(ALICE, who).last_message
        if last is not None:
            profiles["messaged_first" if last.from_lead else "recent_conversation"] += 1
            assert rel.connected and clock.now - last.sent_at <= dt.timedelta(days=6)
            if not last.from_lead:
                assert clock.now - last.sent_at <= dt.timedelta(days=3)
        elif rel.connected:
            profiles["connected"] += 1
        elif rel.invite_pending:
            profiles["pending"] += 1
        else:
            invited.append(connect(provider, who))
    expected = {"inaccessible": 0.005, "connected": 0.05, "pending": 0.02, "messaged_first": 0.02,
                "recent_conversation": 0.03}
    for profile, rate in expected.items():  # within ~4 standard deviations
        assert abs(profiles[profile] / 10_000 - rate) < 4 * (rate * (1 - rate) / 10_000) ** 0.5 + 1e-3, profile
    assert len(invited) == 10_000 - sum(profiles.values())


def test_acceptance_and_reply_rates_and_delays(clock: FakeClock) -> None:
    provider = SandboxProvider(seed=9, clock=clock, **NO_HISTORY)
    leads = [lead(f"lead-{n}") for n in range(10_000)]
    for who in leads:
        connect(provider, who)
    clock.advance(days=22)  # past the 21-day maximum
    accepted = [e for e in provider.poll_events(ALICE, since=START).events if e.kind == "accepted"]
    assert 0.33 < len(accepted) / 10_000 < 0.37
    delays = [(e.occurred_at - START) / dt.timedelta(hours=1) for e in accepted]
    assert 26 < statistics.median(delays) < 34
    assert max(delays) <= 24 * 21 and min(delays) >= 1 / 60

    sent_at = clock.now
    for event in accepted:
        message(provider, lead(str(event.lead_key)), key=f"m:{event.lead_key}")
    clock.advance(days=11)  # past the 10-day maximum
    replies = [e for e in provider.poll_events(ALICE, since=sent_at).events if e.kind == "replied"]
    assert 0.12 < len(replies) / len(accepted) < 0.18
    reply_delays = [(e.occurred_at - sent_at) / dt.timedelta(hours=1) for e in replies]
    assert 12 < statistics.median(reply_delays) < 26 and max(reply_delays) <= 240


# --- time --------------------------------------------------------------------------------------

def test_nothing_happens_before_its_time(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")
    connect(provider, who)
    clock.advance(hours=1, minutes=59)
    assert provider.relationship(ALICE, who).invite_pending
    assert provider.poll_events(ALICE, since=None).events == ()
    clock.advance(minutes=1)
    rel = provider.relationship(ALICE, who)
    assert (rel.connected, rel.connected_at) == (True, START + dt.timedelta(hours=2))
    (event,) = provider.poll_events(ALICE, since=None).events
    assert (event.kind, event.occurred_at, event.lead_key, event.account_id) == (
        "accepted", START + dt.timedelta(hours=2), "ann", "acc-alice")
    assert event.event_id == "acc-alice:ann:accepted:0"


def test_poll_reports_synced_until_now(clock: FakeClock) -> None:
    provider = sandbox(clock)
    clock.advance(minutes=30)
    assert provider.poll_events(ALICE, since=START).synced_until == clock.now


def test_naive_clock_is_a_programming_error() -> None:
    provider = SandboxProvider(clock=lambda: dt.datetime(2026, 3, 2, 9))
    with pytest.raises(ValueError, match="timezone-aware"):
        provider.relationship(ALICE, lead("ann"))


def test_accounts_do_not_share_events_or_leads(clock: FakeClock) -> None:
    provider = sandbox(clock)
    connect(provider, lead("ann"), account=ALICE)
    assert not provider.relationship(BOB, lead("ann")).invite_pending
    clock.advance(hours=3)
    assert provider.poll_events(BOB, since=None).events == ()
    assert [e.lead_key for e in provider.poll_events(ALICE, since=None).events] == ["ann"]


# --- conversations -----------------------------------------------------------------------------

def test_invite_with_a_note_opens_the_thread_at_acceptance(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")
    invite = connect(provider, who, note="Hi Ann, loved your talk")
    assert provider.conversation(ALICE, who).conversation_id is None
    clock.advance(hours=2)
    conversation = provider.conversation(ALICE, who)
    assert conversation.conversation_id is not None and conversation.conversation_id.startswith("2-")
    (note,) = conversation.messages
    assert (note.from_lead, note.sent_at) == (False, START)
    (event,) = provider.poll_events(ALICE, since=None).events
    assert (event.conversation_id, event.data) == (conversation.conversation_id,
                                                   {"invitation_id": invite.invitation_id})
    # Without an id, the message goes into the thread the invite opened.
    sent = message(provider, who, key="m1")
    assert sent.conversation_id == conversation.conversation_id
    assert [m.message_id for m in provider.conversation(ALICE, who).messages][-1] == sent.provider_id


def test_invite_without_a_note_opens_no_thread(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")
    connect(provider, who)
    clock.advance(hours=2)
    assert provider.conversation(ALICE, who).conversation_id is None
    (event,) = provider.poll_events(ALICE, since=None).events
    assert event.conversation_id is None
    sent = message(provider, who, key="m1")
    assert provider.conversation(ALICE, who).conversation_id == sent.conversation_id


def test_conversation_id_of_another_lead_is_invalid_input(clock: FakeClock) -> None:
    provider = sandbox(clock)
    for name in ("ann", "bob"):
        connect(provider, lead(name))
    clock.advance(hours=2)
    anns = message(provider, lead("ann"), key="m-ann").conversation_id
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: message(provider, lead("bob"), key="m-bob",
                                                                  conversation_id=anns))
    assert error.message == f"conversation {anns} is not a conversation with bob"
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: message(provider, lead("bob"), key="m-bob",
                                                                  conversation_id="2-nope"))
    assert error.message == "no conversation 2-nope with bob"


def test_a_lead_that_replied_may_reply_again(clock: FakeClock) -> None:
    provider = sandbox(clock, reply_decay=1.0)  # every message is certain to get its reply
    who = lead("ann")
    connect(provider, who)
    clock.advance(hours=2)
    message(provider, who, key="m1")
    clock.advance(hours=1)
    message(provider, who, key="m2")  # the reply to m1 is already on its way: no second one
    clock.advance(hours=2)
    assert [m.from_lead for m in provider.conversation(ALICE, who).messages] == [False, False, True]
    message(provider, who, key="m3")
    clock.advance(hours=3)
    assert [m.from_lead for m in provider.conversation(ALICE, who).messages] == [False, False, True, False, True]
    replies = [e for e in provider.poll_events(ALICE, since=None).events if e.kind == "replied"]
    assert [e.event_id for e in replies] == ["acc-alice:ann:replied:0", "acc-alice:ann:replied:1"]
    assert [e.occurred_at for e in replies] == [START + dt.timedelta(hours=5), START + dt.timedelta(hours=8)]


def test_a_lead_that_will_not_reply_never_does(clock: FakeClock) -> None:
    provider = sandbox(clock, reply_rate=0.0)
    who = lead("ann")
    connect(provider, who)
    clock.advance(hours=2)
    for n in range(3):
        message(provider, who, key=f"m{n}")
        clock.advance(days=3)
    assert not any(m.from_lead for m in provider.conversation(ALICE, who).messages)


def test_inmail_needs_no_connection_but_a_subject(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")

    def send(subject: str | None, inmail: bool, text: str = "Hello") -> Any:
        return provider.send_message(ALICE, who, text=text, conversation_id=None, subject=subject, inmail=inmail,
                                     key=f"k-{subject}-{inmail}-{len(text)}")

    assert expect_error(ErrorKind.INVALID_INPUT, lambda: send(None, True)).message == "an InMail needs a subject"
    assert expect_error(ErrorKind.INVALID_INPUT, lambda: send("Hi", False)).message == (
        "a subject is only sent with an InMail")
    assert expect_error(ErrorKind.INVALID_INPUT, lambda: send("Hi", True, "x" * 8001)).message == (
        "a message may have at most 8000 characters, got 8001")
    assert expect_error(ErrorKind.INVALID_INPUT, lambda: send("Hi", True, "  ")).message == "a message needs text"
    sent = send("Quick question", True)
    assert provider.conversation(ALICE, who).conversation_id == sent.conversation_id
    assert not provider.relationship(ALICE, who).connected


def test_note_longer_than_300_characters_is_invalid(clock: FakeClock) -> None:
    provider = sandbox(clock)
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: connect(provider, lead("ann"), note="x" * 301))
    assert error.message == "a connection note may have at most 300 characters, got 301"
    assert not provider.relationship(ALICE, lead("ann")).invite_pending


# --- first sight -------------------------------------------------------------------------------

def test_already_connected_lead(clock: FakeClock) -> None:
    provider = sandbox(clock, connected_rate=1.0)
    rel = provider.relationship(ALICE, lead("ann"))
    assert rel.connected and rel.connected_at is not None and rel.connected_at < START - dt.timedelta(days=29)
    error = expect_error(ErrorKind.ALREADY_CONNECTED, lambda: connect(provider, lead("ann")))
    assert error.message == "ann is already a 1st-degree connection"
    assert not provider.conversation(ALICE, lead("ann")).exists


def test_lead_with_an_invite_pending_from_before(clock: FakeClock) -> None:
    provider = sandbox(clock, pending_rate=1.0)
    rel = provider.relationship(ALICE, lead("ann"))
    assert rel.invite_pending and rel.invitation_id is not None
    error = expect_error(ErrorKind.INVITATION_PENDING, lambda: connect(provider, lead("ann")))
    assert error.message == f"invitation {rel.invitation_id} to ann is still pending"
    clock.advance(hours=2)  # its acceptance is drawn from first sight on
    assert provider.relationship(ALICE, lead("ann")).connected


def test_lead_who_messaged_first(clock: FakeClock) -> None:
    provider = sandbox(clock, messaged_first_rate=1.0)
    conversation = provider.conversation(ALICE, lead("ann"))
    (first,) = conversation.messages
    assert first.from_lead and dt.timedelta(days=1) <= START - first.sent_at <= dt.timedelta(days=6)
    assert provider.relationship(ALICE, lead("ann")).connected
    assert provider.poll_events(ALICE, since=None).events == ()  # history is not news


def test_lead_with_a_recent_conversation(clock: FakeClock) -> None:
    provider = sandbox(clock, recent_conversation_rate=1.0)
    (last,) = provider.conversation(ALICE, lead("ann")).messages
    assert not last.from_lead and START - last.sent_at <= dt.timedelta(days=3)
    sent = message(provider, lead("ann"), key="m1")  # start-or-reuse: the existing thread
    assert sent.conversation_id == provider.conversation(ALICE, lead("ann")).conversation_id


def test_first_sight_is_decided_once(clock: FakeClock) -> None:
    provider = sandbox(clock, pending_rate=0.5)
    names = [f"lead-{n}" for n in range(40)]
    first = [provider.relationship(ALICE, lead(n)).invite_pending for n in names]
    clock.advance(minutes=1)
    assert [provider.relationship(ALICE, lead(n)).invite_pending for n in names] == first
    assert 5 < sum(first) < 35


def test_inaccessible_profile_fails_every_call(clock: FakeClock) -> None:
    provider = sandbox(clock, inaccessible_rate=1.0)
    who = lead("ghost")
    calls = [
        lambda: provider.relationship(ALICE, who),
        lambda: provider.conversation(ALICE, who),
        lambda: provider.visit(ALICE, who, key="v"),
        lambda: connect(provider, who),
        lambda: message(provider, who, key="m"),
        lambda: provider.withdraw(ALICE, who, invitation_id=None, key="w"),
        lambda: provider.find_action(ALICE, who, action="connect", key="c", since=START),
    ]
    for call in calls:
        error = expect_error(ErrorKind.PROFILE_NOT_ACCESSIBLE, call)
        assert error.message == "the profile of ghost is not accessible"


# --- withdraw ----------------------------------------------------------------------------------

def test_withdraw_cancels_the_scheduled_acceptance(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")
    invite = connect(provider, who, note="Hi")
    clock.advance(hours=1)
    done = provider.withdraw(ALICE, who, invitation_id=None, key="w1")
    assert done.invitation_id == invite.invitation_id
    clock.advance(days=1)
    assert not provider.relationship(ALICE, who).connected
    assert not provider.conversation(ALICE, who).exists
    assert provider.poll_events(ALICE, since=None).events == ()
    again = connect(provider, who, key="c2")  # a new invite has its own id and draw
    assert again.invitation_id != invite.invitation_id


def test_withdraw_of_a_stale_invitation_is_not_found(clock: FakeClock) -> None:
    provider = sandbox(clock)
    connect(provider, lead("ann"))
    error = expect_error(ErrorKind.NOT_FOUND, lambda: provider.withdraw(
        ALICE, lead("ann"), invitation_id="inv-old", key="w1"))
    assert error.message == "invitation inv-old is not pending"
    clock.advance(hours=2)
    error = expect_error(ErrorKind.NOT_FOUND, lambda: provider.withdraw(
        ALICE, lead("ann"), invitation_id=None, key="w2"))
    assert error.message == "no pending invitation to ann"


# --- idempotency ledger ------------------------------------------------------------------------

def test_a_key_performed_twice_acts_once(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")
    first = connect(provider, who, key="k1")
    clock.advance(hours=3)  # the invite was accepted meanwhile: a fresh connect would fail
    assert connect(provider, who, key="k1") == first
    sent = message(provider, who, key="k2")
    clock.advance(minutes=5)
    assert message(provider, who, key="k2", text="a different text") == sent
    assert sum(1 for m in provider.conversation(ALICE, who).messages if not m.from_lead) == 1


def test_a_key_reused_for_another_action_is_invalid(clock: FakeClock) -> None:
    provider = sandbox(clock)
    connect(provider, lead("ann"), key="k1")
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: connect(provider, lead("bob"), key="k1"))
    assert error.message == "idempotency key 'k1' was already used for connect of ann"
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: provider.visit(ALICE, lead("ann"), key="k1"))
    assert error.message == "idempotency key 'k1' was already used for connect of ann"


def test_find_action_is_exact(clock: FakeClock) -> None:
    provider = sandbox(clock)
    who = lead("ann")
    connect(provider, who, key="c1")
    clock.advance(hours=2)
    sent = provider.send_message(ALICE, who, text="Hi", conversation_id=None, subject="Hello", inmail=True,
                                 key="m1")
    find = provider.find_action
    assert find(ALICE, who, action="inmail", key="m1", since=START) == sent
    assert find(ALICE, who, action="message", key="m1", since=START) == sent
    assert find(ALICE, who, action="connect", key="m1", since=START) is None
    assert find(ALICE, lead("bob"), action="message", key="m1", since=START) is None
    assert find(BOB, who, action="message", key="m1", since=START) is None
    assert find(ALICE, who, action="message", key="m1", since=clock.now + dt.timedelta(seconds=1)) is None
    assert find(ALICE, who, action="connect", key="c1", since=START) is not None
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: find(ALICE, who, action="tag", key="c1", since=START))
    assert error.message == "unknown action 'tag'; expected one of visit, connect, message, inmail, withdraw"


# --- injected errors ---------------------------------------------------------------------------

def test_injected_429_retries_after_a_minute(clock: FakeClock) -> None:
    provider = sandbox(clock, errors={"STATUS_429": 1.0})
    error = expect_error(ErrorKind.RATE_LIMITED, lambda: provider.relationship(ALICE, lead("ann")))
    assert (error.retry_at, error.label) == (START + dt.timedelta(seconds=60), "STATUS_429")
    expect_error(ErrorKind.RATE_LIMITED, lambda: provider.poll_events(ALICE, since=None))
    assert provider.injected_errors == {"STATUS_429": 2}
    assert provider.calls == {"relationship": 1, "poll_events": 1}


def test_injected_limit_retries_at_the_next_utc_midnight(clock: FakeClock) -> None:
    clock.advance(hours=14, minutes=59)  # 23:59 UTC
    provider = sandbox(clock, errors={"LIMIT_REACHED": 1.0})
    error = expect_error(ErrorKind.LIMIT_REACHED, lambda: connect(provider, lead("ann")))
    assert error.retry_at == dt.datetime(2026, 3, 3, tzinfo=UTC)
    assert not sandbox(clock).relationship(ALICE, lead("ann")).invite_pending


def test_injected_errors_follow_their_rates(clock: FakeClock) -> None:
    provider = sandbox(clock, errors={"TRANSIENT": 0.1, "STATUS_429": 0.05, ErrorKind.RATE_LIMITED: 0.05})
    assert provider.injected_errors == {}
    failures: dict[ErrorKind, int] = {}
    for n in range(4000):
        try:
            provider.relationship(ALICE, lead(f"lead-{n}"))
        except ProviderError as error:
            failures[error.kind] = failures.get(error.kind, 0) + 1
    assert set(failures) == {ErrorKind.TRANSIENT, ErrorKind.RATE_LIMITED}
    assert 300 < failures[ErrorKind.TRANSIENT] < 500 and 110 < failures[ErrorKind.RATE_LIMITED] < 290
    assert provider.injected_errors == {k.value: v for k, v in failures.items()}


def test_injected_errors_are_deterministic_per_lead(clock: FakeClock) -> None:
    def failures(names: list[str]) -> dict[str, str]:
        provider = sandbox(clock, errors={"TRANSIENT": 0.3})
        seen = {}
        for name in names:
            for attempt in range(3):
                try:
                    provider.relationship(ALICE, lead(name))
                except ProviderError as error:
                    seen[f"{name}#{attempt}"] = error.kind.value
        return seen

    names = [f"lead-{n}" for n in range(50)]
    assert failures(names) == failures(names[::-1])


def test_lost_responses_never_duplicate_an_action(clock: FakeClock) -> None:
    """An injected TRANSIENT may come after the action happened; retrying with the key is safe."""
    provider = sandbox(clock, errors={"TRANSIENT": 0.5})
    lost = kept = 0
    for n in range(60):
        who, key = lead(f"lead-{n}"), f"c-{n}"
        first_try = clock.now
        for _ in range(30):
            try:
                result = connect(provider, who, key=key)
                break
            except ProviderError as error:
                assert error.kind is ErrorKind.TRANSIENT
                clock.advance(seconds=1)
        else:
            pytest.fail("30 transient errors in a row")
        if clock.now == first_try:
            continue
        if result.performed_at == first_try:
            lost += 1  # the first try had invited, its response was lost
        else:
            kept += 1
        clock.advance(seconds=1)
    assert lost > 3 and kept > 3


def test_option_errors_are_user_errors() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        (dict(accept_rate=1.5), "sandbox.accept_rate: expected a probability from 0 to 1, got 1.5"),
        (dict(reply_rate="often"), "sandbox.reply_rate: expected a number, got 'often'"),
        (dict(seed="x"), "sandbox.seed: expected an integer, got 'x'"),
        (dict(accept_delay_hours=(30,)), "sandbox.accept_delay_hours: expected [median, max] in hours, got (30,)"),
        (dict(reply_delay_hours=[50, 10]), "sandbox.reply_delay_hours: the median (50) is above the maximum (10)"),
        (dict(reply_delay_hours=[0, 10]), "sandbox.reply_delay_hours: expected a positive number, got 0"),
        (dict(latency_ms=-1), "sandbox.latency_ms: expected a non-negative number, got -1"),
        (dict(connected_rate=0.6, pending_rate=0.5),
         "sandbox: inaccessible_rate, connected_rate, pending_rate, messaged_first_rate and "
         "recent_conversation_rate add up to 1.155; together they may not exceed 1"),
        (dict(errors={"BOOM": 0.1}), "sandbox.errors: unknown error kind 'BOOM'; expected one of LIMIT_REACHED, "
         "NOT_CONNECTED, ALREADY_CONNECTED, INVITATION_PENDING, PROFILE_NOT_ACCESSIBLE, INVALID_INPUT, "
         "AUTH_EXPIRED, API_KEY_REJECTED, STATUS_429, TRANSIENT, NOT_FOUND"),
        (dict(errors={"TRANSIENT": 0.7, "STATUS_429": 0.7}),
         "sandbox.errors: the probabilities add up to 1.4; together they may not exceed 1"),
    ]
    for options, message_ in cases:
        with pytest.raises(UserError) as caught:
            SandboxProvider(**options)
        assert str(caught.value) == message_


# --- auth --------------------------------------------------------------------------------------

def test_expired_auth_fails_every_call_and_is_polled_once(clock: FakeClock) -> None:
    provider = sandbox(clock)
    connect(provider, lead("ann"))
    clock.advance(hours=1)
    connect(provider, lead("bob"))
    clock.advance(hours=1, minutes=30)  # ann accepted at +2h
    provider.expire_auth("acc-alice")
    expired_at = clock.now
    clock.advance(hours=1)  # bob accepts at +3h, while the session is dead
    error = expect_error(ErrorKind.AUTH_EXPIRED, lambda: provider.relationship(ALICE, lead("ann")))
    assert error.message == f"the LinkedIn session of account acc-alice expired at {expired_at.isoformat()}"
    expect_error(ErrorKind.AUTH_EXPIRED, lambda: connect(provider, lead("cy")))
    assert provider.relationship(BOB, lead("ann")) is not None  # other accounts are fine

    report = provider.poll_events(ALICE, since=START)
    assert [(e.kind, e.lead_key) for e in report.events] == [("accepted", "ann"), ("auth_expired", None)]
    assert report.synced_until == expired_at  # nothing after the expiry was seen
    expect_error(ErrorKind.AUTH_EXPIRED, lambda: provider.poll_events(ALICE, since=START))

    provider.restore_auth("acc-alice")
    assert provider.relationship(ALICE, lead("bob")).connected
    after = provider.poll_events(ALICE, since=report.synced_until)
    assert [(e.kind, e.lead_key) for e in after.events] == [("accepted", "bob"), ("auth_restored", None)]
    assert [e.occurred_at for e in after.events] == [START + dt.timedelta(hours=3), clock.now]


def test_injected_auth_expiry_heals_after_reauth_after_hours(clock: FakeClock, tmp_path: Path) -> None:
    path = str(tmp_path / "sandbox.db")
    # Two views of one simulated LinkedIn: one that injects faults, one that observes.
    with sandbox(clock, errors={"AUTH_EXPIRED": 0.5}, reauth_after_hours=6, state_path=path) as faulty, \
            sandbox(clock, state_path=path) as observer:
        for n in itertools.count():
            try:
                faulty.relationship(ALICE, lead(f"lead-{n}"))
            except ProviderError as error:
                assert error.kind is ErrorKind.AUTH_EXPIRED
                break
        assert faulty.injected_errors == {"AUTH_EXPIRED": 1}
        expect_error(ErrorKind.AUTH_EXPIRED, lambda: observer.relationship(ALICE, lead("lead-0")))
        (event,) = observer.poll_events(ALICE, since=None).events
        assert (event.kind, event.occurred_at) == ("auth_expired", START)
        clock.advance(hours=5, minutes=59)
        expect_error(ErrorKind.AUTH_EXPIRED, lambda: observer.relationship(ALICE, lead("lead-0")))
        clock.advance(minutes=1)
        observer.relationship(ALICE, lead("lead-0"))
        events = observer.poll_events(ALICE, since=None).events
        assert [(e.kind, e.occurred_at) for e in events] == [("auth_expired", START),
                                                              ("auth_restored", START + dt.timedelta(hours=6))]


# --- reporting ---------------------------------------------------------------------------------

def test_counters_and_simulated_latency(clock: FakeClock) -> None:
    provider = sandbox(clock, latency_ms=250)
    connect(provider, lead("ann"))
    provider.relationship(ALICE, lead("ann"))
    provider.relationship(ALICE, lead("bob"))
    provider.poll_events(ALICE, since=None)
    provider.expire_auth("acc-alice")  # world controls are not provider calls
    assert provider.calls == {"connect": 1, "relationship": 2, "poll_events": 1}
    assert provider.simulated_latency_ms == 1000.0
    assert clock.now == START  # simulated latency never moves or waits on the clock


# --- state file --------------------------------------------------------------------------------

def test_state_file_is_one_linkedin_for_two_instances(clock: FakeClock, tmp_path: Path) -> None:
    path = str(tmp_path / "sandbox.db")
    with sandbox(clock, state_path=path) as first, sandbox(clock, state_path=path) as second:
        invite = connect(first, lead("ann"), note="Hi", key="k1")
        assert second.relationship(ALICE, lead("ann")).invitation_id == invite.invitation_id
        assert connect(second, lead("ann"), note="Hi", key="k1") == invite  # the ledger is shared
        assert second.find_action(ALICE, lead("ann"), action="connect", key="k1", since=START) == invite
        second.withdraw(ALICE, lead("ann"), invitation_id=None, key="w1")
        assert not first.relationship(ALICE, lead("ann")).invite_pending

        connect(first, lead("bob"), key="k2")
        clock.advance(hours=2)
        sent = message(second, lead("bob"), key="m1")
        assert first.conversation(ALICE, lead("bob")).conversation_id == sent.conversation_id
        clock.advance(hours=3)
        assert [e.kind for e in first.poll_events(ALICE, since=None).events] == ["accepted", "replied"]
        assert first.poll_events(ALICE, since=None) == second.poll_events(ALICE, since=None)
        second.expire_auth("acc-alice")
        expect_error(ErrorKind.AUTH_EXPIRED, lambda: first.relationship(ALICE, lead("bob")))


def test_state_file_survives_a_restart(clock: FakeClock, tmp_path: Path) -> None:
    path = str(tmp_path / "sandbox.db")
    with sandbox(clock, state_path=path, messaged_first_rate=0.5) as before:
        names = [f"lead-{n}" for n in range(20)]
        for name in names:
            try:
                connect(before, lead(name), note="Hi")
            except ProviderError as error:
                assert error.kind is ErrorKind.ALREADY_CONNECTED
        clock.advance(hours=2)
        seen = {n: (before.relationship(ALICE, lead(n)), before.conversation(ALICE, lead(n))) for n in names}
        events = before.poll_events(ALICE, since=None)
    clock.advance(minutes=1)
    with sandbox(clock, state_path=path, messaged_first_rate=0.5) as after:
        assert {n: (after.relationship(ALICE, lead(n)), after.conversation(ALICE, lead(n))) for n in names} == seen
        assert after.poll_events(ALICE, since=None).events == events.events


def test_state_file_remembers_its_seed(clock: FakeClock, tmp_path: Path) -> None:
    path = str(tmp_path / "sandbox.db")
    SandboxProvider(seed=1, clock=clock, state_path=path).close()
    with pytest.raises(UserError) as caught:
        SandboxProvider(seed=2, clock=clock, state_path=path)
    assert str(caught.value) == (f"the sandbox state file {path} was made with seed 1, not 2; "
                                 "use seed 1 or delete the file")


def test_in_memory_sandbox_writes_no_file(clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    provider = sandbox(clock)
    connect(provider, lead("ann"))
    assert list(tmp_path.iterdir()) == []


def test_state_file_is_shared_with_another_process(clock: FakeClock, tmp_path: Path) -> None:
    path = str(tmp_path / "sandbox.db")
    script = (
        "import datetime as dt\n"
        "from runner.providers.base import Account, LeadRef\n"
        "from runner.providers.sandbox import SandboxProvider\n"
        f"now = dt.datetime.fromisoformat({START.isoformat()!r})\n"
        f"with SandboxProvider(seed=11, clock=lambda: now, state_path={path!r}) as provider:\n"
        "    result = provider.connect(Account('alice', 'acc-alice'), LeadRef('ann', ''), note=None, key='k1')\n"
        "    print(result.invitation_id)\n"
    )
    with sandbox(clock, state_path=path) as here:
        assert not here.relationship(ALICE, lead("ann")).invite_pending
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[2])
        assert here.relationship(ALICE, lead("ann")).invitation_id == done.stdout.strip()
        assert connect(here, lead("ann"), key="k1").invitation_id == done.stdout.strip()


def test_options_come_from_the_sandbox_block(clock: FakeClock) -> None:
    assert OPTIONS == ("seed", "accept_rate", "accept_delay_hours", "reply_rate", "reply_decay", "reply_delay_hours",
                       "connected_rate", "pending_rate", "messaged_first_rate", "recent_conversation_rate",
                       "inaccessible_rate", "errors", "latency_ms", "reauth_after_hours", "state_path", "sleep_ms")
    # YAML gives lists and ints; both are fine.
    provider = PROVIDERS["sandbox"](clock=clock, seed=7, accept_rate=1, accept_delay_hours=[2, 2], **NO_HISTORY)
    assert isinstance(provider, SandboxProvider)
    connect(provider, lead("ann"))
    clock.advance(hours=2)
    assert provider.relationship(ALICE, lead("ann")).connected


def test_missing_keys_are_invalid_input(clock: FakeClock) -> None:
    provider = sandbox(clock)
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: provider.relationship(ALICE, LeadRef("", "")))
    assert error.message == "the lead has no profile key"
    error = expect_error(ErrorKind.INVALID_INPUT, lambda: provider.visit(ALICE, lead("ann"), key=""))
    assert error.message == "an action needs an idempotency key"


# --- invariants under any sequence of calls ----------------------------------------------------

OPERATIONS = st.lists(st.tuples(st.sampled_from(["connect", "note", "message", "inmail", "withdraw", "wait",
                                                 "expire", "restore"]),
                                st.integers(0, 3), st.integers(1, 600)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(OPERATIONS, st.integers(0, 3))
def test_invariants_hold_whatever_the_calls(operations: list[tuple[str, int, int]], seed: int) -> None:
    clock = FakeClock(START)
    provider = SandboxProvider(seed=seed, clock=clock, accept_rate=0.6, accept_delay_hours=(1, 8), reply_rate=0.5,
                               reply_delay_hours=(1, 8), connected_rate=0.2, pending_rate=0.2)
    performed: dict[str, tuple[str, LeadRef, Any]] = {}
    for n, (operation, who_number, minutes) in enumerate(operations):
        who, key = lead(f"lead-{who_number}"), f"key-{n}"
        try:
            if operation in ("connect", "note"):
                result = connect(provider, who, note="Hi" if operation == "note" else None, key=key)
                performed[key] = ("connect", who, result)
            elif operation in ("message", "inmail"):
                result = provider.send_message(
                    ALICE, who, text="Hello", conversation_id=None, subject="Hi" if operation == "inmail" else None,
                    inmail=operation == "inmail", key=key)
                performed[key] = (operation, who, result)
            elif operation == "withdraw":
                performed[key] = ("withdraw", who, provider.withdraw(ALICE, who, invitation_id=None, key=key))
            elif operation == "expire":
                provider.expire_auth(ALICE.account_id)
            elif operation == "restore":
                provider.restore_auth(ALICE.account_id)
            else:
                clock.advance(minutes=minutes)
        except ProviderError as error:
            assert error.kind in set(ErrorKind)
    provider.restore_auth(ALICE.account_id)
    clock.advance(hours=1)

    everything = provider.poll_events(ALICE, since=None)
    assert [e.occurred_at for e in everything.events] == sorted(e.occurred_at for e in everything.events)
    assert len({e.event_id for e in everything.events}) == len(everything.events)
    assert all(e.occurred_at <= clock.now for e in everything.events)
    middle = START + (clock.now - START) / 2
    assert provider.poll_events(ALICE, since=middle).events == tuple(
        e for e in everything.events if e.occurred_at > middle)
    for number in range(4):
        try:
            rel = provider.relationship(ALICE, lead(f"lead-{number}"))
        except ProviderError as error:
            assert error.kind is ErrorKind.PROFILE_NOT_ACCESSIBLE
            continue
        assert not (rel.connected and rel.invite_pending)
        accepted = [e for e in everything.events if e.kind == "accepted" and e.lead_key == f"lead-{number}"]
        assert len(accepted) <= 1 and (not accepted or rel.connected)
    for key, (action, who, result) in performed.items():  # every performed key answers with its first result
        assert provider.find_action(ALICE, who, action=action, key=key, since=START) == result


def test_each_message_received_may_bring_a_reply_less_likely_down_the_sequence(clock: FakeClock) -> None:
    # A lead who ignored the first message may answer a follow-up: the chance is drawn per message,
    # `reply_rate` for the first and `reply_decay` times the previous one's for each later message.
    provider = SandboxProvider(seed=5, clock=clock, accept_rate=1.0, accept_delay_hours=(2, 2), reply_rate=0.2,
                               reply_decay=0.5, reply_delay_hours=(3, 3), **NO_HISTORY)
    leads = [lead(f"lead-{n}") for n in range(10_000)]
    for who in leads:
        connect(provider, who)
    clock.advance(hours=2)
    waiting = list(leads)
    yields = []
    for n in range(3):
        for who in waiting:
            message(provider, who, key=f"m{n}:{who.key}")
        clock.advance(hours=4)
        repliers = {e.lead_key for e in provider.poll_events(ALICE, since=clock.now - dt.timedelta(hours=4)).events
                    if e.kind == "replied"}
        yields.append(len(repliers) / len(waiting))
        waiting = [w for w in waiting if w.key not in repliers]
    for got, expected in zip(yields, (0.2, 0.1, 0.05), strict=True):
        assert abs(got - expected) < 0.015, yields


def test_sleep_ms_makes_every_provider_call_take_real_time(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("runner.providers.sandbox.time.sleep", slept.append)  # the test itself never sleeps
    provider = SandboxProvider(clock=clock, seed=7, sleep_ms=300, **NO_HISTORY)
    connect(provider, lead("ann"))
    provider.relationship(ALICE, lead("ann"))
    provider.expire_auth(ALICE.account_id)  # a control of the simulated world, not a call: no sleep
    assert slept == [0.3, 0.3]
    assert SandboxProvider(clock=clock, seed=7).sleep_ms == 0.0
