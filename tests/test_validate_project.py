"""validate across a project: sender names against seqrun.yaml; duration units in any case."""
from __future__ import annotations

import pathlib

import pytest

from runner.cli.main import main

CONFIG = """\
version: 1
senders:
  - {name: alice, provider: sandbox, account_id: acc-alice}
  - {name: bob, provider: sandbox, account_id: acc-bob}
"""


@pytest.fixture()
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_unknown_sender_is_an_error_at_its_position(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sequences" / "a.yaml").write_text(
        "version: 1\nname: a\nsenders: [alice, carol]\nsteps:\n  - {action: visit}\n", encoding="utf-8")
    assert main(["validate", "sequences"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        'sequences/a.yaml:3:18: error: senders: "carol" is not a sender in seqrun.yaml (defined: alice, bob)',
        "1 error in 1 file",
    ]


def test_known_senders_and_capitalised_units_are_fine(project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "sequences" / "a.yaml").write_text(
        "version: 1\nname: a\nsenders: [bob]\nsteps:\n  - {action: visit}\n  - wait: 3 Days\n"
        "  - wait: 2 Business Days\n", encoding="utf-8")
    assert main(["validate", "sequences"]) == 0
    assert capsys.readouterr().out.splitlines() == ["1 file ok"]


def test_the_problems_of_seqrun_yaml_are_reported_whatever_the_sequences_say(
        project: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    # run, leads and simulate refuse this seqrun.yaml: validate (in CI) must not call the project ok,
    # although no sequence names a sender.
    carl = "  - {name: carl, provider: sandbox, account_id: acc-carl, limits: {connect: 40}}\n"
    (project / "seqrun.yaml").write_text(CONFIG + carl + "sandbox:\n  accept_delay_hours: [10, 1]\n",
                                         encoding="utf-8")
    (project / "sequences" / "a.yaml").write_text("version: 1\nname: a\nsteps:\n  - {action: visit}\n",
                                                  encoding="utf-8")
    warned = ("seqrun.yaml:5:77: warning: senders[name=carl].limits.connect: 40 is above LinkedIn's documented "
              "ceiling of 25 connects a day for classic accounts; the account risks restrictions")
    assert main(["validate", "sequences"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        warned,
        "seqrun.yaml:7:23: error: sandbox.accept_delay_hours: the median (10) is above the maximum (1); write "
        "[median, max] in hours",
        "1 error, 1 warning in 1 file",
    ]
    (project / "seqrun.yaml").write_text(CONFIG + carl, encoding="utf-8")
    (project / "sequences" / "b.yaml").write_text("version: 1\nname: b\nsenders: [carl]\nsteps:\n"
                                                  "  - {action: visit}\n", encoding="utf-8")
    assert main(["validate", "sequences"]) == 0
    assert capsys.readouterr().out.splitlines() == [warned, "1 warning in 2 files"]  # once, for both files
