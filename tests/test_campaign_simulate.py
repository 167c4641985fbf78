"""`seqrun simulate --wire --provider salesflow-campaign` of the shipped example: members imported
through the real driver into the fake's campaigns, the campaigns invite and message on their own,
connections and replies come back by webhook (set up through the driver, verified by the shared
receiver) and, for the deliveries the fake loses on purpose, by polling; the ledger agrees with the
audit log, the audit is clean."""
from __future__ import annotations

import json
import pathlib

import pytest

from runner.cli.main import main

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
    polled, hooked = wire["events"]["poll"], wire["events"]["webhook"]
    assert min(polled["accepted"], polled["replied"], hooked["accepted"], hooked["replied"]) > 0
    assert wire["webhooks"].get("refused", 0) == 0
    assert wire["webhooks"]["received"] == hooked["accepted"] + hooked["replied"]
    steps = {s["id"]: s for s in report["steps"]}
    assert steps["join"]["done"] == 12
    assert steps["mark_connected"]["done"] == steps["crm"]["done"] == polled["accepted"] + hooked["accepted"]
    assert steps["hand_over"]["done"] == report["outcomes"]["handed_over"] == polled["replied"] + hooked["replied"]
    assert report["violations"] == []


def test_the_text_report_names_the_events(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", EXAMPLE, *ARGS]) == 0
    out = capsys.readouterr().out.splitlines()
    (wire,) = [x for x in out if x.startswith("Wire: ")]
    assert wire.startswith("Wire: salesflow-campaign over HTTP on 127.0.0.1, ")
    assert wire.endswith("the fake's ledger has 12 actions, the audit log 12; they agree, none performed twice")
    polling, webhook = [x for x in out if x.startswith("Events from the fakes")]
    assert polling.startswith("Events from the fakes by polling: ") and " accepted, " in polling
    assert webhook.startswith("Events from the fakes by webhook: ") and " accepted, " in webhook
    (received,) = [x for x in out if x.startswith("Webhooks received on 127.0.0.1: ")]
    assert " 0 refused" in received
    assert out[-1].startswith("Audit: no action outside its window")
