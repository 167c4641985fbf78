"""The dashboard as a user meets it: `seqrun serve` (a real process on 127.0.0.1, port 0) on a simulated
project, driven in headless Chromium. Skipped like test_browser.py when Chromium is missing."""
from __future__ import annotations

import shutil
import signal

import httpx

from server.test_serve_cli import Serve  # tests/server: `seqrun serve` in its own process

from .conftest import ROOT, SEQUENCE, needs_chromium

pytestmark = needs_chromium


def test_seqrun_serve_shows_the_dashboard_and_its_webhook_log(page, simulated_db, tmp_path, artefacts,
                                                              monkeypatch):
    project = tmp_path / "project"
    (project / "sequences").mkdir(parents=True)
    shutil.copy(SEQUENCE, project / "sequences" / SEQUENCE.name)
    shutil.copytree(ROOT / "templates", project / "templates")
    shutil.copy(ROOT / "seqrun.yaml", project / "seqrun.yaml")
    monkeypatch.setenv("CRM_API_KEY", "crm-key-for-the-test")  # the sequence's notify step needs one
    shutil.copy(simulated_db, project / "seqrun.db")
    serve = Serve(project)
    try:
        assert serve.ready().status_code == 200
        refused = httpx.post(serve.url + "/webhooks/edges", content=b"{}", headers={"content-type": "application/json"})
        assert refused.status_code >= 400
        page.goto(serve.url + "/")
        assert page.locator(".card").count() == 2
        assert page.text_content('[data-state="two-senders-ab:done"]').isdigit()
        page.click("text=Webhooks")
        page.wait_for_selector("table.grid")
        row = page.locator("table.grid tbody tr").first
        assert row.locator("td").nth(4).text_content() == str(refused.status_code)
        assert row.locator(".pill").text_content() == "rejected"
        page.screenshot(path=str(artefacts / "serve-webhooks.png"), full_page=True)
        page.click("text=Sequence")
        page.locator("svg.flowchart").wait_for()
        assert page.console_errors == []
    finally:
        serve.stop(signal.SIGTERM)
