"""`seqrun simulate --wire --provider salesflow` on seed 000's two sequences, at small sizes: clean
audits that agree with the fake's ledger, first messages where seed 000 puts them, markers moved only
after their syncs finished, and shuffled or repeated webhook pages changing nothing."""
from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest

from runner import wire
from runner.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
WITH_NOTE = str(ROOT / "sequences" / "connect-with-note.yaml")
NO_NOTE = str(ROOT / "sequences" / "connect-no-note.yaml")
ARGS = ("--leads", "30", "--days", "7", "--start", "2026-03-02", "--seed", "4", "--json", "--wire",
        "--provider", "salesflow")


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["simulate", *args])
    out = capsys.readouterr()
    assert (code, out.err) == (0, "")
    return json.loads(out.out)


def checked(report: dict[str, Any]) -> dict[str, Any]:
    assert report["violations"] == []
    w = report["wire"]
    assert w["providers"] == ["salesflow"] and w["mismatches"] == []
    assert w["ledger_actions"] == w["audit_actions"] > 0
    assert w["webhooks"]["received"] > 0 and "refused" not in w["webhooks"]
    checks = w["checks"]["salesflow"]
    assert checks["syncs"]["asked"] == checks["syncs"]["finished"] == checks["syncs"]["marker_moves"] > 0
    return checks


def test_with_a_note_first_messages_go_into_the_invites_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    checks = checked(simulate(capsys, WITH_NOTE, *ARGS))
    first = checks["first_messages"]
    assert first["into_invite_thread"] > 0
    assert checks["webhooks_sent"]["new_connection"] > 0


def test_without_a_note_every_first_message_creates_the_conversation(capsys: pytest.CaptureFixture[str]) -> None:
    checks = checked(simulate(capsys, NO_NOTE, *ARGS))
    first = checks["first_messages"]
    assert first["into_invite_thread"] == 0 and first["created"] > 0


@pytest.mark.parametrize("sequence", [WITH_NOTE, NO_NOTE])
def test_shuffled_and_repeated_pages_change_nothing(sequence: str, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from runner.providers.salesflow.fake import SalesflowFake

    def fake_with(reorder: float, duplicate: float) -> Any:
        return lambda clock, seed, sandbox: SalesflowFake(clock=clock, seed=seed, enforce_limits=False,
                                                          auto_pump=False, sandbox=sandbox, reorder_rate=reorder,
                                                          duplicate_rate=duplicate)

    reports = []
    for reorder, duplicate in ((0.0, 0.0), (1.0, 1.0)):
        monkeypatch.setitem(wire.FAKES, "salesflow", fake_with(reorder, duplicate))
        reports.append(simulate(capsys, sequence, *ARGS))
    calm, chaos = reports
    for part in ("steps", "outcomes", "states", "usage", "accept_to_first_message_hours", "violations"):
        assert chaos[part] == calm[part], part
    assert checked(calm)["webhooks_sent"]["repeated"] == 0
    sent = checked(chaos)["webhooks_sent"]
    assert sent["repeated"] > 0 and sent["reordered_syncs"] == checked(chaos)["syncs"]["asked"]
    assert checked(chaos)["first_messages"] == checked(calm)["first_messages"]


def test_the_text_report_names_the_seed_000_checks(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", WITH_NOTE, "--leads", "12", "--days", "4", "--start", "2026-03-02", "--wire",
                 "--provider", "salesflow"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    (line,) = [x for x in out if x.startswith("Wire: ")]
    assert line.startswith("Wire: salesflow over HTTP on 127.0.0.1, ") and line.endswith(
        "; they agree, none performed twice")
    (hooks,) = [x for x in out if x.startswith("Webhooks received on 127.0.0.1: ")]
    assert " verified, 0 refused, " in hooks
    (syncs,) = [x for x in out if x.startswith("Salesflow inbox syncs: ")]
    assert syncs.endswith("each time after its sync finished")
    assert [x for x in out if x.startswith("Salesflow first messages: ")]
