"""`seqrun validate` through the real command line: output formats, summary, exit codes, options."""
from __future__ import annotations

import json
import pathlib

import pytest
from click.testing import CliRunner

from runner.cli.main import cli, main
from runner.language.diagnostics import error
from runner.language.model import Sequence

GOOD = "version: 1\nname: {name}\nsteps:\n  - action: visit\n"
WARNS = "version: 1\nname: {name}\nlimits: {{visit: 100}}\nsteps:\n  - action: visit\n"
BAD = "version: 1\nname: {name}\nsteps:\n  - action: visit\n  - wait: 3 dayz\n  - {{action: connect, goto: nowhere}}\n"


@pytest.fixture
def proj(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An empty project as the working directory, with template lint switched off."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "seq").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("runner.language.templates.check_sequence_templates", lambda seq: [])
    return tmp_path


def write(proj: pathlib.Path, **files: str) -> None:
    for name, template in files.items():
        (proj / "seq" / f"{name}.yaml").write_text(template.format(name=name), encoding="utf-8")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_all_ok(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, a=GOOD, b=GOOD, c=GOOD)
    assert run(capsys, "seq") == (0, "3 files ok\n", "")


def test_errors_and_warnings(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, a=GOOD, b=BAD, c=WARNS)
    code, out, err = run(capsys, "seq/")
    assert code == 1
    assert err == ""
    assert out.splitlines() == [
        'seq/b.yaml:5:11: error: steps[id=start+1].wait: expected a duration like "3 days", "2 business days", '
        '"90 minutes" or "P3D", got "3 dayz"',
        "seq/c.yaml:3:17: warning: limits.visit: 100 per day is above LinkedIn's documented classic-account "
        "ceiling of 80 per day",
        "1 error, 1 warning in 3 files",
    ]


def test_value_and_semantic_errors_of_one_file_come_together(proj: pathlib.Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, b=BAD.replace("3 dayz", "0 days"))
    code, out, _ = run(capsys, "seq/b.yaml")
    assert code == 1
    assert out.splitlines() == [
        'seq/b.yaml:5:11: error: steps[id=start+1].wait: a duration must be longer than zero, got "0 days"',
        'seq/b.yaml:6:29: error: steps[id=start+2].goto: unknown step "nowhere"',
        "2 errors in 1 file",
    ]


def test_warnings_pass_unless_strict(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, c=WARNS)
    code, out, _ = run(capsys, "seq/c.yaml")
    assert (code, out.splitlines()[-1]) == (0, "1 warning in 1 file")
    code, out, _ = run(capsys, "--strict", "seq/c.yaml")
    assert (code, out.splitlines()[-1]) == (1, "1 warning in 1 file")


def test_json(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, b=BAD, c=WARNS)
    code, out, err = run(capsys, "--format", "json", "seq/b.yaml", "seq/c.yaml", "seq/missing.yaml")
    assert (code, err) == (1, "")
    found = json.loads(out)
    assert found[0] == {"file": "seq/b.yaml", "line": 5, "column": 11, "severity": "error", "step": "start+1",
                        "message": 'steps[id=start+1].wait: expected a duration like "3 days", "2 business days", '
                                   '"90 minutes" or "P3D", got "3 dayz"'}
    assert [(d["file"], d["severity"], d["step"]) for d in found] == [
        ("seq/b.yaml", "error", "start+1"), ("seq/c.yaml", "warning", None), ("seq/missing.yaml", "error", None)]


def test_json_when_everything_is_fine(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, a=GOOD)
    code, out, _ = run(capsys, "--format", "json", "seq")
    assert (code, json.loads(out)) == (0, [])
    write(proj, c=WARNS)
    code, out, _ = run(capsys, "--format", "json", "--strict", "seq")
    assert (code, len(json.loads(out))) == (1, 1)


def test_paths_are_shown_as_given(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, b=BAD)
    _, out, _ = run(capsys, "./seq")
    assert out.startswith("./seq/b.yaml:5:11: error: ")
    _, out, _ = run(capsys, str(proj / "seq" / "b.yaml"))
    assert out.startswith(f"{proj / 'seq' / 'b.yaml'}:5:11: error: ")


def test_missing_path(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "nope.yaml") == (1, "nope.yaml: error: no such file or directory\n1 error in 0 files\n", "")


@pytest.mark.parametrize("args", [[], ["--format", "xml", "seq"], ["--leads", "missing.csv", "seq"], ["--bogus"]])
def test_usage_errors_exit_2(proj: pathlib.Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert "Usage: seqrun validate" in err


def test_template_lint_results_are_reported(proj: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    write(proj, a=GOOD)

    def lint(seq: Sequence) -> list:
        return [error("templates/x.j2", 3, 1, f"lint for {seq.name}", "start")]

    monkeypatch.setattr("runner.language.templates.check_sequence_templates", lint)
    assert run(capsys, "seq") == (1, "templates/x.j2:3:1: error: lint for a\n1 error in 1 file\n", "")


def test_leads_are_checked_for_sequences_without_errors(proj: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    write(proj, a=GOOD, b=BAD, c=WARNS)
    (proj / "leads.csv").write_text("linkedin_profile_url\nhttps://www.linkedin.com/in/x\n", encoding="utf-8")
    calls: list[tuple[str, str]] = []

    def for_leads(seq: Sequence, path: str) -> list:
        calls.append((seq.name, path))
        return [error(path, 2, 0, f"row 2: fails in {seq.name}")]

    monkeypatch.setattr("runner.project.templaterows.check_templates_for_leads", for_leads)
    code, out, _ = run(capsys, "--leads", "leads.csv", "seq")
    assert calls == [("a", "leads.csv"), ("c", "leads.csv")]
    assert code == 1
    assert "leads.csv:2: error: row 2: fails in a" in out.splitlines()


def test_names_must_be_unique(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (proj / "seq" / "one.yaml").write_text(GOOD.format(name="same"))
    (proj / "seq" / "two.yaml").write_text(GOOD.format(name="same"))
    code, out, _ = run(capsys, "seq")
    assert code == 1
    assert out.splitlines()[0] == 'seq/two.yaml:2:7: error: name: sequence name "same" is also used by seq/one.yaml'


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    assert "  Example:\n    seqrun validate sequences/\n" in out


def test_standalone_exit_codes_through_click(proj: pathlib.Path) -> None:
    write(proj, b=BAD)
    result = CliRunner().invoke(cli, ["validate", "seq"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "1 error in 1 file"


def test_ctrl_c_says_interrupted_and_exits_130(proj: pathlib.Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write(proj, a=GOOD)

    def interrupted(seq: Sequence) -> list:
        raise KeyboardInterrupt

    monkeypatch.setattr("runner.language.templates.check_sequence_templates", interrupted)
    code, out, err = run(capsys, "seq")
    assert (code, out) == (130, "")
    assert err.strip() == "Interrupted."


def test_missing_template_is_reported_once_with_real_template_lint(tmp_path: pathlib.Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """The loader and runner.language.templatelint both notice a missing template; the user sees one line."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "seq").mkdir()
    (tmp_path / "seq" / "m.yaml").write_text(GOOD.format(name="m") + "  - {action: message, template: gone.j2}\n")
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "seq") == (1, 'seq/m.yaml:5:33: error: steps[id=start+1].template: template "gone.j2" not '
                                     "found in templates/\n1 error in 1 file\n", "")


def test_leads_with_a_stray_quote_fail_validation(proj: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(proj, a=GOOD)
    rows = [f"https://www.linkedin.com/in/lead-{i},Lead {i}\n" for i in range(17)]
    (proj / "leads.csv").write_text("linkedin_profile_url,full_name\n" + "".join(rows[:5])
                                    + 'https://www.linkedin.com/in/jane-doe,"Jane\n' + "".join(rows[5:]), encoding="utf-8")
    code, out, _ = run(capsys, "--leads", "leads.csv", "seq")
    assert code == 1
    assert out.splitlines()[0] == (
        'leads.csv:7: error: row 7: the quote (") that opens the cell in column full_name is never closed, so the '
        "cell runs to the end of the file and takes in 12 more lines; close the quote, or remove it")
