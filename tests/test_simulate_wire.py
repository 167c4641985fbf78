"""`seqrun simulate --wire --provider edges`: the Edges driver against its fake over HTTP gives the
same campaign as the sandbox simulation, and the fake's ledger agrees with seqrun's audit log."""
from __future__ import annotations

import json
import pathlib

import pytest

from runner.cli.main import main
from runner.providers import CAPABILITIES
from runner.wire import FAKES

ROOT = pathlib.Path(__file__).resolve().parent.parent
EDGES = str(ROOT / "sequences" / "edges-full-flow.yaml")
ARGS = ("--leads", "16", "--days", "7", "--start", "2026-03-02", "--seed", "5", "--json")


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict, str]:
    code = main(["simulate", *args])
    out = capsys.readouterr()
    return code, json.loads(out.out) if out.out.startswith("{") else {}, out.err


def test_wire_simulation_matches_the_sandbox_and_the_ledger_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    code, plain, _ = simulate(capsys, EDGES, *ARGS)
    assert code == 0
    code, wired, err = simulate(capsys, EDGES, *ARGS, "--wire", "--provider", "edges")
    assert (code, err) == (0, "")
    for part in ("steps", "outcomes", "states", "usage", "accept_to_first_message_hours", "violations"):
        assert wired[part] == plain[part], part
    wire = wired["wire"]
    assert wire["providers"] == ["edges"] and wire["mismatches"] == []
    assert wire["ledger_actions"] == wire["audit_actions"] > 0
    assert wire["requests"] > wire["ledger_actions"]


def test_the_text_report_says_the_ledger_agrees(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", EDGES, "--leads", "6", "--days", "3", "--start", "2026-03-02", "--wire",
                 "--provider", "edges"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    (line,) = [x for x in out if x.startswith("Wire: ")]
    assert line.startswith("Wire: edges over HTTP on 127.0.0.1, ")
    assert line.endswith("; they agree, none performed twice")


def test_provider_needs_wire_and_a_fake(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", EDGES, "--provider", "edges"]) == 2
    assert "--provider needs --wire" in capsys.readouterr().err
    # A provider seqrun knows but ships no fake for (whichever that is in this version).
    missing = [name for name in sorted(CAPABILITIES) if name != "sandbox" and name not in FAKES]
    if not missing:
        return
    args = ["--wire", "--provider", missing[0], "--leads", "2", "--days", "1"]
    assert main(["simulate", str(ROOT / "sequences" / "connect-no-note.yaml"), *args]) == 1
    assert capsys.readouterr().err == (f"error: --provider {missing[0]}: no fake server for it in this version "
                                       f"(available: {', '.join(sorted(FAKES))})\n")


def test_wire_without_http_senders_says_nothing_went_over_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", EDGES, "--leads", "3", "--days", "1", "--start", "2026-03-02", "--wire"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [x for x in out if x.startswith("Wire: ")] == [
        "Wire: every sender acts through the sandbox; nothing went over HTTP (try --provider edges)"]
