"""The sandbox provider: a simulated LinkedIn network for trying seqrun out and for `seqrun simulate`.

It implements `Provider` without any network, on top of `sandbox_world.World` (who each lead is,
when it accepts and replies, the event log). Times come from the injected clock only: an invite's
acceptance is scheduled at invite time plus a sampled delay and becomes visible once the clock
passes it; nothing happens in the future before its time.

What the simulation follows from the real APIs (shared research, seeds 000 and 001):
- an invite with a note opens the conversation when it is accepted; one without a note opens none,
  and the first message starts it (`send_message` also reuses an existing thread when given no id);
- errors carry the real labels: ALREADY_CONNECTED, INVITATION_PENDING, NOT_CONNECTED, NOT_FOUND,
  PROFILE_NOT_ACCESSIBLE, AUTH_EXPIRED; injected LIMIT_REACHED retries at the next UTC midnight and
  STATUS_429 after 60 seconds; an injected TRANSIENT on an action is, for half the draws, raised
  after the action took effect (a lost response), which is what idempotency keys and
  `find_action` exist for; an injected AUTH_EXPIRED expires the session for `reauth_after_hours`;
- the real APIs keep no idempotency keys, so the sandbox keeps the ledger the engine relies on:
  performing a key twice returns the first result and never acts twice.

With `state_path` the state lives in a SQLite file (`sandbox_state`) so that separate processes
share one simulated LinkedIn; each call is one transaction, committed before it returns.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from runner.language.diagnostics import UserError
from runner.providers import CAPABILITIES
from runner.providers.base import (
    Account,
    ActionResult,
    Conversation,
    ErrorKind,
    LeadRef,
    Message,
    PollResult,
    ProviderError,
    ProviderEvent,
    Relationship,
    SenderCheck,
)
from runner.providers.sandbox_state import ACCOUNT, LEAD, UTC, AccountState, LeadState, LedgerEntry, Outage, StateFile
from runner.providers.sandbox_world import Behaviour, Delay, World, auth_event_id, event_order

NOTE_LIMIT = 300  # characters in a connection note (seed 001, all three APIs)
MESSAGE_LIMIT = 8000  # characters in a message (Edges `parameters.message`)
RETRY_429 = dt.timedelta(seconds=60)
LOST_RESPONSE_SHARE = 0.5  # of injected TRANSIENT errors on actions, raised after the action happened

#: find_action's action names -> the ledger's; an InMail is a message sent with `inmail=True`.
_LEDGER_ACTIONS = {"visit": "visit", "connect": "connect", "message": "message", "inmail": "message",
                   "withdraw": "withdraw"}
_ACTION_METHODS = frozenset({"visit", "connect", "send_message", "withdraw"})


def utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


class SandboxProvider:
    """A deterministic simulated LinkedIn. See the module docstring; options are the `sandbox:` block.

    Reporting attributes: `calls` (calls per Provider method), `injected_errors` (per error kind) and
    `simulated_latency_ms` (the latency the calls would have cost). The sandbox sleeps only when
    told to (`sleep_ms`: real time every provider call takes, for trying several runners against a
    slow provider; never in `seqrun simulate`, whose clock is virtual).
    `expire_auth` / `restore_auth` act on the simulated world, for tests and simulations.
    """

    name = "sandbox"
    capabilities = CAPABILITIES["sandbox"]

    def __init__(self, *, seed: int = 0, clock: Callable[[], dt.datetime] = utc_now,
                 accept_rate: float = 0.35, accept_delay_hours: tuple[float, float] = (30.0, 24.0 * 21),
                 reply_rate: float = 0.15, reply_decay: float = 0.6,
                 reply_delay_hours: tuple[float, float] = (18.0, 24.0 * 10),
                 connected_rate: float = 0.05, pending_rate: float = 0.02, messaged_first_rate: float = 0.02,
                 recent_conversation_rate: float = 0.03, inaccessible_rate: float = 0.005,
                 errors: Mapping[str, float] | None = None, latency_ms: float = 0.0,
                 reauth_after_hours: float = 24.0, state_path: str | None = None, sleep_ms: float = 0.0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UserError(f"sandbox.seed: expected an integer, got {seed!r}")
        self.seed = seed
        self._clock = clock
        behaviour = Behaviour(
            seed=seed,
            accept_rate=_rate("accept_rate", accept_rate),
            accept_delay=_delay("accept_delay_hours", accept_delay_hours),
            reply_rate=_rate("reply_rate", reply_rate),
            reply_decay=_rate("reply_decay", reply_decay),
            reply_delay=_delay("reply_delay_hours", reply_delay_hours),
            profiles=_shares("sandbox: inaccessible_rate, connected_rate, pending_rate, messaged_first_rate "
                             "and recent_conversation_rate", {  # in draw order
                "inaccessible": _rate("inaccessible_rate", inaccessible_rate),
                "connected": _rate("connected_rate", connected_rate),
                "pending": _rate("pending_rate", pending_rate),
                "messaged_first": _rate("messaged_first_rate", messaged_first_rate),
                "recent_conversation": _rate("recent_conversation_rate", recent_conversation_rate),
            }))
        self._faults = _error_shares(errors or {})
        self.latency_ms = _positive("latency_ms", latency_ms, allow_zero=True)
        self.sleep_ms = _positive("sleep_ms", sleep_ms, allow_zero=True)
        self._reauth_after = dt.timedelta(hours=_positive("reauth_after_hours", reauth_after_hours))

        self.calls: Counter[str] = Counter()
        self.injected_errors: Counter[str] = Counter()
        self.simulated_latency_ms = 0.0

        self._lock = threading.RLock()
        self._lost_response: ProviderError | None = None
        self._world = World(behaviour, track_changes=state_path is not None)
        self._store = StateFile(state_path) if state_path is not None else None
        if self._store is not None:
            self._claim_seed(self._store, state_path or "")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> SandboxProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Provider ---------------------------------------------------------------------------

    def relationship(self, account: Account, lead: LeadRef) -> Relationship:
        with self._call("relationship") as now:
            state = self._enter(now, "relationship", account, lead)
            since = state.connected_since(now)
            pending = state.pending_invite(now)
            return Relationship(connected=since is not None, invite_pending=pending is not None,
                                invitation_id=pending.invitation_id if pending else None,
                                connected_at=since, provider_ids=self._profile_ids(lead.key))

    def conversation(self, account: Account, lead: LeadRef) -> Conversation:
        with self._call("conversation") as now:
            state = self._enter(now, "conversation", account, lead)
            if not state.thread_open(now):
                return Conversation(None)
            messages = tuple(Message(m.message_id, m.sent_at, m.from_lead) for m in state.visible_messages(now))
            return Conversation(self._world.thread_id(account.account_id, lead.key), messages)

    def visit(self, account: Account, lead: LeadRef, *, key: str) -> ActionResult:
        with self._call("visit") as now:
            self._enter(now, "visit", account, lead)
            if (done := self._replay(account, lead, "visit", key)) is not None:
                return done
            return self._record(account, lead, "visit", key,
                                ActionResult(performed_at=now, provider_ids=self._profile_ids(lead.key)))

    def connect(self, account: Account, lead: LeadRef, *, note: str | None, key: str) -> ActionResult:
        with self._call("connect") as now:
            state = self._enter(now, "connect", account, lead)
            if (done := self._replay(account, lead, "connect", key)) is not None:
                return done
            if note and len(note) > NOTE_LIMIT:
                raise ProviderError(ErrorKind.INVALID_INPUT,
                                    f"a connection note may have at most {NOTE_LIMIT} characters, got {len(note)}")
            if state.connected_since(now) is not None:
                raise ProviderError(ErrorKind.ALREADY_CONNECTED, f"{lead.key} is already a 1st-degree connection")
            if (pending := state.pending_invite(now)) is not None:
                raise ProviderError(ErrorKind.INVITATION_PENDING,
                                    f"invitation {pending.invitation_id} to {lead.key} is still pending")
            invite = self._world.invite(account.account_id, state, now, with_note=bool(note))
            return self._record(account, lead, "connect", key, ActionResult(
                performed_at=now, provider_id=invite.invitation_id, invitation_id=invite.invitation_id,
                provider_ids=self._profile_ids(lead.key)))

    def send_message(self, account: Account, lead: LeadRef, *, text: str, conversation_id: str | None,
                     subject: str | None, inmail: bool, key: str) -> ActionResult:
        with self._call("send_message") as now:
            state = self._enter(now, "send_message", account, lead)
            if (done := self._replay(account, lead, "message", key)) is not None:
                return done
            _check_message(text, subject, inmail)
            thread_id = self._world.thread_id(account.account_id, lead.key)
            if conversation_id is not None and (conversation_id != thread_id or not state.thread_open(now)):
                raise ProviderError(ErrorKind.INVALID_INPUT, self._foreign_thread(conversation_id, lead.key))
            if not inmail and state.connected_since(now) is None:
                raise ProviderError(ErrorKind.NOT_CONNECTED, f"{lead.key} is not a 1st-degree connection")
            sent = self._world.send(account.account_id, state, now)
            return self._record(account, lead, "message", key, ActionResult(
                performed_at=now, provider_id=sent.message_id, conversation_id=thread_id,
                provider_ids=self._profile_ids(lead.key)))

    def withdraw(self, account: Account, lead: LeadRef, *, invitation_id: str | None, key: str) -> ActionResult:
        with self._call("withdraw") as now:
            state = self._enter(now, "withdraw", account, lead)
            if (done := self._replay(account, lead, "withdraw", key)) is not None:
                return done
            pending = state.pending_invite(now)
            if pending is None:
                raise ProviderError(ErrorKind.NOT_FOUND, f"no pending invitation to {lead.key}")
            if invitation_id is not None and invitation_id != pending.invitation_id:
                raise ProviderError(ErrorKind.NOT_FOUND, f"invitation {invitation_id} is not pending")
            self._world.withdraw(account.account_id, state, pending, now)
            return self._record(account, lead, "withdraw", key, ActionResult(
                performed_at=now, provider_id=pending.invitation_id, invitation_id=pending.invitation_id,
                provider_ids=self._profile_ids(lead.key)))

    def find_action(self, account: Account, lead: LeadRef, *, action: str, key: str,
                    since: dt.datetime) -> ActionResult | None:
        """The first result of the action performed under `key` for this lead at or after `since`."""
        with self._call("find_action") as now:
            self._enter(now, "find_action", account, lead)
            if action not in _LEDGER_ACTIONS:
                raise ProviderError(ErrorKind.INVALID_INPUT,
                                    f"unknown action {action!r}; expected one of {', '.join(_LEDGER_ACTIONS)}")
            entry = self._world.ledger.get((account.account_id, key))
            if entry is None or entry.action != _LEDGER_ACTIONS[action] or entry.lead_key != lead.key:
                return None
            return entry.result if entry.result.performed_at >= since else None

    def poll_events(self, account: Account, *, since: dt.datetime | None) -> PollResult:
        with self._call("poll_events") as now:
            acc = self._world.account(account.account_id)
            outage = acc.outage_at(now)
            if outage is not None and outage.reported:
                raise self._auth_error(acc.account_id, outage)
            if outage is not None:
                outage.reported = True
                self._world.touch(ACCOUNT, acc.account_id)
                return self._expiry_poll(acc.account_id, outage, since, now)
            if self._faults:
                number, acc.polls = acc.polls, acc.polls + 1
                self._world.touch(ACCOUNT, acc.account_id)
                self._inject("poll_events", acc, "", number, now)
            self._world.realise_due(acc.account_id, now)
            return PollResult(tuple(self._world.window(acc.account_id, since, now)), synced_until=now)

    def check(self, account: Account) -> SenderCheck:
        """`seqrun senders check`: the simulated session works unless an outage is running."""
        with self._call(None) as now:
            outage = self._world.account(account.account_id).outage_at(now)
        if outage is not None:
            return SenderCheck(False, "ok", "auth expired", profile_id=account.profile_id,
                               problem=f"the simulated LinkedIn session of {account.account_id} expired")
        return SenderCheck(True, "ok", "ok (simulated)", profile_id=account.profile_id)

    # --- world controls (tests and simulate) -----------------------------------------------

    def expire_auth(self, account_id: str) -> None:
        """The account's LinkedIn session stops working now, until `restore_auth`."""
        with self._call(None) as now:
            acc = self._world.account(account_id)
            if acc.outage_at(now) is None:
                self._world.start_outage(acc, now, end=None)

    def restore_auth(self, account_id: str) -> None:
        """The account re-authenticated: calls work again and polls report `auth_restored`."""
        with self._call(None) as now:
            acc = self._world.account(account_id)
            if (outage := acc.outage_at(now)) is not None:
                self._world.end_outage(acc, outage, now)

    # --- one call: transaction, counters, clock ----------------------------------------------

    def _call(self, method: str | None) -> _Call:
        """Around one call: `with self._call(name) as now:` (None: not an API call, not counted)."""
        if method is not None and self.sleep_ms:
            # Before the state file's transaction and this process's lock: a slow provider answers
            # several callers at once, as LinkedIn's APIs do.
            time.sleep(self.sleep_ms / 1000)
        return _Call(self, method)

    def _now(self) -> dt.datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the sandbox clock must return timezone-aware datetimes")
        return now.astimezone(UTC)

    def _enter(self, now: dt.datetime, method: str, account: Account, lead: LeadRef) -> LeadState:
        """What every lead call does first: auth, injected faults, first sight, inaccessible profiles."""
        acc = self._world.account(account.account_id)
        if (outage := acc.outage_at(now)) is not None:
            raise self._auth_error(acc.account_id, outage)
        if not lead.key:
            raise ProviderError(ErrorKind.INVALID_INPUT, "the lead has no profile key")
        state = self._world.lead(acc.account_id, lead.key, now)
        if self._faults:
            number = state.faults.get(method, 0)
            state.faults[method] = number + 1
            self._world.touch(LEAD, acc.account_id, lead.key)
            self._inject(method, acc, lead.key, number, now)
        if state.profile == "inaccessible":
            raise ProviderError(ErrorKind.PROFILE_NOT_ACCESSIBLE, f"the profile of {lead.key} is not accessible")
        return state

    def _inject(self, method: str, acc: AccountState, lead_key: str, number: int, now: dt.datetime) -> None:
        """The `number`th call of `method` for this lead fails as the `errors` option's draw says."""
        draw = self._world.drawer(acc.account_id, lead_key)
        u = draw(f"fault:{method}:{number}")
        kind = next((k for k, upper in self._faults if u < upper), None)
        if kind is None:
            return
        if kind is ErrorKind.TRANSIENT and method in _ACTION_METHODS \
                and draw(f"lost:{method}:{number}") < LOST_RESPONSE_SHARE:
            # Raised by _record once the action has happened; dropped if the call fails before that.
            self._lost_response = ProviderError(kind, "injected by the sandbox: the response was lost",
                                                label=kind.value)
            return
        self.injected_errors[kind.value] += 1
        if kind is ErrorKind.AUTH_EXPIRED:
            raise self._auth_error(acc.account_id, self._world.start_outage(acc, now, now + self._reauth_after))
        raise ProviderError(kind, f"injected by the sandbox: {kind.value}", retry_at=_retry_at(kind, now),
                            label=kind.value)

    # --- idempotency ledger ------------------------------------------------------------------

    def _replay(self, account: Account, lead: LeadRef, action: str, key: str) -> ActionResult | None:
        """The first result when `key` was performed already; the same key for anything else is refused."""
        if not key:
            raise ProviderError(ErrorKind.INVALID_INPUT, "an action needs an idempotency key")
        entry = self._world.ledger.get((account.account_id, key))
        if entry is None:
            return None
        if entry.action != action or entry.lead_key != lead.key:
            raise ProviderError(ErrorKind.INVALID_INPUT,
                                f"idempotency key {key!r} was already used for {entry.action} of {entry.lead_key}")
        return entry.result

    def _record(self, account: Account, lead: LeadRef, action: str, key: str, result: ActionResult) -> ActionResult:
        self._world.record(account.account_id, key, LedgerEntry(action, lead.key, result))
        if self._lost_response is not None:
            self.injected_errors[self._lost_response.kind.value] += 1
            raise self._lost_response
        return result

    # --- helpers -------------------------------------------------------------------------------

    def _expiry_poll(self, account_id: str, outage: Outage, since: dt.datetime | None,
                     now: dt.datetime) -> PollResult:
        """The one poll that reports an expired session: what happened up to the expiry, then the expiry."""
        self._world.realise_due(account_id, now)
        expired = ProviderEvent(auth_event_id(account_id, "auth_expired", outage), "auth_expired", outage.start,
                                account_id)
        events = [e for e in self._world.window(account_id, since, outage.start) if e.event_id != expired.event_id]
        events.append(expired)
        synced = outage.start if since is None or since < outage.start else since
        return PollResult(tuple(sorted(events, key=event_order)), synced_until=synced)

    def _auth_error(self, account_id: str, outage: Outage) -> ProviderError:
        return ProviderError(ErrorKind.AUTH_EXPIRED,
                             f"the LinkedIn session of account {account_id} expired at {outage.start.isoformat()}",
                             label=ErrorKind.AUTH_EXPIRED.value)

    def _foreign_thread(self, conversation_id: str, lead_key: str) -> str:
        owner = self._world.thread_owner(conversation_id)
        if owner is not None and owner[1] != lead_key:
            return f"conversation {conversation_id} is not a conversation with {lead_key}"
        return f"no conversation {conversation_id} with {lead_key}"

    @staticmethod
    def _profile_ids(lead_key: str) -> dict[str, str]:
        # A LinkedIn property of the lead: the same for every account and seed.
        return {"profile_id": "ACoAA" + hashlib.blake2b(lead_key.encode(), digest_size=9).hexdigest()}

    # --- the optional state file -----------------------------------------------------------------

    def _claim_seed(self, store: StateFile, path: str) -> None:
        store.begin()
        try:
            stored = store.claim_seed(self.seed)
        finally:
            store.commit()
        if stored != self.seed:
            store.close()
            raise UserError(f"the sandbox state file {path} was made with seed {stored}, not {self.seed}; "
                            f"use seed {stored} or delete the file")

    def _begin(self) -> None:
        if self._store is not None:
            self._store.begin()
            for kind, account_id, key, body in self._store.changed_rows():
                self._world.load_row(kind, account_id, key, body)

    def _commit(self) -> None:
        if self._store is not None:
            self._store.write(self._world.changed_rows())
            self._store.commit()

    def _abort(self) -> None:
        """An unexpected exception mid-call: forget what memory holds and read the file again."""
        if self._store is not None:
            self._store.rollback()
            self._world.forget()


def _retry_at(kind: ErrorKind, now: dt.datetime) -> dt.datetime | None:
    if kind is ErrorKind.LIMIT_REACHED:  # daily limits reset at the next UTC midnight
        return dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), UTC)
    if kind is ErrorKind.RATE_LIMITED:
        return now + RETRY_429
    return None


def _check_message(text: str, subject: str | None, inmail: bool) -> None:
    if not text.strip():
        raise ProviderError(ErrorKind.INVALID_INPUT, "a message needs text")
    if len(text) > MESSAGE_LIMIT:
        raise ProviderError(ErrorKind.INVALID_INPUT,
                            f"a message may have at most {MESSAGE_LIMIT} characters, got {len(text)}")
    if inmail and not (subject and subject.strip()):
        raise ProviderError(ErrorKind.INVALID_INPUT, "an InMail needs a subject")
    if subject and not inmail:
        raise ProviderError(ErrorKind.INVALID_INPUT, "a subject is only sent with an InMail")


# --- option checks: the `sandbox:` block of seqrun.yaml ----------------------------------------

def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"sandbox.{name}: expected a number, got {value!r}")
    return float(value)


def _rate(name: str, value: object) -> float:
    rate = _number(name, value)
    if not 0.0 <= rate <= 1.0:
        raise UserError(f"sandbox.{name}: expected a probability from 0 to 1, got {value!r}")
    return rate


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    number = _number(name, value)
    if number < 0 or (number == 0 and not allow_zero):
        raise UserError(f"sandbox.{name}: expected a {'non-negative' if allow_zero else 'positive'} number, "
                        f"got {value!r}")
    return number


def _delay(name: str, value: object) -> Delay:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise UserError(f"sandbox.{name}: expected [median, max] in hours, got {value!r}")
    median, maximum = _positive(name, value[0]), _positive(name, value[1])
    if median > maximum:
        raise UserError(f"sandbox.{name}: the median ({value[0]!r}) is above the maximum ({value[1]!r})")
    return Delay(median, maximum)


def _shares(what: str, rates: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """Disjoint slices of [0, 1): each name with the upper end of its slice."""
    uppers, total = [], 0.0
    for name, rate in rates.items():
        total += rate
        uppers.append((name, total))
    if total > 1.0 + 1e-9:
        raise UserError(f"{what} add up to {total:g}; together they may not exceed 1")
    return tuple(uppers)


#: Error kinds the `errors` option can inject. NOT_READY is not an answer from LinkedIn: a driver
#: says it of itself (Salesflow: no finished inbox sync yet).
INJECTABLE = tuple(kind for kind in ErrorKind if kind is not ErrorKind.NOT_READY)


def _error_shares(errors: Mapping[str, float]) -> tuple[tuple[ErrorKind, float], ...]:
    if not isinstance(errors, Mapping):
        raise UserError(f"sandbox.errors: expected a mapping of error kind to probability, got {errors!r}")
    known = {kind.value: kind for kind in INJECTABLE}
    # ErrorKind members are accepted as keys too; RATE_LIMITED's value is its label, STATUS_429.
    given = {key.value if isinstance(key, ErrorKind) else key: rate for key, rate in errors.items()}
    for name in given:
        if name not in known:
            raise UserError(f"sandbox.errors: unknown error kind {name!r}; expected one of {', '.join(known)}")
    # Slices in the vocabulary's order, so that the mapping's order never changes an outcome.
    rates = {name: _rate(f"errors.{name}", given[name]) for name in known if name in given}
    return tuple((known[name], upper) for name, upper in _shares("sandbox.errors: the probabilities", rates))


#: Options a `sandbox:` block in seqrun.yaml may set (everything but the clock).
OPTIONS: tuple[str, ...] = tuple(name for name in inspect.signature(SandboxProvider).parameters if name != "clock")

#: The profile shares, drawn as disjoint slices of one draw (see `_shares`).
PROFILE_RATES = ("inaccessible_rate", "connected_rate", "pending_rate", "messaged_first_rate",
                 "recent_conversation_rate")


def option_problems(options: Mapping[str, Any]) -> list[tuple[tuple[str, ...], str]]:
    """What the schema cannot see in a schema-valid `sandbox:` block: (path inside the block, message).

    seqrun.yaml's loader reports these with their line, so that simulate never starts on options
    the constructor would refuse.
    """
    defaults = {name: p.default for name, p in inspect.signature(SandboxProvider).parameters.items()}
    problems: list[tuple[tuple[str, ...], str]] = []
    for name in ("accept_delay_hours", "reply_delay_hours"):
        if name in options and options[name][0] > options[name][1]:
            median, maximum = options[name]
            problems.append(((name,), f"the median ({median!r}) is above the maximum ({maximum!r}); "
                                      "write [median, max] in hours"))
    given = [name for name in PROFILE_RATES if name in options]
    total = sum(options.get(name, defaults[name]) for name in PROFILE_RATES)
    if given and total > 1.0 + 1e-9:
        problems.append(((given[0],), f"{', '.join(PROFILE_RATES[:-1])} and {PROFILE_RATES[-1]} add up to "
                                      f"{total:g} (counting the defaults of those not set); together they may "
                                      "not exceed 1"))
    total = sum((options.get("errors") or {}).values())
    if total > 1.0 + 1e-9:
        problems.append((("errors",), f"the probabilities add up to {total:g}; together they may not exceed 1"))
    return problems


class _Call:
    """One call of the sandbox: this process's lock held, counted, inside the state file's
    transaction (committed when the call ends, a refused call too, since it may still have seen a
    lead for the first time; rolled back on any other exception); `__enter__` gives the time now.
    (A class rather than a generator's context manager: a simulation makes several calls per lead.)"""

    __slots__ = ("_sandbox", "_method")

    def __init__(self, sandbox: SandboxProvider, method: str | None) -> None:
        self._sandbox, self._method = sandbox, method

    def __enter__(self) -> dt.datetime:
        sandbox = self._sandbox
        sandbox._lock.acquire()
        try:
            if self._method is not None:
                sandbox.calls[self._method] += 1
                sandbox.simulated_latency_ms += sandbox.latency_ms
            sandbox._lost_response = None
        except BaseException:
            sandbox._lock.release()
            raise
        try:
            sandbox._begin()
            return sandbox._now()
        except BaseException as exc:
            self.__exit__(type(exc), exc, None)
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        sandbox = self._sandbox
        try:
            if exc_type is None or issubclass(exc_type, ProviderError):
                sandbox._commit()
            else:
                sandbox._abort()
        finally:
            sandbox._lock.release()
