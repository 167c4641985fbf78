"""What Salesflow's inbox syncs delivered: the syncs themselves, the threads and their messages.

A sync is asked for with `POST /conversations/sync` (the whole inbox, from a date) or
`POST /conversations/{id}/sync` (one thread); Salesflow answers 202 and streams the data as New
Messages webhooks. `SyncBook` is where those pages land (from the receiver's threads) and where the
driver waits for them:

- pages are kept by (sync, type, thread, page number): a page delivered twice, or pages in any
  order, change nothing; a page of a sync not registered yet (it can overtake the 202) waits;
- an inbox sync is *finished* once its CONVERSATIONS pages 1…N (N the page marked last) have all
  arrived and, for every conversation they list, its MESSAGES pages 1…M; a thread sync once its
  thread's MESSAGES pages have;
- the account's marker (seed 000's `lastSyncedAtUtc`) is the start of the newest finished inbox
  sync, so it never moves before a sync finished; `marker_log` records every move (audits);
- messages are kept per thread by message id (de-duplicated); a message from a participant (the
  lead) that was not seen before becomes a `replied` event.
"""
from __future__ import annotations

import collections
import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from runner.providers.base import Message, ProviderEvent
from runner.providers.salesflow.webhook import CONVERSATIONS, ConversationItem, MessageItem, Page

PENDING_PAGES = 10_000  # pages of unregistered syncs kept at most (oldest dropped first)
KEEP_SYNCS = 500  # finished syncs remembered (with their pages); older ones are forgotten
FORGOTTEN = 100_000  # ids of forgotten syncs, whose late pages are ignored


@dataclass
class Sync:
    sync_id: str
    account_id: str
    scope: str  # "inbox" | "thread"
    started_at: dt.datetime  # the driver's clock when the sync was asked for
    conversations_from: dt.datetime | None = None
    conversation_id: str | None = None  # of a thread sync
    listed: dict[int, tuple[str, ...]] = field(default_factory=dict)  # CONVERSATIONS page -> thread ids
    last_listed: int | None = None
    message_pages: dict[str, set[int]] = field(default_factory=dict)
    last_message_page: dict[str, int] = field(default_factory=dict)
    finished: bool = False
    asked: float = field(default_factory=time.monotonic)  # for giving up on a sync that never ends

    def _thread_done(self, conversation_id: str) -> bool:
        last = self.last_message_page.get(conversation_id)
        seen = self.message_pages.get(conversation_id, set())
        return last is not None and all(n in seen for n in range(1, last + 1))

    def complete(self) -> bool:
        if self.scope == "thread":
            return self.conversation_id is not None and self._thread_done(self.conversation_id)
        if self.last_listed is None or any(n not in self.listed for n in range(1, self.last_listed + 1)):
            return False
        return all(self._thread_done(cid) for ids in self.listed.values() for cid in ids)


@dataclass
class Thread:
    conversation_id: str
    account_id: str
    lead_key: str | None = None
    lead_profile_id: str | None = None
    participants: set[str] = field(default_factory=set)  # profile ids of the other side
    #: message id -> (sent at, sender's profile id; None for ours): who wrote is decided on reading,
    #: because a MESSAGES page may arrive before the CONVERSATIONS page that names the participants
    messages: dict[str, tuple[dt.datetime, str | None]] = field(default_factory=dict)
    reported: set[str] = field(default_factory=set)  # lead messages already turned into events

    def from_lead(self, sender_profile_id: str | None) -> bool:
        return sender_profile_id is not None and sender_profile_id in self.participants

    def sorted_messages(self) -> tuple[Message, ...]:
        out = [Message(mid, at, self.from_lead(sender)) for mid, (at, sender) in self.messages.items()]
        return tuple(sorted(out, key=lambda m: (m.sent_at, m.message_id)))


class SyncBook:
    """Syncs, threads and messages of every account one driver acts for. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.RLock())
        self.syncs: dict[str, Sync] = {}
        self._pending: collections.OrderedDict[tuple[str, str, str, int], Page] = collections.OrderedDict()
        self._pages: set[tuple[str, str, str, int]] = set()
        self.threads: dict[str, Thread] = {}
        self._by_lead: dict[tuple[str, str], str] = {}  # (account, lead key or profile id) -> thread
        self._forgotten: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.markers: dict[str, dt.datetime] = {}
        self.marker_log: list[tuple[str, str, dt.datetime]] = []  # (account, sync id, new marker)
        self.stats: collections.Counter[str] = collections.Counter()

    # --- syncs --------------------------------------------------------------------------------

    def register(self, sync: Sync) -> list[ProviderEvent]:
        """A sync Salesflow accepted (202); pages that overtook the answer are applied now."""
        with self._lock:
            self.syncs[sync.sync_id] = sync
            early = [p for key, p in self._pending.items() if key[0] == sync.sync_id]
            for page in early:
                del self._pending[page.key]
            events = [e for page in early for e in self._apply(sync, page)]
            self._settle(sync)
            return events

    def take(self, page: Page) -> list[ProviderEvent]:
        """One delivered page; returns the replies it revealed (new messages from the lead)."""
        with self._lock:
            if page.key in self._pages or page.key in self._pending or page.sync_id in self._forgotten:
                self.stats["duplicate_pages"] += 1
                return []
            sync = self.syncs.get(page.sync_id)
            if sync is None:
                self._pending[page.key] = page
                while len(self._pending) > PENDING_PAGES:
                    self._pending.popitem(last=False)
                self.stats["early_pages"] += 1
                return []
            events = self._apply(sync, page)
            self._settle(sync)
            return events

    def wait(self, sync_id: str, timeout: float) -> bool:
        """Whether the sync finished within `timeout` seconds (real time: pages come from threads)."""
        with self._lock:
            return self._lock.wait_for(lambda: sync_id not in self.syncs or self.syncs[sync_id].finished,
                                       timeout=timeout)  # a forgotten sync had finished

    def fresh(self, account_id: str, not_before: dt.datetime) -> Sync | None:
        """The newest finished inbox sync of the account that started at or after `not_before`."""
        with self._lock:
            done = [s for s in self.syncs.values() if s.account_id == account_id and s.scope == "inbox"
                    and s.finished and s.started_at >= not_before]
            return max(done, key=lambda s: s.started_at) if done else None

    def marker(self, account_id: str) -> dt.datetime | None:
        with self._lock:
            return self.markers.get(account_id)

    def _apply(self, sync: Sync, page: Page) -> list[ProviderEvent]:
        self._pages.add(page.key)
        self.stats["pages"] += 1
        if page.sync_type == CONVERSATIONS:
            sync.listed[page.number] = tuple(c.conversation_id for c in page.conversations)
            if page.last:
                sync.last_listed = page.number
            threads = [self._conversation(sync.account_id, item) for item in page.conversations]
        else:
            cid = page.conversation_id or ""
            sync.message_pages.setdefault(cid, set()).add(page.number)
            if page.last:
                sync.last_message_page[cid] = page.number
            threads = [self._message(sync.account_id, m) for m in page.messages]
        unique = {t.conversation_id: t for t in threads}
        return [e for t in unique.values() for e in self._new_replies(t)]

    def _settle(self, sync: Sync) -> None:
        if sync.finished or not sync.complete():
            return
        sync.finished = True
        self.stats["syncs_finished"] += 1
        if sync.scope == "inbox":
            current = self.markers.get(sync.account_id)
            if current is None or sync.started_at > current:
                self.markers[sync.account_id] = sync.started_at
                self.marker_log.append((sync.account_id, sync.sync_id, sync.started_at))
        self._lock.notify_all()
        self._forget_old()

    def _forget_old(self) -> None:
        """A daemon runs for months: finished syncs beyond the newest KEEP_SYNCS are forgotten (the
        markers stay), and pages of theirs that come late are ignored."""
        finished = [s for s in self.syncs.values() if s.finished]
        if len(finished) <= KEEP_SYNCS:
            return
        for old in sorted(finished, key=lambda s: s.started_at)[:len(finished) - KEEP_SYNCS]:
            del self.syncs[old.sync_id]
            self._forgotten[old.sync_id] = None
        while len(self._forgotten) > FORGOTTEN:
            self._forgotten.popitem(last=False)
        gone = set(self._forgotten)
        self._pages = {key for key in self._pages if key[0] not in gone}

    # --- threads --------------------------------------------------------------------------------

    def _thread(self, account_id: str, conversation_id: str) -> Thread:
        thread = self.threads.get(conversation_id)
        if thread is None:
            thread = self.threads[conversation_id] = Thread(conversation_id, account_id)
        return thread

    def _conversation(self, account_id: str, item: ConversationItem) -> Thread:
        thread = self._thread(account_id, item.conversation_id)
        for person in item.participants:
            if person.profile_id:
                thread.participants.add(person.profile_id)
            # 1:1 threads only: a group thread names nobody as "the lead".
            if len(item.participants) == 1:
                self._link(thread, person.key, person.profile_id)
        return thread

    def _message(self, account_id: str, item: MessageItem) -> Thread:
        thread = self._thread(account_id, item.conversation_id)
        thread.messages.setdefault(item.message_id, (item.sent_at, item.sender_profile_id))
        return thread

    def _new_replies(self, thread: Thread) -> list[ProviderEvent]:
        """Lead messages of the thread not reported yet (once the thread's lead is known)."""
        if thread.lead_key is None:
            return []
        out = []
        for mid, (at, sender) in thread.messages.items():
            if mid not in thread.reported and thread.from_lead(sender):
                thread.reported.add(mid)
                out.append(reply_event(thread.account_id, thread, mid, at))
        return out

    def _link(self, thread: Thread, lead_key: str | None, profile_id: str | None) -> None:
        if lead_key:
            thread.lead_key = lead_key
            self._by_lead[(thread.account_id, lead_key)] = thread.conversation_id
        if profile_id:
            thread.lead_profile_id = profile_id
            self._by_lead[(thread.account_id, profile_id)] = thread.conversation_id

    def thread_for(self, account_id: str, lead_key: str, profile_id: str | None = None) -> Thread | None:
        with self._lock:
            cid = self._by_lead.get((account_id, lead_key))
            if cid is None and profile_id:
                cid = self._by_lead.get((account_id, profile_id))
            return self.threads.get(cid) if cid is not None else None

    def sent(self, account_id: str, lead_key: str, profile_id: str | None, conversation_id: str,
             message: Message) -> None:
        """Our own message, known before any sync shows it."""
        with self._lock:
            thread = self._thread(account_id, conversation_id)
            if profile_id:
                thread.participants.add(profile_id)
            self._link(thread, lead_key, profile_id)
            thread.messages.setdefault(message.message_id, (message.sent_at, None))

    def replies(self, account_id: str, since: dt.datetime | None,
                keep: Callable[[Thread], bool] = lambda t: True) -> list[ProviderEvent]:
        """Every lead message newer than `since` in the account's threads, as `replied` events."""
        with self._lock:
            return [reply_event(account_id, t, mid, at)
                    for t in self.threads.values() if t.account_id == account_id and t.lead_key and keep(t)
                    for mid, (at, sender) in t.messages.items()
                    if t.from_lead(sender) and (since is None or at > since)]


def reply_event(account_id: str, thread: Thread, message_id: str, at: dt.datetime) -> ProviderEvent:
    return ProviderEvent(f"salesflow:{account_id}:replied:{thread.conversation_id}:{message_id}", "replied", at,
                         account_id, thread.lead_key, thread.conversation_id, {"message_id": message_id})
