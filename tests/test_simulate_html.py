"""`seqrun simulate --html`: one self-contained HTML file with its plots."""
from __future__ import annotations

import pathlib
import re

from runner.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SEQUENCE = ROOT / "sequences" / "two-senders-ab.yaml"


def test_the_report_is_one_self_contained_file_with_every_plot(tmp_path, capsys):
    out = tmp_path / "report.html"
    code = main(["simulate", str(SEQUENCE), "--leads", "120", "--days", "14", "--start", "2026-01-05",
                 "--html", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.err.endswith(f"wrote the HTML report to {out}\n")
    html = out.read_text(encoding="utf-8")
    # Nothing to fetch: no external script, style sheet, image or font.
    assert not re.search(r'<(script|link|img|iframe)\b', html)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    for section in ("funnel", "outcomes", "usage", "queue", "accept", "ab", "audit"):
        assert f'id="{section}"' in html, section
    assert html.count("<svg") >= 7
    assert "No action outside its window, no limit exceeded, nothing sent after a reply, nothing sent twice." in html
    assert 'daily limit 20' in html  # the connect limit of seqrun.yaml's senders, drawn on their charts


def test_the_report_never_replaces_a_file_seqrun_owns(tmp_path, capsys, monkeypatch):
    project = tmp_path / "project"
    (project / "sequences").mkdir(parents=True)
    (project / "sequences" / "s.yaml").write_text(SEQUENCE.read_text(encoding="utf-8"), encoding="utf-8")
    (project / "templates").mkdir()
    for template in (ROOT / "templates").iterdir():
        (project / "templates" / template.name).write_text(template.read_text(encoding="utf-8"), encoding="utf-8")
    (project / "seqrun.yaml").write_text((ROOT / "seqrun.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(project)
    before = (project / "seqrun.yaml").read_text(encoding="utf-8")
    code = main(["simulate", "sequences/s.yaml", "--leads", "5", "--days", "1", "--html", "seqrun.yaml"])
    assert code == 1
    assert (project / "seqrun.yaml").read_text(encoding="utf-8") == before
    assert capsys.readouterr().err == ("error: will not write the HTML report to seqrun.yaml: it is the project's "
                                       "configuration; choose another file\n")
