"""A lead's text never reaches a terminal raw: control characters and bidi overrides are escaped."""
from __future__ import annotations

import json
import pathlib
import shutil
import sqlite3
from collections.abc import Iterator

import pytest

from runner.cli.main import main
from runner.language.diagnostics import error, format_json, format_text
from runner.terminal import json_printable, printable
from test_export_safety import build_db
from test_render_cli import FIXTURE

HOSTILE = "Jane\x1b]0;pwned\x07 \x1b[2JDoe\r\x9b31m\u202etxt.exe"
SHOWN = "Jane\\x1b]0;pwned\\x07 \\x1b[2JDoe\\r\\x9b31m\\u202etxt.exe"


def test_printable_escapes_controls_and_keeps_ordinary_text() -> None:
    assert printable(HOSTILE) == SHOWN
    assert printable("Zoë Ünal, 李雷\tCo") == "Zoë Ünal, 李雷\tCo"
    assert printable("two\nlines") == "two\\nlines"
    assert printable("two\nlines\x1b", multiline=True) == "two\nlines\\x1b"


def test_json_printable_escapes_what_json_leaves_raw() -> None:
    text = json.dumps({"name": HOSTILE}, ensure_ascii=False)
    assert "\x9b" in text and "\u202e" in text  # json.dumps escapes C0 only
    shown = json_printable(text)
    assert json.loads(shown) == {"name": HOSTILE}
    assert not any(c in shown for c in "\x1b\x07\r\x9b\u202e")


def test_diagnostics_print_escaped() -> None:
    diag = error("leads.csv", 2, 0, f'row 2: linkedin_profile_url "{HOSTILE}" is not a LinkedIn profile URL')
    assert format_text([diag]) == f'leads.csv:2: error: row 2: linkedin_profile_url "{SHOWN}" is not a LinkedIn ' \
                                  "profile URL"
    assert json.loads(format_json([diag]))[0]["message"].startswith(f'row 2: linkedin_profile_url "{HOSTILE}"')
    assert "\x9b" not in format_json([diag])


@pytest.fixture
def hostile_db(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pathlib.Path]:
    """A project whose database holds a lead with hostile text (imported before imports refused it)."""
    (tmp_path / "seqrun.yaml").write_text("version: 1\ndatabase: seqrun.db\nsenders:\n"
                                          "  - {name: alice, provider: sandbox, account_id: acc-alice}\n")
    build_db(tmp_path / "seqrun.db", leads=2)
    with sqlite3.connect(tmp_path / "seqrun.db") as conn:
        conn.execute("UPDATE lead SET fields = ? WHERE id = 1", (json.dumps({"full_name": HOSTILE}),))
        conn.execute("UPDATE enrollment SET state = 'failed', outcome = 'failed', last_error = ? WHERE id = 1",
                     (f"provider said: {HOSTILE}",))
        conn.execute("UPDATE enrollment SET state = 'paused', paused_reason = ? WHERE id = 2", (HOSTILE,))
    conn.close()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    yield tmp_path


def output(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    assert main(list(args)) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    return captured.out


@pytest.mark.parametrize("args", [("leads", "list"), ("leads", "list", "--json"), ("status",), ("status", "--json")])
def test_leads_list_and_status_never_print_raw_control_characters(hostile_db: pathlib.Path,
                                                                  capsys: pytest.CaptureFixture[str],
                                                                  args: tuple[str, ...]) -> None:
    out = output(capsys, *args)
    assert not any(c in out for c in "\x1b\x07\r\x9b\u202e")
    if "--json" in args:
        # The data is intact for programs reading it: only its spelling in the document changed.
        assert json.dumps(HOSTILE, ensure_ascii=False)[1:-1] in json.dumps(json.loads(out), ensure_ascii=False)
    else:
        assert SHOWN in out


def test_leads_list_table_shows_the_escaped_name(hostile_db: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = output(capsys, "leads", "list").splitlines()
    assert lines[1].split("  ")[:2] == ["https://www.linkedin.com/in/lead-0", SHOWN]


def test_render_escapes_control_characters_from_templates(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    shutil.copytree(FIXTURE, project)
    note = project / "templates" / "note.j2"
    note.write_text("Hi {{ lead.full_name | first_name }}\x1b]0;pwned\x07, glad to connect!\n", encoding="utf-8")
    monkeypatch.chdir(project)
    main(["render", "sequences/preview.yaml", "--leads", "leads.csv", "--row", "2", "--step", "connect"])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "Hi Jane\\x1b]0;pwned\\x07, glad to connect!" in out
