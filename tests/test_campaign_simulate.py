"""`seqrun simulate --wire --provider salesflow-campaign` of the shipped example: members imported
through the real driver into the fake's campaigns, the campaigns invite and message on their own,
connections and replies come back by polling, the ledger agrees with the audit log, the audit is
clean."""
from __future__ import annotations

import json
import pathlib

import pytest

from runner.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "sequences" / "salesflow-campaign.yaml")
ARGS = ("--leads", "12", "--days", "14", "--start", "2026-03-02", "--seed", "5", "--accept-rate", "0.8",
        "--reply-rate", "0.6", "--wire", "--provider", "salesflow-campaign")


def test_the_example_runs_through_the_campaign_fake(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", EXAMPLE, *ARGS, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    wire = report["wire"]
    assert wire["providers"] == ["salesflow-campaign"] and wire["mismatches"] == []
    assert wire["ledger_actions"] == wire["audit_actions"] == 12  # every lead imported once
    polled = wire["events"]["poll"]
    assert polled["accepted"] > 0 and polled["replied"] > 0
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["join"]["done"] == 12
    assert steps["mark_connected"]["done"] == steps["crm"]["done"] == polled["accepted"]
    assert steps["hand_over"]["done"] == report["outcomes"]["handed_over"] == polled["replied"]
    assert report["violations"] == []


def test_the_text_report_names_the_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", EXAMPLE, *ARGS]) == 0
    out = capsys.readouterr().out.splitlines()
    (wire,) = [x for x in out if x.startswith("Wire: ")]
    assert wire.startswith("Wire: salesflow-campaign over HTTP on 127.0.0.1, ")
    assert wire.endswith("the fake's ledger has 12 actions, the audit log 12; they agree, none performed twice")
    (events,) = [x for x in out if x.startswith("Events from the fakes")]
    assert events.startswith("Events from the fakes by polling: ") and " accepted, " in events and "replied" in events
    assert out[-1].startswith("Audit: no action outside its window")
