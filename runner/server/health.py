"""`/healthz` and `/readyz`: is the process alive, and can it do its work.

`/healthz` answers 200 as long as the HTTP server runs (the process is alive). `/readyz` answers
200 only when every check passes, else 503, with each check in the JSON body:

- `database`: the database answers a query;
- `migrations`: every migration this seqrun knows is applied (a newer seqrun on the same database
  would make it refuse to start; an older one would miss tables);
- `senders`: start-up finished: every configured sender is bound to its provider's driver with its
  credentials, leads left in flight by an earlier run are being reconciled, and the engine loop runs.

A sender paused by its provider (an expired LinkedIn session, a rejected key) does not make the
process unready: it still receives webhooks and serves the other senders. The body lists such
senders under `paused` so that a probe or a person sees them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runner.store import serving


@dataclass
class Readiness:
    started: bool = False  # set once the engine is built and its loop runs
    stopping: bool = False  # set when the process was asked to stop

    def check(self) -> tuple[bool, dict[str, Any]]:
        """(ready, the checks as JSON)."""
        checks: dict[str, Any] = {}
        ok = True
        try:
            serving.ping()
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure to read is "not ready", said as such
            checks["database"] = f"unreachable: {type(exc).__name__}"
            return False, {"ready": False, "checks": checks}
        pending = serving.pending_migrations()
        checks["migrations"] = "ok" if not pending else f"pending: {', '.join(map(str, pending))}"
        ok = ok and not pending
        if self.stopping:
            checks["senders"] = "stopping"
            ok = False
        elif not self.started:
            checks["senders"] = "starting"
            ok = False
        else:
            checks["senders"] = "ok"
        paused = _paused()
        body: dict[str, Any] = {"ready": ok, "checks": checks}
        if paused:
            body["paused"] = paused
        return ok, body


def _paused() -> dict[str, str]:
    return {name: reason or "paused" for name, (status, reason) in sorted(serving.sender_statuses().items())
            if status != "active"}

