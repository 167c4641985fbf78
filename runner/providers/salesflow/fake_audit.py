"""What `simulate --wire --provider salesflow` checks beyond the ledger: seed 000's promises.

- Every first message after an invite with a note went into the conversation that note opened;
  every first message to a lead without a thread created the conversation; a lead with an earlier
  thread was written in it. The fake refusing a conversation (`CONVERSATION_EXISTS`,
  `CONVERSATION_NOT_FOUND`) counts as a broken promise too: the driver tried the wrong way.
- No marker moved before its sync finished: every move the driver made (`SyncBook.marker_log`) is
  the start of an inbox sync all of whose pages the fake had delivered, and every sender's stored
  cursor is one of those moves.
"""
from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from runner.providers.http import parse_time
from runner.providers.salesflow.fake_shapes import iso

if TYPE_CHECKING:
    from runner.providers.salesflow.fake import SalesflowFake

WAYS = {"note": "into the invite's conversation", "history": "into the earlier conversation",
        "create": "by creating the conversation", "message": "into a conversation our own message opened"}


def audit(fake: SalesflowFake, driver: Any, cursors: Mapping[str, dt.datetime]) -> tuple[dict[str, Any], list[str]]:
    fake.deliveries.settle()
    problems: list[str] = []
    first: collections.Counter[str] = collections.Counter()
    for entry in fake.ledger:
        if entry["action"] not in ("message", "inmail") or not entry.get("first"):
            continue
        expected = _expected(fake, entry)
        actual = "create" if entry["via"] == "create" else (entry.get("opened_by") or "message")
        first[actual] += 1
        if actual != expected:
            problems.append(f"the first message to {entry['lead']} (account {entry['account_id']}) went "
                            f"{WAYS[actual]}, not {WAYS[expected]}")
    for code in ("CONVERSATION_EXISTS", "CONVERSATION_NOT_FOUND"):
        if fake.refusals[code]:
            problems.append(f"the driver was refused {fake.refusals[code]} time(s) with {code}")
    book = getattr(driver, "book", None)
    log = list(book.marker_log) if book is not None else []
    moves: dict[str, set[str]] = collections.defaultdict(set)
    for account, sync_id, marker in log:
        record = fake.deliveries.syncs.get(sync_id)
        moves[account].add(iso(marker))
        if record is None or record.scope != "inbox" or record.started_at != iso(marker):
            problems.append(f"the marker of account {account} moved to {iso(marker)} for sync {sync_id}, which is "
                            "not an inbox sync started then")
        elif not record.complete:
            problems.append(f"the marker of account {account} moved to {iso(marker)} before sync {sync_id} "
                            f"finished ({len(record.delivered & record.pages)} of {len(record.pages)} pages)")
    for account, cursor in sorted(cursors.items()):
        if account in {r.account_id for r in fake.deliveries.syncs.values()} and iso(cursor) not in moves[account]:
            problems.append(f"the stored cursor of account {account} ({iso(cursor)}) is not the start of a "
                            "finished inbox sync")
    syncs = fake.deliveries.syncs.values()
    stats = fake.deliveries.stats
    details: dict[str, Any] = {
        "first_messages": {"into_invite_thread": first["note"], "created": first["create"],
                           "into_earlier_thread": first["history"]},
        "syncs": {"asked": sum(1 for r in syncs if r.scope == "inbox"),
                  "finished": sum(1 for r in syncs if r.scope == "inbox" and r.complete),
                  "marker_moves": len(log)},
        "webhooks_sent": {"delivered": stats["delivered"], "failed": stats["failed"], "repeated": stats["repeated"],
                          "reordered_syncs": stats["reordered_syncs"],
                          "new_connection": sum(1 for e in fake.deliveries.log if e["event"] == "NEW_CONNECTION")},
        "pages_ignored_as_duplicates": book.stats["duplicate_pages"] if book is not None else 0,
    }
    sync = details["syncs"]
    sent = details["webhooks_sent"]
    details["summary"] = [
        f"first messages: {first['note']} into the invite's conversation, {first['create']} created the "
        f"conversation, {first['history']} into an earlier one",
        f"inbox syncs: {sync['asked']:,} asked, {sync['finished']:,} finished, the marker moved {len(log):,} times, "
        + ("each time after its sync finished" if not any("marker" in p or "cursor" in p for p in problems)
           else "NOT always after its sync finished"),
        f"webhooks sent: {sent['delivered']:,} ({sent['repeated']:,} pages twice, {sent['reordered_syncs']:,} syncs "
        f"out of order, {sent['new_connection']:,} NEW_CONNECTION up to "
        f"{fake.connection_delay.total_seconds() / 3600:g} h late); "
        f"repeats ignored: {details['pages_ignored_as_duplicates']:,}",
    ]
    return details, problems


def _expected(fake: SalesflowFake, entry: Mapping[str, Any]) -> str:
    """How the first message should have gone, from what the lead's thread was at that moment."""
    at = parse_time(entry["at"])
    with fake.world._lock:
        state = fake.world._world.leads.get((entry["account_id"], entry["lead"]))
    if state is None or at is None:
        return "create"
    if any(i.with_note and i.accepted_by(at) for i in state.invites):
        return "note"
    if state.thread_at is not None and state.thread_at <= state.first_seen:
        return "history"
    return "create"
