"""Steps a sender's provider cannot perform are refused before anything runs: validate, run, simulate."""
from __future__ import annotations

import pathlib

import pytest

from runner.cli.main import main
from runner.providers import CAPABILITIES

SEQRUN_YAML = """\
version: 1
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
  - {name: bob, provider: sandbox, account_id: acc-bob}
"""
SEQUENCE = """\
version: 1
name: intro
senders: [bob]
steps:
  - {id: visit, action: visit}
  - {id: connect, action: connect}
  - {id: pitch, action: message, inmail: true, subject: Hello, template: pitch.j2}
  - end: done
"""
EXPECTED = [
    "sequences/intro.yaml:5:5: error: steps[id=visit]: sender bob acts through sandbox, which cannot visit a profile "
    "(it can: connect, message, withdraw)",
    "sequences/intro.yaml:7:5: error: steps[id=pitch]: sender bob acts through sandbox, which cannot send an InMail "
    "(it can: connect, message, withdraw)",
]


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    (tmp_path / "sequences" / "intro.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "templates" / "pitch.j2").write_text("Hi there, a quick question.\n",
                                                     encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    # A provider without visits and InMails, like Salesflow's public API.
    monkeypatch.setitem(CAPABILITIES, "sandbox", frozenset({"connect", "message", "withdraw"}))
    return tmp_path


def test_validate_names_the_step_line_and_the_sender(project: pathlib.Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "sequences/"]) == 1
    assert capsys.readouterr().out.splitlines() == EXPECTED + ["2 errors in 1 file"]


def test_run_and_simulate_refuse_to_start(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--once"]) == 1
    err = capsys.readouterr().err.replace(f"{project}/", "")  # run names files by their full path
    assert err.splitlines()[:2] == EXPECTED
    assert main(["simulate", "sequences/intro.yaml", "--leads", "5", "--days", "1"]) == 1
    assert capsys.readouterr().err.splitlines()[:2] == EXPECTED


def test_a_provider_that_can_do_everything_passes(project: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(CAPABILITIES, "sandbox", frozenset({"visit", "connect", "message", "inmail", "withdraw"}))
    assert main(["validate", "sequences/"]) == 0
