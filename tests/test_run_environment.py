"""`seqrun run` checks the environment variables its sequences need before anything moves."""
from __future__ import annotations

import pathlib

import pytest

from test_run_cli import Clock, Run, clock, dump, run  # noqa: F401 - the project of test_run_cli: three leads

CRM = """\
version: 1
name: crm
fields: {full_name: optional}
steps:
  - {id: hello, action: tag, tags: [crm]}
  - id: sync
    action: notify
    url: https://crm.example.com/hooks/seqrun
    headers_from_env: {Authorization: CRM_TOKEN}
  - end: synced
"""


@pytest.fixture
def crm(tmp_path: pathlib.Path, clock: Clock, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    monkeypatch.delenv("CRM_TOKEN", raising=False)
    path = tmp_path / "sequences" / "crm.yaml"
    path.write_text(CRM, encoding="utf-8")
    return path


def test_run_refuses_to_start_while_a_sequence_with_leads_needs_an_unset_variable(
        tmp_path: pathlib.Path, crm: pathlib.Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "more.csv").write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/dana-x,Dana X\n",
                                       encoding="utf-8")
    assert run("leads", "import", "more.csv", "--sequence", "crm")[0] == 0
    before = dump(tmp_path / "seqrun.db")
    expected = (f"{crm}:6:5: error: steps[id=sync].headers_from_env.Authorization: environment variable CRM_TOKEN "
                "is not set\n"
                "error: set the environment variables above and start seqrun run again; the leads of these sequences "
                "would stop at these steps\n")
    assert run("run", "--once") == (1, "", expected)
    assert run("run", "--once", "--dry-run") == (1, "", expected)
    assert dump(tmp_path / "seqrun.db") == before  # nothing moved

    monkeypatch.setenv("CRM_TOKEN", "Bearer t0ken")
    posted: list[tuple[str, str]] = []
    monkeypatch.setattr("runner.cli.commands.run.http_notifier", lambda client: (
        lambda url, headers, payload: posted.append((url, headers["Authorization"]))))
    code, out, err = run("run", "--once")
    assert (code, err) == (0, "")
    assert posted == [("https://crm.example.com/hooks/seqrun", "Bearer t0ken")]


def test_a_sequence_without_leads_only_gets_a_warning(tmp_path: pathlib.Path, crm: pathlib.Path, run: Run) -> None:
    assert run("run", "--once") == (0, "3 lead(s) processed; 3 step(s); 0 event(s)\n", (
        f"{crm}:6:5: warning: steps[id=sync].headers_from_env.Authorization: environment variable CRM_TOKEN is not "
        "set (the sequence has no leads yet; leads that reach this step will be paused)\n"))


def test_run_checks_the_variables_of_the_earlier_versions_leads_run(
        tmp_path: pathlib.Path, crm: pathlib.Path, run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "more.csv").write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/dana-x,Dana X\n",
                                       encoding="utf-8")
    assert run("leads", "import", "more.csv", "--sequence", "crm")[0] == 0
    # The file now names another variable, which is set; Dana's version still needs CRM_TOKEN.
    crm.write_text(CRM.replace("CRM_TOKEN", "CRM_BEARER"), encoding="utf-8")
    monkeypatch.setenv("CRM_BEARER", "Bearer t0ken")
    before = dump(tmp_path / "seqrun.db")
    code, out, err = run("run", "--once")
    assert (code, out) == (1, "")
    assert err.endswith(
        f"{crm}:2:7: error: 1 running lead of sequence crm runs an earlier version whose step sync needs environment "
        "variable CRM_TOKEN (for header Authorization), which is not set; set it, or move the lead with "
        "`seqrun leads migrate --sequence crm`\n"
        "error: set the environment variables above and start seqrun run again; the leads of these sequences "
        "would stop at these steps\n")
    assert dump(tmp_path / "seqrun.db") == before  # nothing moved
