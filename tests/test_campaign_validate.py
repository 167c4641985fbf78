"""`seqrun validate` refuses, with the reason, the steps a Salesflow campaign performs by itself, and
asks for the campaign of a salesflow-campaign sender."""
from __future__ import annotations

import pathlib

import pytest

from runner.cli.main import main

SEQRUN_YAML = """\
version: 1
senders:
  - name: carol
    provider: salesflow-campaign
    account_id: "321"
    campaign_id: 456
    credentials_env: {api_key: SALESFLOW_TOKEN}
"""
SEQUENCE = """\
version: 1
name: supervise
steps:
  - {id: look, action: visit}
  - {id: join, action: connect, note: note.j2}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: thanks, action: message, template: note.j2}
  - {id: take_back, action: withdraw}
  - end: done
"""
CAMPAIGN = ("the Salesflow campaign does that itself; seqrun only imports leads into the campaign (connect) and "
            "follows what happens (wait_for accepted / replied, tag, notify, branch, end)")


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(SEQRUN_YAML, encoding="utf-8")
    (tmp_path / "sequences" / "supervise.yaml").write_text(SEQUENCE, encoding="utf-8")
    (tmp_path / "templates" / "note.j2").write_text("Hi there, glad to connect.\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    return tmp_path


def test_validate_refuses_each_step_with_the_reason(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "sequences/"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"sequences/supervise.yaml:4:5: error: steps[id=look]: sender carol acts through salesflow-campaign, which "
        f"cannot visit a profile: {CAMPAIGN}",
        "sequences/supervise.yaml:5:5: error: steps[id=join].note: sender carol acts through salesflow-campaign, "
        "which cannot send a note with the invitation: the campaign sends its own invitation message "
        "(members/Import takes no note); remove `note:`",
        f"sequences/supervise.yaml:7:5: error: steps[id=thanks]: sender carol acts through salesflow-campaign, "
        f"which cannot send a message: {CAMPAIGN}",
        "sequences/supervise.yaml:8:5: error: steps[id=take_back]: sender carol acts through salesflow-campaign, "
        "which cannot withdraw an invitation: the Salesflow campaign withdraws invitations itself (its own "
        "settings); seqrun hears of it as INVITATION_WITHDRAWN",
        "4 errors in 1 file",
    ]


def test_a_sequence_written_for_the_provider_says_the_same_without_a_project(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "note.j2").write_text("Hi there, glad to connect.\n", encoding="utf-8")
    (tmp_path / "s.yaml").write_text(SEQUENCE.replace("name: supervise\n", "name: supervise\nprovider: "
                                                      "salesflow-campaign\n"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", "s.yaml"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("s.yaml:5:5: error: steps[id=look]: the salesflow-campaign provider cannot visit profiles: "
                        f"{CAMPAIGN}")
    assert lines[1] == ("s.yaml:6:5: error: steps[id=join].note: the salesflow-campaign provider cannot send a note "
                        "with the invitation: the campaign sends its own invitation message (members/Import takes no "
                        "note); remove `note:`")


def test_a_campaign_sender_needs_its_campaign(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "seqrun.yaml").write_text(SEQRUN_YAML.replace("    campaign_id: 456\n", ""), encoding="utf-8")
    assert main(["validate", "sequences/"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "seqrun.yaml:3:5: error: senders[name=carol]: provider salesflow-campaign needs \"campaign_id\": the "
        "Salesflow campaign this sender's leads are imported into (its number, from the campaign's address in "
        "Salesflow)")


def test_only_a_campaign_sender_takes_a_campaign(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "seqrun.yaml").write_text(SEQRUN_YAML.replace("salesflow-campaign", "sandbox"), encoding="utf-8")
    assert main(["validate", "sequences/"]) == 1
    assert capsys.readouterr().out.splitlines()[0] == (
        "seqrun.yaml:6:5: error: senders[name=carol].campaign_id: only a sender with provider salesflow-campaign "
        "takes campaign_id (this one acts through sandbox)")


def test_a_supervising_sequence_validates(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sequences" / "supervise.yaml").write_text("""\
version: 1
name: supervise
steps:
  - {id: join, action: connect}
  - {id: accepted, wait_for: accepted, timeout: 14 days, on_timeout: {end: not_accepted}}
  - {id: mark, action: tag, tags: [connected]}
  - end: done
""", encoding="utf-8")
    assert main(["validate", "sequences/"]) == 0


def test_an_app_base_url_with_a_password_is_refused_without_echoing_it(
        project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "seqrun.yaml").write_text(SEQRUN_YAML + "    app_base_url: https://me:hunter2xyz@app.example.com/api\n",
                                         encoding="utf-8")
    assert main(["validate", "sequences/"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(
        "seqrun.yaml:8:19: error: senders[name=carol].app_base_url: the URL carries a credential (")
    assert "hunter2xyz" not in out
