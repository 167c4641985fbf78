"""Who holds a lead: runner identities, and telling a dead runner's leases from a live one's.

A run claims a batch of due leads by writing its identity into `enrollment.lease_owner` (and moving
`due_at` a lease length ahead, so that a lead whose runner vanished comes back by itself). The
identity is `host:pid:nonce`: the host and process id say where the runner lives, the random nonce
tells two processes apart that got the same pid one after the other.

A runner starting on a host can therefore tell at once which leases belong to runners of that
host that are gone (their pid is not running, or it is its own pid under another nonce) and take
them back, instead of waiting for the leases to run out. For every host, a runner is also gone when
its heartbeat in the runner table is stale (`runner.engine.presence`, which builds on this module); a
runner of another host that the table does not know has its leases left to expire. Identities that
do not parse come from an older seqrun, whose runs never overlapped another (one run per database
then), so they are gone too.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    nonce: str

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.nonce}"


def this_host() -> str:
    # ':' separates the parts of an identity; a host name never has one, but be sure.
    return socket.gethostname().replace(":", "_") or "localhost"


def new_identity() -> str:
    """The identity of a runner in this process (a fresh nonce each time)."""
    return str(Owner(this_host(), os.getpid(), uuid.uuid4().hex[:8]))


def parse(identity: str) -> Owner | None:
    host, sep, rest = identity.partition(":")
    pid, sep2, nonce = rest.partition(":")
    if not (sep and sep2 and host and nonce and pid.isdigit()):
        return None
    return Owner(host, int(pid), nonce)


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process of another user: it exists
    return True


def is_gone(identity: str, *, me: str) -> bool:
    """True when the runner `identity` certainly no longer runs (so its leases can be taken back)."""
    if identity == me:
        return False
    owner = parse(identity)
    if owner is None:
        return True
    if owner.host != this_host():
        return False
    if owner.pid == os.getpid():
        return True  # an earlier runner of this very process (or a pid reused by it)
    return not pid_running(owner.pid)


def describe(identity: str, *, me: str | None = None) -> str:
    """How `status` shows a lease holder: `host pid 123`, with whether it still runs when we can tell."""
    owner = parse(identity)
    if owner is None:
        return f"{identity} (an older seqrun; gone)"
    where = f"{owner.host} pid {owner.pid}"
    if owner.host != this_host():
        return where
    return where + (" (running)" if not is_gone(identity, me=me or "") else " (gone; the next run takes its leads back)")
