"""The recent webhook deliveries and their verdicts, kept in memory for the dashboard and the logs.

`seqrun serve` records every `POST /webhooks/...` it answers here, accepted or not. A refused
delivery stores nothing in the database (that is the promise), so this bounded ring is the only
place where an operator sees it: when it came, for which provider, the verdict, why, and the status
code it got. Nothing in an entry is secret: no header, no body, no URL below the provider's name
(a Salesflow campaign's URL carries its token).

API (what `runner/server/dashboard/` reads):

    log = DeliveryLog(size=500)
    log.record(Delivery(at=now, provider="salesflow", verdict=VERIFIED, reason="ok", status=200))
    log.recent(limit=50) -> list[Delivery]   # the latest 50, oldest first (as they came)
    log.counts() -> dict[(provider, verdict), int]   # since the process started

The app keeps one on `request.app.state.deliveries`.
"""
from __future__ import annotations

import collections
import datetime as dt
import threading
from dataclasses import asdict, dataclass
from typing import Any

#: A delivery that was verified and whose events were new: stored, answered 2xx.
VERIFIED = "verified"
#: A verified delivery that brought nothing new (a provider's retry): answered 2xx, nothing changed.
DUPLICATE = "duplicate"
#: Refused (forged, unsigned, replayed, malformed, too large, wrong content type, unknown provider):
#: answered 4xx, nothing stored.
REJECTED = "rejected"
VERDICTS = (VERIFIED, DUPLICATE, REJECTED)
DEFAULT_SIZE = 500


@dataclass(frozen=True)
class Delivery:
    at: dt.datetime  # when the answer was given (UTC)
    provider: str  # the name in the URL, as sent (may be one nobody takes)
    verdict: str  # one of VERDICTS
    reason: str  # why, in the words of the answer ("ok", "bad signature", "body over 1048576 bytes")
    status: int  # the HTTP status code answered

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


class DeliveryLog:
    """A thread-safe ring of the last `size` deliveries, and counts since start by provider and verdict."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self._ring: collections.deque[Delivery] = collections.deque(maxlen=size)
        self._counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def record(self, delivery: Delivery) -> None:
        with self._lock:
            self._ring.append(delivery)
            self._counts[(delivery.provider, delivery.verdict)] += 1

    def recent(self, limit: int | None = None) -> list[Delivery]:
        """The latest `limit` deliveries (all that are kept without one), oldest first."""
        with self._lock:
            items = list(self._ring)
        if limit is None:
            return items
        return items[-limit:] if limit > 0 else []

    def counts(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)
