"""What the engine runs against: loaded sequences, senders with their providers, and the knobs.

A `Runtime` is assembled once at start-up (configuration errors fail there, loudly) by the CLI or
the simulator and then handed to `Engine`. Nothing in here reads the clock.
"""
from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runner.engine.leases import new_identity
from runner.engine.limits import SenderCaps
from runner.language.model import Sequence
from runner.providers.base import Account, Provider

#: notify(url, headers, payload) -> None; raises on failure (the engine retries).
Notifier = Callable[[str, Mapping[str, str], Mapping[str, Any]], None]


@dataclass
class SenderRuntime:
    caps: SenderCaps
    account: Account
    provider: Provider
    full_name: str = ""
    timezone: str = "UTC"

    @property
    def id(self) -> int:
        return self.caps.sender_id

    @property
    def name(self) -> str:
        return self.caps.name


@dataclass
class Runtime:
    sequences: dict[str, Sequence]
    senders: dict[int, SenderRuntime]  # by store id
    notifier: Notifier
    poll_every: dt.timedelta = dt.timedelta(minutes=15)
    sync_overlap: dt.timedelta = dt.timedelta(minutes=2)  # seed 000: re-read 1-2 minutes back
    lease: dt.timedelta = dt.timedelta(minutes=10)
    max_attempts: int = 5  # for our own unexpected errors and notify POSTs
    backoff_base: dt.timedelta = dt.timedelta(minutes=1)
    backoff_cap: dt.timedelta = dt.timedelta(hours=1)
    #: how much backoff a step may spend retrying transient and rate-limit errors before the lead
    #: fails with the error kept (`retry.budget_hours` in seqrun.yaml)
    retry_budget: dt.timedelta = dt.timedelta(hours=24)
    #: leads claimed at a time; None: the backend's share (`claims.share`: one at a time on Postgres,
    #: a few on SQLite), so that runners sharing the database share its backlog instead of one of them
    #: leasing hundreds; the simulator (one process) claims more
    batch: int | None = None
    max_transitions: int = 64  # per lead per tick; a sequence cannot spin (validate rejects cycles without a wait)
    #: this runner's identity on the leases it takes (`host:pid:nonce`, see runner/engine/leases.py)
    owner: str = field(default_factory=new_identity)
    #: asked between leads and before every external call: True once the process was asked to stop
    #: (SIGINT/SIGTERM); the run then hands back what it has not started and returns
    stop_requested: Callable[[], bool] = lambda: False
    #: True only in `seqrun simulate` without --wire: every "external" call goes to the in-process
    #: sandbox, which neither reads the store nor adds events while a lead runs, so a lead's run needs
    #: no commit around each call (`flow.Ctx.outside`): one transaction per lead instead
    calls_in_process: bool = False
    #: called as observer(sequence, step_id) whenever a lead enters a step (simulate counts the funnel)
    observer: Callable[[str, str], None] | None = None
    #: (sender id, action) -> until when the provider refuses that action (LIMIT_REACHED,
    #: NOT_READY): other leads of the sender wait too instead of each being refused in turn. Kept in
    #: the store (`provider_hold`, every runner obeys it); this is the pass's copy (`Engine.tick`)
    provider_holds: dict[tuple[int, str], dt.datetime] = field(default_factory=dict)
    #: where notify steps read the values of `headers_from_env` (simulate posts nothing, needs none)
    getenv: Callable[[str], str | None] = os.environ.get
    #: a stored version of a sequence by its hash (runner.versions.load_version), None if not stored
    load_version: Callable[[str], Sequence | None] | None = None
    _versions: dict[str, Sequence | None] = field(default_factory=dict)

    def sequence_for(self, name: str, version: str) -> Sequence | None:
        """The version of sequence `name` a lead runs (see runner.versions): the loaded file when the
        lead started on it, else the stored version, rebuilt once per process. None when the sequence
        has no file any more or the version is not stored."""
        current = self.sequences.get(name)
        if current is None or current.source_hash == version:
            return current
        if version not in self._versions:
            from runner.versions import with_current_policy

            old = self.load_version(version) if self.load_version is not None else None
            self._versions[version] = None if old is None else with_current_policy(old, current)
        return self._versions[version]

    def sender_by_name(self, name: str) -> SenderRuntime | None:
        return next((s for s in self.senders.values() if s.name == name), None)
