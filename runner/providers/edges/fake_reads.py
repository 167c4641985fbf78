"""The fake Edges API's read actions: who the identity is, its connections, sent invitations,
conversations, a thread's messages and a thread's URL, computed from the simulated LinkedIn at the
fake's clock, newest first, in Edges' documented output shapes."""
from __future__ import annotations

import datetime as dt
import urllib.parse
from typing import TYPE_CHECKING, Any

from runner.providers.edges.fake_shapes import (
    EdgesError,
    iso,
    number_id,
    profile_url,
    sales_navigator_id,
    thread_url,
    urn,
)

if TYPE_CHECKING:
    from runner.providers.edges.fake import EdgesFake


def me(fake: EdgesFake, identity: str, given: dict[str, Any], parameters: dict[str, Any], now: dt.datetime) -> Any:
    """`linkedin-me`: the identity's own profile; its `id` tells who wrote a message."""
    handle = f"identity-{number_id(identity)}"
    return {"id": number_id("identity:" + identity), "first_name": "Fake", "last_name": "Sender",
            "full_name": "Fake Sender", "job_title": "Founder", "object_urn": f"urn:li:member:{number_id(identity)}",
            "handle": handle, "linkedin_profile_url": profile_url(handle), "profile_image_url": None,
            "sales_navigator_profile_id": None, "premium_subscriber": False}


def connections(fake: EdgesFake, identity: str, given: dict[str, Any], parameters: dict[str, Any],
                now: dt.datetime) -> list[Any]:
    rows = []
    for key, state in fake._leads(identity):
        since = state.connected_since(now)
        if since is not None and state.profile != "inaccessible":
            rows.append({"connected_at": iso(since), "linkedin_profile_id": number_id(key),
                         "linkedin_profile_url": profile_url(key),
                         "linkedin_profile_handle": profile_url(key).rsplit("/", 1)[1],
                         "full_name": key.replace("-", " ").title()})
    return sorted(rows, key=lambda r: (r["connected_at"], r["linkedin_profile_id"]), reverse=True)


def invitations(fake: EdgesFake, identity: str, given: dict[str, Any], parameters: dict[str, Any],
                now: dt.datetime) -> list[Any]:
    rows = []
    for key, state in fake._leads(identity):
        invite = state.pending_invite(now)
        if invite is not None and invite.sent_at <= now:
            invitation_urn = urn(invite.invitation_id)
            rows.append({"linkedin_invitation_id": int(invitation_urn.rsplit(":", 1)[1]),
                         "linkedin_invitation_urn": invitation_urn,
                         "sent_date": iso(invite.sent_at), "linkedin_profile_url": profile_url(key),
                         "job_title": None, "full_name": key.replace("-", " ").title(), "first_name": None,
                         "last_name": None, "sales_navigator_profile_id": sales_navigator_id(key),
                         "linkedin_profile_id": number_id(key)})
    return sorted(rows, key=lambda r: (r["sent_date"], r["linkedin_invitation_id"]), reverse=True)


def conversations(fake: EdgesFake, identity: str, given: dict[str, Any], parameters: dict[str, Any],
                  now: dt.datetime) -> list[Any]:
    own = number_id("identity:" + identity)
    rows = []
    for key, state in fake._leads(identity):
        if not state.thread_open(now):
            continue
        notes = state.visible_messages(now)
        if not notes:
            continue
        last = notes[-1]
        thread = fake.world._world.thread_id(identity, key)
        lead_id = number_id(key)
        rows.append({"linkedin_thread_id": thread, "linkedin_thread_url": thread_url(thread),
                     "participants": [{"linkedin_profile_id": lead_id, "linkedin_profile_url": profile_url(key)}],
                     "last_activity_at": iso(last.sent_at),
                     "last_message": {"linkedin_profile_id": lead_id if last.from_lead else own,
                                      "content": fake._text(last.message_id, last.from_lead),
                                      "delivered_at": iso(last.sent_at), "message_id": last.message_id},
                     "unread_count": 1 if last.from_lead else 0, "read": not last.from_lead})
    if parameters.get("read") is False:
        rows = [r for r in rows if not r["read"]]
    return sorted(rows, key=lambda r: (r["last_activity_at"], r["linkedin_thread_id"]), reverse=True)


def messages(fake: EdgesFake, identity: str, given: dict[str, Any], parameters: dict[str, Any],
             now: dt.datetime) -> list[Any]:
    url = given.get("linkedin_thread_url")
    if not isinstance(url, str) or not url:
        raise EdgesError(400, "BAD_INPUT", "input.linkedin_thread_url is required")
    thread = [p for p in urllib.parse.urlsplit(url).path.split("/") if p][-1] if "/" in url else url
    with fake.world._lock:
        owner = fake.world._world.thread_owner(thread)
        if owner is None or owner[0] != identity:
            raise EdgesError(424, "NO_RESULT", f"no thread {thread} for this identity")
        state = fake.world._world.leads[owner]
    own, lead_id = number_id("identity:" + identity), number_id(owner[1])
    if not state.thread_open(now):
        return []
    return [{"message_id": m.message_id, "linkedin_thread_id": thread, "position": i,
             "delivered_at": iso(m.sent_at), "linkedin_profile_id": lead_id if m.from_lead else own,
             "content": fake._text(m.message_id, m.from_lead)}
            for i, m in enumerate(state.visible_messages(now))]


def thread(fake: EdgesFake, identity: str, given: dict[str, Any], parameters: dict[str, Any],
           now: dt.datetime) -> Any:
    lead = fake._lead(given)
    with fake.world._lock:
        state = fake.world._world.lead(identity, lead.key, now)
    if state.profile == "inaccessible":
        raise EdgesError(424, "PROFILE_NOT_ACCESSIBLE", f"the profile of {lead.key} is not accessible")
    open_ = state.thread_open(now)
    return {"linkedin_thread_url": thread_url(fake.world._world.thread_id(identity, lead.key)) if open_ else None}
