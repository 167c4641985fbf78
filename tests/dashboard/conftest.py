"""A simulated project for the dashboard tests: the shipped two-senders A/B sequence, simulated once
into a SQLite file that each test gets a copy of."""
from __future__ import annotations

import datetime as dt
import os
import pathlib
import shutil
import threading
import time
from collections.abc import Iterator

import pytest

from runner.cli.main import main
from runner.project.config import load_project_config
from runner.project.discovery import load_sequences
from runner.server.dashboard import Project, create_dashboard
from runner.store import db, open_store

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEQUENCE = ROOT / "sequences" / "two-senders-ab.yaml"
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
NOW = START + dt.timedelta(days=11, hours=22)  # Friday evening, just before the simulation ends
TOKEN = "correct horse battery staple"


@pytest.fixture(scope="session")
def simulated_db(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("sim") / "sim.db"
    code = main(["simulate", str(SEQUENCE), "--leads", "120", "--days", "12", "--start", "2026-01-05",
                 "--db", str(path), "--json"])
    assert code == 0
    if not db.is_closed():
        db.close()
    return path


@pytest.fixture
def project(simulated_db: pathlib.Path, tmp_path: pathlib.Path) -> Iterator[Project]:
    copy = tmp_path / "project.db"
    shutil.copy(simulated_db, copy)
    open_store(str(copy))
    seqs = load_sequences([str(SEQUENCE)])
    yield Project(load_project_config(str(ROOT), list(seqs.values())), seqs)
    db.close()


@pytest.fixture
def dashboard(project: Project):
    return create_dashboard(project, clock=lambda: NOW)


# --- headless Chromium (test_browser.py, test_serve_browser.py) ---

CHROMIUM = os.environ.get("SEQRUN_CHROMIUM", "/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; CI does)")


@pytest.fixture(scope="session")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    where = os.environ.get("SEQRUN_ARTEFACTS")
    path = pathlib.Path(where) if where else tmp_path_factory.getbasetemp() / "artefacts"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    with sync_api.sync_playwright() as playwright:
        args = ["--no-sandbox"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda message: page.console_errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    yield page
    context.close()


class LiveServer:
    """The dashboard served by uvicorn on 127.0.0.1 (port 0) in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the dashboard server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
