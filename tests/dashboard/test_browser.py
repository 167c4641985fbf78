"""End to end in headless Chromium (Debian's `chromium`, driven by Playwright): the dashboard served on
127.0.0.1 with a simulated project, and the `seqrun simulate --html` report. Screenshots are saved
under the test run's temporary directory (`artefacts/`), or SEQRUN_ARTEFACTS when set.
Skipped when Chromium or Playwright is missing; CI installs both (.ci/run)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from runner.cli.main import main
from runner.holds import LEAD, Target, pause
from runner.server.dashboard import create_dashboard
from runner.store import Enrollment
from runner.store import dashboard as store

from .conftest import NOW, SEQUENCE, LiveServer, needs_chromium

pytestmark = needs_chromium


@pytest.fixture
def site(project) -> Iterator[str]:
    with LiveServer(create_dashboard(project, clock=lambda: NOW)) as base:
        yield base


def test_overview_shows_the_projects_numbers(page, site, artefacts):
    from runner.providers.base import ProviderEvent
    from runner.store import Sender, inbox, sender_state

    received = [inbox.Received(ProviderEvent(f"ev{n}", "replied", NOW, lead_key="nobody")) for n in range(3)]
    inbox.append(received[:1], source="webhook", provider="edges", received_at=NOW - dt.timedelta(minutes=12))
    for row_id in inbox.append(received[1:], source="poll", provider="edges", received_at=NOW):
        inbox.record_failure(row_id, LookupError("no lead nobody"), max_attempts=1)
    alice = Sender.get(Sender.name == "alice").id
    sender_state.hold_action(alice, "connect", NOW + dt.timedelta(hours=5), "weekly invitation limit reached")
    page.goto(site + "/")
    assert page.text_content('[data-stat="inbox-lag"]') == "12 min"
    assert page.text_content('[data-stat="dead"]') == "2"
    assert page.text_content('[data-sender="alice"] [data-hold="connect"]') == (
        "connect held by the provider until 2026-01-17 03:00 UTC: weekly invitation limit reached")
    assert page.text_content('[data-sender="alice"] .pill') == "provider hold"
    for state, _n in Enrollment.select(Enrollment.state, Enrollment.id).group_by(Enrollment.state).tuples():
        expected = Enrollment.select().where(Enrollment.state == state).count()
        assert page.text_content(f'[data-state="two-senders-ab:{state}"]') == str(expected)
    assert page.text_content('[data-stat="attention"]') == str(store.attention()[1])
    assert page.locator(".card").count() == 2
    page.screenshot(path=str(artefacts / "overview.png"), full_page=True)
    assert page.console_errors == []


def test_marking_a_replied_lead_handled_changes_the_store(page, site, artefacts):
    page.goto(site + "/attention")
    page.screenshot(path=str(artefacts / "needs-a-human.png"), full_page=True)
    row = page.locator("tr", has=page.locator(".pill", has_text="replied")).first
    enrollment = int(row.get_attribute("data-enrollment"))
    assert store.needs_human(enrollment)
    row.locator("a").click()
    page.wait_for_selector('button[data-action="handled"]')
    page.screenshot(path=str(artefacts / "lead.png"), full_page=True)
    page.click('button[data-action="handled"]')
    page.wait_for_selector(".flash")
    assert page.text_content(".flash").startswith("Marked handled")
    assert not store.needs_human(enrollment)
    assert store.handled_at(enrollment) == NOW
    assert page.locator('button[data-action="handled"]').count() == 0
    assert page.console_errors == []


def test_the_flowchart_renders_with_counts(page, site, artefacts):
    page.goto(site + "/sequences")
    svg = page.locator("svg.flowchart")
    svg.wait_for()
    box = svg.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 300
    on_step = store.leads_on_steps("two-senders-ab")
    counts = [int(t.replace(",", "")) for t in page.locator("svg.flowchart .count").all_text_contents()]
    assert sum(on_step.values()) <= sum(counts)
    assert max(on_step.values()) in counts
    page.screenshot(path=str(artefacts / "flowchart.png"), full_page=True)
    assert page.console_errors == []


def test_the_page_refreshes_itself_without_reloading(page, site):
    page.goto(site + "/")
    page.evaluate("window.notReloaded = true")
    assert page.locator('[data-state="two-senders-ab:paused"]').count() == 0
    enr = Enrollment.select().where(Enrollment.state == "active").first()
    pause(Target(LEAD, enr.lead_id, "lead"), "from the test", NOW)
    page.wait_for_selector('[data-state="two-senders-ab:paused"]', timeout=20_000)
    assert page.text_content('[data-state="two-senders-ab:paused"]') == "1"
    assert page.evaluate("window.notReloaded") is True
    assert page.console_errors == []


def test_no_refresh_while_the_user_selects_text(page, site):
    page.goto(site + "/")
    page.evaluate("""() => {
        const range = document.createRange();
        range.selectNodeContents(document.querySelector("table.grid td"));
        window.getSelection().addRange(range);
    }""")
    enr = Enrollment.select().where(Enrollment.state == "active").first()
    pause(Target(LEAD, enr.lead_id, "lead"), "from the test", NOW)
    # Two refreshes held back (the page's CSP forbids wait_for_function's eval; a selector needs none).
    page.wait_for_selector('#content[data-held-back]:not([data-held-back="1"])', state="attached", timeout=30_000)
    assert page.locator('[data-state="two-senders-ab:paused"]').count() == 0
    assert page.evaluate("String(window.getSelection())") != ""
    page.evaluate("window.getSelection().removeAllRanges()")
    page.wait_for_selector('[data-state="two-senders-ab:paused"]', timeout=20_000)
    assert page.console_errors == []


def test_the_simulation_report_opens_and_draws_its_plots(page, tmp_path, artefacts):
    report = tmp_path / "report.html"
    assert main(["simulate", str(SEQUENCE), "--leads", "120", "--days", "14", "--start", "2026-01-05",
                 "--html", str(report)]) == 0
    page.goto(report.as_uri())
    charts = page.locator("svg.chart")
    assert charts.count() >= 7
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
    assert page.locator("#usage svg rect").count() > 20
    page.screenshot(path=str(artefacts / "simulate-report.png"), full_page=True)
    assert page.console_errors == []
