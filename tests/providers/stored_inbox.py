"""A `WebhookInbox` for driver tests: its own store (a SQLite file in a temporary directory) and
`drain()`, which takes the stored pending events the way the engine would."""
from __future__ import annotations

import datetime as dt
import os
import tempfile
from typing import Any, Callable, Mapping, Sequence

from runner.providers.base import ProviderEvent
from runner.store import db, open_store
from runner.store import inbox as store_inbox
from runner.webhooks import WebhookInbox


class StoredInbox(WebhookInbox):
    def __init__(self, secrets: Mapping[str, Sequence[str]], *, clock: Callable[[], dt.datetime]) -> None:
        super().__init__(secrets, clock=clock)
        self._dir: Any = tempfile.TemporaryDirectory(prefix="seqrun-inbox-")
        open_store(os.path.join(self._dir.name, "inbox.db"), durable=False)

    def drain(self) -> list[ProviderEvent]:
        """The events stored since the last drain, in arrival order."""
        return take_stored(self._clock())

    def close(self) -> None:
        if self._dir is not None:
            db.close()
            self._dir.cleanup()
            self._dir = None


def take_stored(now: dt.datetime) -> list[ProviderEvent]:
    """The pending events of the open store, in arrival order, taken (marked applied) as the engine would."""
    rows = store_inbox.pending(100_000)
    for row in rows:
        store_inbox.mark_applied(row.id, now)
    return [store_inbox.to_event(row) for row in rows]
