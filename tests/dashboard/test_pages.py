"""The dashboard's pages and buttons against a simulated project (Starlette's TestClient)."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from markupsafe import escape as html_escape
from peewee import fn
from starlette.testclient import TestClient

from runner.language.graph import build_graph
from runner.server.dashboard.flowchart import flowchart_svg
from runner.store import Action, Block, Enrollment, Sender, Usage
from runner.store import dashboard as store

from .conftest import NOW

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def client(dashboard) -> TestClient:
    return TestClient(dashboard, base_url=BASE)


def _press(client: TestClient, enrollment: int, action: str) -> str:
    token = re.search(r'name="csrf" value="([^"]+)"', client.get(f"/leads/{enrollment}").text).group(1)
    response = client.post(f"/leads/{enrollment}/{action}", data={"csrf": token}, headers={"origin": BASE})
    assert response.status_code == 200, response.text
    return re.search(r'<div class="flash" role="status">([^<]*)</div>', response.text).group(1)


def _first(state: str) -> Enrollment:
    return Enrollment.select().where(Enrollment.state == state).order_by(Enrollment.id).first()


def _fail_one() -> Enrollment:
    """A lead failed the way the engine fails one whose retry budget is spent."""
    enr = _first("active")
    Enrollment.update(state="failed", last_error="provider error: 503 Service Unavailable", finished_at=NOW,
                      updated_at=NOW, due_at=None).where(Enrollment.id == enr.id).execute()
    return Enrollment.get_by_id(enr.id)


def test_overview_counts_match_the_store(client):
    html = client.get("/").text
    states = dict(Enrollment.select(Enrollment.state, fn.COUNT(Enrollment.id)).group_by(Enrollment.state).tuples())
    assert states["active"] and states["done"]
    for state, n in states.items():
        assert f'data-state="two-senders-ab:{state}">{n}<' in html
    replied = Enrollment.select().where(Enrollment.outcome == "replied").count()
    assert f'data-outcome="two-senders-ab:replied">{replied}<' in html
    _, waiting = store.attention()
    assert f'data-stat="attention">{waiting}<' in html
    for sender, day in (("alice", "2026-01-16"), ("bob", "2026-01-16")):  # Friday in Berlin and New York
        today = (Usage.select(fn.SUM(Usage.used)).join(Sender)
                 .where(Sender.name == sender, Usage.day == day, Usage.action == "message").scalar())
        week = (Usage.select(fn.SUM(Usage.used)).join(Sender)
                .where(Sender.name == sender, Usage.day >= "2026-01-12", Usage.day <= day, Usage.action == "message")
                .scalar())
        assert today and week
        card = html[html.index(f'data-sender="{sender}"'):]
        card = card[:card.index("</article>")]
        assert re.search(rf'message</span>.*?<span class="meter-value">{today} / 40</span>', card, re.S)
        week_part = card[card.index("This week"):]
        assert re.search(rf'message</span>.*?<span class="meter-value">{week}</span>', week_part, re.S)
    assert '<article class="card" data-sender="alice">' in html and '<article class="card" data-sender="bob">' in html


def test_fragment_is_the_content_alone(client):
    html = client.get("/attention?fragment=1").text
    assert "<html" not in html and html.lstrip().startswith("<h2>Needs a human")


def test_needs_a_human_lists_replies_and_failures_with_their_reasons(client):
    _fail_one()
    rows, total = store.attention()
    reasons = {r.reason.split(":")[0] for r in rows}
    assert {"replied", "failed"} <= reasons
    html = client.get("/attention").text
    assert f"Needs a human <span class=\"muted\">({total})</span>" in html
    failed = next(r for r in rows if r.state == "failed")
    assert f"failed: {failed.last_error}" in html


def test_a_leads_timeline_shows_its_messages_as_sent(client):
    rows, _ = store.attention()
    lead = next(r for r in rows if r.reason == "replied")
    html = client.get(f"/leads/{lead.enrollment_id}").text
    sent = [a.content for a in Action.select().where(Action.enrollment == lead.enrollment_id,
                                                      Action.action == "message", Action.status == "done")]
    assert sent and all(str(html_escape(text)) in html for text in sent)
    assert "thanks for connecting!" in html
    assert "<strong>replied</strong>" in html and "<strong>accepted</strong>" in html


def test_a_handled_lead_needs_a_human_again_when_it_changes(client):
    rows, total = store.attention()
    enrollment = next(r for r in rows if r.reason == "replied").enrollment_id
    assert _press(client, enrollment, "handled").startswith("Marked handled")
    assert store.attention()[1] == total - 1
    Enrollment.update(updated_at=NOW + dt.timedelta(minutes=1)).where(Enrollment.id == enrollment).execute()
    assert store.needs_human(enrollment)


def test_pause_and_resume_buttons_do_what_the_commands_do(client):
    enr = _first("active")
    assert _press(client, enr.id, "pause") == "Paused."
    enr = Enrollment.get_by_id(enr.id)
    assert (enr.state, enr.paused_reason) == ("paused", "lead paused: paused from the dashboard")
    assert _press(client, enr.id, "resume") == "Resumed, due now."
    enr = Enrollment.get_by_id(enr.id)
    assert (enr.state, enr.paused_reason, enr.due_at) == ("active", None, NOW)


def test_retry_puts_a_failed_lead_back(client):
    enr = _fail_one()
    assert _press(client, enr.id, "retry") == "Retried, due now."
    after = Enrollment.get_by_id(enr.id)
    assert (after.state, after.step_id, after.due_at, after.attempt) == ("active", enr.step_id, NOW, enr.attempt + 1)
    assert _press(client, enr.id, "retry") == "Nothing to retry: the lead has not failed."


def test_block_blocks_the_profile(client):
    enr = _first("active")
    message = _press(client, enr.id, "block")
    assert message == "Blocked: the lead ends with outcome “blocked” at its next step and is never contacted again."
    assert Block.get(Block.key == enr.lead.key).reason == "blocked from the dashboard"


def test_unknown_leads_and_actions_are_404(client):
    assert client.get("/leads/999999").status_code == 404
    assert client.get("/leads/abc").status_code == 404
    assert client.get("/sequences/nope").status_code == 404


def test_flowchart_counts_the_leads_on_each_step(client, project):
    seq = project.sequences["two-senders-ab"]
    on_step = store.leads_on_steps(seq.name)
    svg = flowchart_svg(build_graph(seq), [s.id for s in seq.steps], on_step, store.outcomes(seq.name))
    for i, step in enumerate(seq.steps):
        if step.kind != "end":
            count = re.search(rf'data-node="s{i}">.*?class="count">([\d,]+)<', svg).group(1)
            assert int(count.replace(",", "")) == on_step.get(step.id, 0), step.id
    assert client.get("/sequences", follow_redirects=False).headers["location"] == "/sequences/two-senders-ab"
    assert svg in client.get("/sequences/two-senders-ab").text


def test_webhooks_page_lists_deliveries_newest_first(project):
    from types import SimpleNamespace

    from runner.server.dashboard import create_dashboard

    deliveries = [SimpleNamespace(at=NOW - dt.timedelta(minutes=2), provider="edges", verdict="verified", reason="ok",
                                  status=200),
                  SimpleNamespace(at=NOW, provider="edges", verdict="rejected", reason="bad signature", status=401)]
    log = SimpleNamespace(recent=lambda limit: deliveries[-limit:])
    client = TestClient(create_dashboard(project, clock=lambda: NOW, deliveries=log), base_url=BASE)
    html = client.get("/webhooks").text
    assert html.index("bad signature") < html.index("verified")
    assert "no delivery log" in TestClient(create_dashboard(project, clock=lambda: NOW), base_url=BASE).get("/webhooks").text


def test_the_overview_shows_failed_outgoing_events(client):
    from runner.store import outgoing

    assert 'id="outgoing"' not in client.get("/").text  # no subscription: no panel
    sub = outgoing.subscription_rows(["crm"], NOW)["crm"]
    outgoing.add_events([{"subscription": sub.id, "event_id": f"e{i}", "type": "lead.replied", "body": "{}",
                          "occurred_at": NOW, "state": state, "created_at": NOW}
                         for i, state in enumerate(("delivered", "failed", "failed"))])
    event = outgoing.OutgoingEvent.get(outgoing.OutgoingEvent.event_id == "e2")
    outgoing.mark_failed_attempt(event.id, "HTTP 500 from the receiver", None)
    html = client.get("/").text
    row = html[html.index('data-subscription="crm"'):]
    row = row[:row.index("</tr>")]
    assert '<td class="num bad" data-col="failed">2</td>' in row
    assert "HTTP 500 from the receiver" in row
    assert "Failed events wait for <code>seqrun outgoing retry</code>." in html


def test_the_timeline_reads_in_the_order_things_happened(project):
    """Same-second items keep their real order: a step is entered, its action is done, then the next
    step is entered (the simulator's passes stamp all three with one `now`)."""
    checked = 0
    for (enrollment_id,) in Enrollment.select(Enrollment.id).where(Enrollment.state == "done").tuples():
        items = store.timeline(enrollment_id)
        entered = None
        for item in items:
            if item.kind == "step":
                entered = item.title.removeprefix("entered ")
            elif item.kind == "action":
                step = item.title.split(" at ", 1)[1].split(" (", 1)[0]
                assert entered == step, [f"{i.at:%H:%M:%S} {i.kind} {i.title}" for i in items]
                checked += 1
    assert checked > 20


def test_the_overview_shows_the_inbox_lag_and_dead_events(client):
    from runner.providers.base import ProviderEvent
    from runner.store import inbox

    html = client.get("/")
    assert '<span class="stat-n" data-stat="inbox-lag">none waiting</span>' in html.text
    def event(n: int) -> inbox.Received:
        return inbox.Received(ProviderEvent(f"ev{n}", "replied", NOW, lead_key="nobody"))
    inbox.append([event(1)], source="webhook", provider="edges", received_at=NOW - dt.timedelta(minutes=7))
    inbox.append([event(2)], source="webhook", provider="edges", received_at=NOW - dt.timedelta(minutes=1))
    dead = inbox.append([event(3), event(4)], source="poll", provider="edges", received_at=NOW - dt.timedelta(hours=2))
    for row_id in dead:
        inbox.record_failure(row_id, LookupError("no lead nobody"), max_attempts=1)
    html = client.get("/").text
    assert '<span class="stat-n" data-stat="inbox-lag">7 min</span><span class="stat-l">inbox lag (2 waiting)</span>' in html
    assert ('<a class="stat stat-alert" href="#inbox"><span class="stat-n" data-stat="dead">2</span>'
            '<span class="stat-l">dead events</span></a>') in html
    assert "2 events could not be applied (dead); <code>seqrun events list --state dead</code> shows why" in html


def test_a_senders_card_shows_its_provider_holds(client):
    from runner.store import sender_state

    alice = Sender.get(Sender.name == "alice")
    until = NOW + dt.timedelta(days=2, hours=3)
    sender_state.hold_action(alice.id, "connect", until, "weekly invitation limit reached")
    sender_state.hold_action(alice.id, "message", NOW - dt.timedelta(minutes=1), "over")  # ended: not shown
    html = client.get("/").text
    card = html[html.index('data-sender="alice"'):]
    card = card[:card.index("</article>")]
    assert '<span class="pill pill-warn">provider hold</span>' in card
    assert ('<p class="detail" data-hold="connect">connect held by the provider until 2026-01-19 01:00 UTC: '
            'weekly invitation limit reached</p>') in card
    assert 'data-hold="message"' not in card
    bob = html[html.index('data-sender="bob"'):]
    assert 'data-hold' not in bob[:bob.index("</article>")]
