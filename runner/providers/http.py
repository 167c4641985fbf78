"""What every HTTP driver shares: the client, the error vocabulary, redaction and request budgets.

- `make_client` is the one place an `httpx.Client` for a provider is built: base URL (from the
  sender's config, overridable), timeouts, a user agent naming seqrun's version. Drivers take the
  client as a parameter and never build their own, so tests and fakes inject a transport.
- `error_from_response` turns a status, an error body and rate-limit headers (`Retry-After`,
  `retry_after`, `postponed_until`, `X-RateLimit-Reset`) into `ProviderError(kind, retry_at=…)`;
  `transport_error` does the same for timeouts and refused connections. A rejected API key is
  `API_KEY_REJECTED` (a configuration problem: the sender pauses with "API key rejected"), never the
  `AUTH_EXPIRED` of a LinkedIn session.
- Secrets never leak: `register_secret` remembers credential values as they are resolved, and
  `redact` removes them and every URL query string from a text. `install_log_redaction` applies it
  to every log record (seqrun's, httpx's, httpcore's) as the record is made.
- `RequestBudget` is a token bucket per API key and per account (a key may have a rate of its own:
  ConnectSafely's reads and writes per account), which also remembers a 429's reset time so that
  nothing is sent to the provider before it. Given `holds` (the store, wired in by
  `runner.project.discovery`), it shares those resets with every runner using the same database.
"""
from __future__ import annotations

import collections
import contextlib
import datetime as dt
import email.utils
import hashlib
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from runner import __version__
from runner.providers.base import Account, ActionResult, ErrorKind, LeadRef, ProviderError

UTC = dt.UTC
USER_AGENT = f"seqrun/{__version__} (+https://github.com/seqrun/seqrun)"
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

# --- redaction ------------------------------------------------------------------------------------

_SECRETS: set[str] = set()
_SECRETS_LOCK = threading.Lock()
MASK = "[redacted]"
# A URL's query string (up to whitespace, a quote or a closing bracket).
_QUERY = re.compile(r"(https?://[^\s?#\"'<>]*)\?[^\s#\"'<>)\]]*")


def register_secret(value: str) -> None:
    """Remember a credential so that `redact` removes it wherever it shows up."""
    if value and len(value) >= 4:  # shorter values would mask ordinary words
        with _SECRETS_LOCK:
            _SECRETS.add(value)


def redact(text: str) -> str:
    """`text` without any registered secret and without URL query strings (tokens ride in them)."""
    if not text:
        return text
    if "?" in text:
        text = _QUERY.sub(lambda m: f"{m.group(1)}?{MASK}", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_url(url: httpx.URL | str) -> str:
    """A URL as logs may show it: scheme, host and path; never the query string or user info."""
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port else ""
    query = f"?{MASK}" if parsed.query else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}{query}"


_installed = False
_TRACEBACKS = logging.Formatter()


def install_log_redaction() -> None:
    """Redact every log record as it is created, whichever logger or handler sees it afterwards."""
    global _installed
    if _installed:
        return
    _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.exc_info and record.exc_info[0] is not None:
            # The traceback text is made by the handler's formatter, after this factory: make it now,
            # redacted (an exception's message may quote a URL with its token); formatters use it.
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is the caller's bug; leave it as is
            return record
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[0] is not None:
            # Handlers format the traceback later, from exc_info, unless exc_text is already there.
            record.exc_text = redact(_TRACEBACKS.formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    logging.setLogRecordFactory(factory)


# --- the client -----------------------------------------------------------------------------------

def make_client(base_url: str, *, transport: httpx.BaseTransport | None = None,
                timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
                headers: Mapping[str, str] | None = None) -> httpx.Client:
    """The HTTP client of one provider (base URL from the sender's config, or an override).

    Credentials are not baked in: one driver serves every sender of a provider, and each call sets
    the header of the account it acts for (values registered with `register_secret`).
    """
    install_log_redaction()
    return httpx.Client(base_url=base_url.rstrip("/") + "/", transport=transport, timeout=timeout,
                        headers={"User-Agent": USER_AGENT, "Accept": "application/json", **dict(headers or {})},
                        follow_redirects=False)


#: A value an HTTP header can carry: printable ASCII, spaces only inside.
_HEADER_SAFE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")


def credential(credentials: Mapping[str, str], name: str, sender: str) -> str:
    """A credential the sender's config must name, registered for redaction."""
    value = credentials.get(name)
    if not value:
        raise ProviderError(ErrorKind.API_KEY_REJECTED,
                            f"sender {sender} has no {name}: name its environment variable in credentials_env "
                            f"(credentials_env: {{{name}: …}})")
    register_secret(value)
    if not _HEADER_SAFE.fullmatch(value):  # httpx would refuse it with an error that quotes the value
        raise ProviderError(ErrorKind.API_KEY_REJECTED,
                            f"sender {sender}: its {name} holds a line break, a control character or a non-ASCII "
                            "character, which an HTTP header cannot carry (the value is not shown)")
    return value


# --- the error vocabulary ---------------------------------------------------------------------------

def parse_time(value: object) -> dt.datetime | None:
    """An ISO 8601 time from a body (naive means UTC), or None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def retry_after(value: object, now: dt.datetime) -> dt.datetime | None:
    """`Retry-After` (seconds or an HTTP date) or a body's `retry_after` (seconds) as a UTC time."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + dt.timedelta(seconds=max(0.0, float(value)))
    text = str(value).strip()
    try:
        return now + dt.timedelta(seconds=max(0.0, float(text)))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return parse_time(text)
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def reset_header(value: object, now: dt.datetime) -> dt.datetime | None:
    """`X-RateLimit-Reset`: epoch seconds when large, seconds from now when small, or a time."""
    if value is None or value == "":
        return None
    try:
        number = float(str(value))
    except ValueError:
        return parse_time(str(value))
    if number > 10**9:
        return dt.datetime.fromtimestamp(number, UTC)
    return now + dt.timedelta(seconds=max(0.0, number))


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """The fields of a provider's error body that the vocabulary needs."""

    label: str | None
    message: str
    params: Mapping[str, Any]


def retry_time(response: httpx.Response, body: ErrorBody, now: dt.datetime) -> dt.datetime | None:
    """The earliest moment a retry may go out, from everything the response says (latest wins)."""
    candidates = [
        parse_time(body.params.get("postponed_until")),
        retry_after(response.headers.get("Retry-After"), now),
        retry_after(body.params.get("retry_after"), now),
        reset_header(response.headers.get("X-RateLimit-Reset"), now),
    ]
    found = [c for c in candidates if c is not None]
    return max(found) if found else None


def status_kind(status: int) -> ErrorKind:
    """The kind a status means when the body names no label the driver knows."""
    if status in (401, 402, 403):  # the key is wrong, or its workspace may not do this
        return ErrorKind.API_KEY_REJECTED
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 429:
        return ErrorKind.RATE_LIMITED
    if status in (408, 409, 425) or status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.INVALID_INPUT


def error_from_response(response: httpx.Response, body: ErrorBody, now: dt.datetime, *,
                        labels: Mapping[str, ErrorKind], provider: str) -> ProviderError:
    """One `ProviderError` for a failed response: the label's kind when the driver knows the label,
    else the status's; `retry_at` from `postponed_until`, `Retry-After`, `retry_after`, resets."""
    status = response.status_code
    kind = labels.get(body.label or "") or status_kind(status)
    if status == 401:
        kind = ErrorKind.API_KEY_REJECTED  # whatever the label: the key itself was refused
    retry_at = retry_time(response, body, now)
    if kind is ErrorKind.LIMIT_REACHED and retry_at is None:
        retry_at = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), UTC)
    what = f"{provider} answered {status}"
    if body.label:
        what += f" {body.label}"
    message = f"{what}: {body.message}" if body.message else what
    if kind is ErrorKind.API_KEY_REJECTED:
        message = f"API key rejected ({message}); check the key in the environment variable the sender names"
    return ProviderError(kind, redact(message), retry_at=retry_at, status=status, label=body.label or str(status))


def transport_error(exc: httpx.HTTPError, provider: str) -> ProviderError:
    """A timeout or a refused connection: transient; the message never carries the query string."""
    name = type(exc).__name__
    where = ""
    with contextlib.suppress(RuntimeError):  # no request attached
        where = f" ({exc.request.method} {redact_url(exc.request.url)})"
    return ProviderError(ErrorKind.TRANSIENT, redact(f"{provider} unreachable: {name}{where}: {exc}"), label=name)


# --- request budgets --------------------------------------------------------------------------------

def budget_key(*parts: str) -> str:
    """A budget's key: never the API key itself, which would then sit in memory dumps and reprs."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


class Holds(Protocol):
    """Where 429 resets outlive a process (the store): a key's hold, as a UTC time."""

    def held_until(self, key: str) -> dt.datetime | None: ...

    def hold(self, key: str, until: dt.datetime) -> None: ...


#: seconds between two reads of a key's shared hold, so that a long-running runner sees another
#: runner's 429 soon, without a query before every request
HOLDS_EVERY = 60.0


@dataclass
class _Bucket:
    tokens: float
    updated: float  # seconds on the budget's clock
    blocked_until: float = 0.0  # a 429's reset time: nothing goes out before it
    rate: float | None = None  # tokens per second when this key has its own rate (`set_rate`)
    burst: float | None = None
    holds_read: float | None = None  # when the shared hold was last read (budget clock)


class RequestBudget:
    """Token buckets: `rate` requests per `per` seconds with bursts up to `burst`, per key.

    `acquire(key)` waits (through the injected `sleep`) for a token when the wait is short, and
    raises `RATE_LIMITED` with the time a token will be there when it is longer than `max_wait`,
    so a runner never hammers the provider and never hangs for minutes inside one lead.
    `blocked(key, until)` records a 429's reset: every call for that key before it is refused here.
    `set_rate(key, rate, per)` gives one key a rate of its own (a provider with several budgets,
    such as per API key and per account for reads and for writes); other keys keep `rate`.
    With `holds`, a 429's reset is also saved there, and a key's saved hold is read before its
    first request and then at most every `holds_every` seconds: runners sharing a database (each
    `seqrun run --once` is a new one) never call before a reset another runner was told.
    """

    def __init__(self, rate: float, per: float = 60.0, *, burst: float | None = None, max_wait: float = 5.0,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 wall: Callable[[], dt.datetime] | None = None, holds: Holds | None = None,
                 holds_every: float = HOLDS_EVERY) -> None:
        if rate <= 0 or per <= 0:
            raise ValueError("a request budget needs a positive rate")
        self.rate = rate / per  # tokens per second
        self.burst = burst if burst is not None else max(1.0, min(rate, rate / per * 10))
        self.max_wait = max_wait
        self._clock, self._sleep = clock, sleep
        self._wall = wall or (lambda: dt.datetime.now(UTC))
        self._buckets: dict[str, _Bucket] = {}
        self._holds, self._holds_every = holds, holds_every
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, for reports

    def acquire(self, *keys: str) -> None:
        """Take one token from each key's bucket (API key, account), waiting or refusing."""
        while True:
            with self._lock:
                wait = max(self._wait(key) for key in keys)
                if wait <= 0:
                    for key in keys:
                        self._buckets[key].tokens -= 1
                    return
            if wait > self.max_wait:
                raise ProviderError(ErrorKind.RATE_LIMITED,
                                    f"request budget used up; next request allowed in {math.ceil(wait)} s",
                                    retry_at=self._wall() + dt.timedelta(seconds=wait), label="REQUEST_BUDGET")
            self.waited += wait
            self._sleep(wait)

    def set_rate(self, key: str, rate: float, per: float = 60.0, *, burst: float | None = None) -> None:
        """`rate` requests per `per` seconds for `key` (bursts of 10 seconds' worth unless `burst`)."""
        if rate <= 0 or per <= 0:
            raise ValueError("a request budget needs a positive rate")
        with self._lock:
            bucket = self._bucket(key)
            bucket.rate = rate / per
            bucket.burst = burst if burst is not None else max(1.0, min(rate, rate / per * 10))
            bucket.tokens = min(bucket.tokens, bucket.burst)

    def has_rate(self, key: str) -> bool:
        """Whether `key` was given a rate of its own."""
        with self._lock:
            bucket = self._buckets.get(key)
            return bucket is not None and bucket.rate is not None

    def blocked(self, key: str, until: dt.datetime) -> None:
        """The provider answered 429 until `until`: hold every request for `key` until then."""
        with self._lock:
            bucket = self._bucket(key)
            self._hold(bucket, until)
            bucket.tokens = min(bucket.tokens, 0.0)  # a 429 also spends what the bucket thought it had
        if self._holds is not None:
            self._holds.hold(key, until)

    def _hold(self, bucket: _Bucket, until: dt.datetime) -> None:
        seconds = (until - self._wall()).total_seconds()
        if seconds > 0:
            bucket.blocked_until = max(bucket.blocked_until, self._clock() + seconds)

    def _bucket(self, key: str) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, self._clock())
        return bucket

    def _wait(self, key: str) -> float:
        bucket = self._bucket(key)
        now = self._clock()
        if self._holds is not None and (bucket.holds_read is None or now - bucket.holds_read >= self._holds_every):
            bucket.holds_read = now
            until = self._holds.held_until(key)
            if until is not None:
                self._hold(bucket, until)
        rate = bucket.rate if bucket.rate is not None else self.rate
        burst = bucket.burst if bucket.burst is not None else self.burst
        bucket.tokens = min(burst, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if now < bucket.blocked_until:
            return bucket.blocked_until - now
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / rate


class ActionMemo(collections.OrderedDict[tuple[str, str], tuple[str, str, ActionResult]]):
    """What each idempotency key did in this process: (account id, key) -> (action, lead key, result).

    None of the HTTP providers keeps our idempotency keys, so a driver answers a repeated key from
    here (a retry inside one process never acts twice) and refuses a key reused for another action
    or lead. After a restart the engine reconciles through `find_action` instead. Bounded: the
    oldest keys are forgotten first.
    """

    def __init__(self, size: int = 50_000) -> None:
        super().__init__()
        self.size = size

    def replay(self, account: Account, lead: LeadRef, action: str, key: str) -> ActionResult | None:
        if not key:
            raise ProviderError(ErrorKind.INVALID_INPUT, "an action needs an idempotency key")
        memo = self.get((account.account_id, key))
        if memo is None:
            return None
        if memo[0] != action or memo[1] != lead.key:
            raise ProviderError(ErrorKind.INVALID_INPUT,
                                f"idempotency key {key!r} was already used for {memo[0]} of {memo[1]}")
        return memo[2]

    def remember(self, account: Account, lead: LeadRef, action: str, key: str, result: ActionResult) -> ActionResult:
        self[(account.account_id, key)] = (action, lead.key, result)
        while len(self) > self.size:
            self.popitem(last=False)
        return result
