"""`seqrun render` on the fixture project: awkward leads, selection options, JSON, failures."""
from __future__ import annotations

import json
import os
import pathlib
import shutil

import pytest

from runner.cli.main import main

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "templates" / "project"
SEQ = "sequences/preview.yaml"


@pytest.fixture(autouse=True)
def in_fixture_project(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURE)


def render(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["render", SEQ, "--leads", "leads.csv", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_non_latin_lead_renders_every_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys, "--row", "4")
    assert (code, err) == (0, "")
    assert out == """\
=== row 4: https://www.linkedin.com/in/li-lei ===

--- connect: note from note.j2 (124 of 300 characters)
Hi 李雷, I'm talking with operations leaders about CRM data quality and would like to hear how 腾讯 handles it. Glad to connect!

--- thanks: message with_note from thanks.j2 (97 of 8000 characters)
Hi 李雷, thanks for accepting!

As I mentioned in my note, I'm comparing notes on CRM data quality.

--- thanks: message without_note from intro.j2 (91 of 8000 characters)
Hi 李雷,

I'm reaching out to a few operations leaders like you at 腾讯 about CRM data quality.

--- bump: message variant short from short.j2 (54 of 8000 characters)
Hi 李雷, quick question: how do you keep CRM data clean?

--- inmail: InMail from inmail.j2 (91 of 8000 characters)
Subject: CRM data at 腾讯
Hi 李雷, I work with operations leaders on CRM data quality. Would a short summary be useful?
"""


def test_empty_first_name_fails_inline_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys, "--row", "3", "--step", "thanks")
    assert code == 1
    assert out == """\
=== row 3: https://www.linkedin.com/in/no-name-lead ===

--- thanks: message with_note from thanks.j2 (100 of 8000 characters)
Hi there, thanks for accepting!

As I mentioned in my note, I'm comparing notes on CRM data quality.

--- thanks: message without_note from intro.j2: CANNOT BE SENT
error: message from intro.j2 has a greeting without a name: "Hi ," (is the name empty for this lead? use | fallback("there"))
"""
    assert err == "error: 1 of 2 texts cannot be sent (see above)\n"


def test_very_long_company_name_overflows_the_note(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys, "--row", "5", "--step", "connect")
    assert code == 1
    assert out == (
        "=== row 5: linkedin.com/in/long-company ===\n\n"
        "--- connect: note from note.j2: CANNOT BE SENT\n"
        "error: connect note from note.j2 is 330 characters; LinkedIn allows 300\n"
    )
    assert err == "error: 1 of 1 text cannot be sent (see above)\n"


def test_all_rows_render_and_failures_are_counted(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = render(capsys)
    assert code == 1
    assert [line for line in out.splitlines() if line.startswith("=== ")] == [
        "=== row 2: https://www.linkedin.com/in/jane-doe ===",
        "=== row 3: https://www.linkedin.com/in/no-name-lead ===",
        "=== row 4: https://www.linkedin.com/in/li-lei ===",
        "=== row 5: linkedin.com/in/long-company ===",
        "=== row 6: https://www.linkedin.com/in/oneil ===",
    ]
    assert out.count("--- ") == 25
    assert "Hi O'Neil, quick question: how do you keep CRM data clean?" in out
    assert "Hi Jane, thanks for accepting!" in out  # "Dr. Jane van der Berg"
    assert err == "error: 2 of 25 texts cannot be sent (see above)\n"


def test_all_variants(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(capsys, "--row", "4", "--step", "bump", "--all-variants")
    assert code == 0
    assert [line for line in out.splitlines() if line.startswith("--- ")] == [
        "--- bump: message variant short from short.j2 (54 of 8000 characters)",
        "--- bump: message variant story from story.j2 (118 of 8000 characters)",
    ]


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = render(capsys, "--step", "connect", "--format", "json")
    assert code == 1
    items = json.loads(out)
    assert [(i["row"], i["length"], i["error"]) for i in items] == [
        (2, 128, None), (3, 132, None), (4, 124, None),
        (5, None, "connect note from note.j2 is 330 characters; LinkedIn allows 300"), (6, 135, None),
    ]
    assert items[2] == {
        "row": 4, "lead": "https://www.linkedin.com/in/li-lei", "step": "connect", "kind": "note", "case": None,
        "variant": None, "template": "note.j2", "subject": None,
        "text": "Hi 李雷, I'm talking with operations leaders about CRM data quality and would like to hear how 腾讯 "
                "handles it. Glad to connect!",
        "length": 124, "limit": 300, "error": None,
    }


@pytest.mark.parametrize(("args", "message"), [
    (("--step", "nope"), 'error: sequences/preview.yaml has no step "nope"; steps that send text: connect, thanks, '
                         "bump, inmail"),
    (("--step", "accepted"), 'error: step "accepted" sends no text; steps that do: connect, thanks, bump, inmail'),
    (("--row", "9"), "error: leads.csv has no lead in row 9; leads are in rows 2 to 6"),
    (("--sender", "bob"), 'error: no sender "bob" for preview; senders: sandbox'),
])
def test_bad_selection(capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:
    code, out, err = render(capsys, *args)
    assert (code, out, err) == (1, "", message + "\n")


def test_row_1_is_the_header(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = render(capsys, "--row", "1")
    assert code == 2
    assert "Invalid value for '--row'" in err


def copy_project(tmp_path: pathlib.Path) -> pathlib.Path:
    shutil.copytree(FIXTURE, tmp_path / "project")
    return tmp_path / "project"


def test_rows_with_csv_errors_are_reported_and_skipped(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    (project / "leads.csv").write_text(
        "linkedin_profile_url,full_name\nhttps://example.com/jane,Jane\nhttps://www.linkedin.com/in/bob,Bob\n",
        encoding="utf-8")
    monkeypatch.chdir(project)
    code, out, err = render(capsys, "--step", "connect")
    assert code == 1
    assert out == (
        "=== row 3: https://www.linkedin.com/in/bob ===\n\n"
        "--- connect: note from note.j2 (132 of 300 characters)\n"
        "Hi Bob, I'm talking with operations leaders about CRM data quality and would like to hear how your team "
        "handles it. Glad to connect!\n"
    )
    assert err == (
        'leads.csv:2: error: row 2: linkedin_profile_url "https://example.com/jane" is not a LinkedIn profile URL '
        '(host "example.com" is not linkedin.com)\n'
        "error: there are errors (see above)\n"
    )


def test_sender_comes_from_seqrun_yaml(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    (project / "seqrun.yaml").write_text(
        "version: 1\nsenders:\n"
        "  - {name: alice, provider: sandbox, account_id: acc-alice, full_name: Alice Example}\n"
        "  - {name: bob, provider: sandbox, account_id: acc-bob}\n", encoding="utf-8")
    (project / "templates" / "short.j2").write_text("Thanks,\n{{ sender.full_name }}\n", encoding="utf-8")
    monkeypatch.chdir(project)
    code, out, _ = render(capsys, "--row", "2", "--step", "bump", "--all-variants")
    assert code == 0
    assert "--- bump: message variant short from short.j2 (21 of 8000 characters)\nThanks,\nAlice Example\n" in out
    # Without a configured full name the sender's name stands in, as the engine sends it.
    code, out, _ = render(capsys, "--row", "2", "--step", "bump", "--all-variants", "--sender", "bob")
    assert code == 0
    assert "--- bump: message variant short from short.j2 (11 of 8000 characters)\nThanks,\nbob\n" in out


def test_template_lint_problems_go_to_stderr(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    (project / "templates" / "story.j2").write_text("{% if replied %}{{ lead.title }}{% endif %}Hello there\n",
                                                    encoding="utf-8")
    monkeypatch.chdir(project)
    code, out, err = render(capsys, "--row", "2", "--step", "bump", "--all-variants")
    assert code == 1
    assert "Hello there" in out  # the branch is not taken, so the text renders
    assert err == (
        "templates/story.j2:1:1: error: lead.title is not a declared field (used by step bump of sequence preview); "
        "declared fields: linkedin_profile_url, full_name, company_name (add it under `fields:`)\n"
        "error: there are errors (see above)\n"
    )


def test_invalid_sequence_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    (project / SEQ).write_text("version: 1\nname: preview\nsteps:\n  - {action: message, template: gone.j2}\n",
                               encoding="utf-8")
    monkeypatch.chdir(project)
    code, out, err = render(capsys)
    assert (code, out) == (1, "")
    assert err == (
        f'sequences/preview.yaml:4:33: error: steps[id=start].template: template "gone.j2" not found in '
        f"templates{os.sep}\n"
        "error: fix the errors above first (see `seqrun validate`)\n"
    )


def test_a_stray_quote_is_refused_and_nothing_is_rendered(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    rows = [f"https://www.linkedin.com/in/lead-{i},Lead {i},Co\n" for i in range(22)]
    (project / "leads.csv").write_text("linkedin_profile_url,full_name,company_name\n" + "".join(rows[:2])
                                       + 'https://www.linkedin.com/in/jane-doe,"Jane Doe,Acme\n' + "".join(rows[2:]),
                                       encoding="utf-8")
    monkeypatch.chdir(project)
    assert render(capsys, "--step", "connect") == (1, "", (
        'leads.csv:4: error: row 4: the quote (") that opens the cell in column full_name is never closed, so the '
        "cell runs to the end of the file and takes in 20 more lines; close the quote, or remove it\n"
        "error: nothing rendered: leads.csv cannot be read as a lead list\n"))


def test_a_config_without_senders_is_a_user_error(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    project = copy_project(tmp_path)
    (project / "seqrun.yaml").write_text("version: 1\n", encoding="utf-8")
    monkeypatch.chdir(project)
    message = ('seqrun.yaml: error: no senders are defined, so nobody can send for sequence "preview"; add one '
               "under `senders:` (see docs/config.md)\n")
    assert render(capsys, "--row", "2") == (1, "", message)
    # validate --leads would render nothing then: that is an error at the config, not "ok".
    assert main(["validate", "--leads", "leads.csv", SEQ]) == 1
    assert capsys.readouterr().out == message + "1 error in 1 file\n"
