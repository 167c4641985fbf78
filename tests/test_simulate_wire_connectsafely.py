"""`seqrun simulate --wire --provider connectsafely`: the ConnectSafely driver against its fake over
HTTP keeps the weekly invitation quota (shown per week, not per day), sends every first message after
a noted invite into that invite's conversation, and the fake's ledger agrees with the audit log."""
from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import pathlib
import shutil
from contextlib import redirect_stdout
from typing import Any

import pytest

from runner.cli.commands.simulate import format_report
from runner.cli.main import main
from runner.simulate import SimReport

ROOT = pathlib.Path(__file__).resolve().parent.parent
NOTED = ROOT / "sequences" / "connect-with-note.yaml"
WIRE = ("--start", "2026-03-02", "--seed", "5", "--wire", "--provider", "connectsafely", "--json")


def simulate(sequence: pathlib.Path, *args: str) -> dict[str, Any]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = main(["simulate", str(sequence), *args, *WIRE])
    assert code == 0
    return json.loads(out.getvalue())


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    """The shipped sequence as it is, over the wire for a working week."""
    return simulate(NOTED, "--leads", "120", "--days", "5")


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shipped sequence at 25 invitations a day (LinkedIn's classic ceiling): 125 a working week,
    more than ConnectSafely's 90. Senders in Berlin and New York, 130 leads each."""
    root = tmp_path_factory.mktemp("tight")
    shutil.copytree(ROOT / "templates", root / "templates")
    (root / "sequences").mkdir()
    text = NOTED.read_text(encoding="utf-8")
    assert "connect: {daily: 20, min_gap: 10 minutes}" in text
    (root / "sequences" / "noted.yaml").write_text(
        text.replace("connect: {daily: 20, min_gap: 10 minutes}", "connect: {daily: 25, min_gap: 1 minute}"),
        encoding="utf-8")
    (root / "seqrun.yaml").write_text(
        "version: 1\nsenders:\n"
        "  - {name: alice, provider: sandbox, account_id: acc-alice, timezone: Europe/Berlin}\n"
        "  - {name: bob, provider: sandbox, account_id: acc-bob, timezone: America/New_York}\n", encoding="utf-8")
    return simulate(root / "sequences" / "noted.yaml", "--leads", "260", "--days", "5")


def test_the_shipped_sequence_runs_clean_over_the_wire(shipped: dict[str, Any]) -> None:
    assert shipped["violations"] == []
    wire = shipped["wire"]
    assert wire["providers"] == ["connectsafely"] and wire["mismatches"] == []
    assert wire["ledger_actions"] == wire["audit_actions"] > 0
    assert wire["requests"] > wire["ledger_actions"]
    checks = wire["checks"]["connectsafely"]
    assert checks["first_messages_after_noted_invite"] > 5
    assert checks["into_the_invite_conversation"] == checks["first_messages_after_noted_invite"]
    assert checks["connects_per_week_max"] <= 90 and checks["refused_over_quota"] == {}


def test_the_weekly_quota_binds_and_is_never_asked_past(tight: dict[str, Any]) -> None:
    assert tight["violations"] == [] and tight["wire"]["mismatches"] == []
    weeks = tight["provider_quotas"]
    assert [(q["sender"], q["action"], q["window"], q["period"], q["used"], q["limit"]) for q in weeks] == [
        ("alice", "connect", "2026-03-02", "week", 90, 90), ("bob", "connect", "2026-03-02", "week", 90, 90)]
    checks = tight["wire"]["checks"]["connectsafely"]
    assert (checks["connects_per_week_max"], checks["refused_over_quota"]) == (90, {})
    daily = [u for u in tight["usage"] if u["action"] == "connect"]
    assert all(u["used"] <= u["limit"] == 25 for u in daily)
    assert sum(u["used"] for u in daily if u["sender"] == "alice") == 90  # not the 125 the daily limits allow
    assert checks["into_the_invite_conversation"] == checks["first_messages_after_noted_invite"] > 10


def test_the_text_report_shows_the_quota_as_a_week(tight: dict[str, Any]) -> None:
    fields = {f.name for f in dataclasses.fields(SimReport)}
    report = SimReport(**{k: v for k, v in tight.items() if k in fields and k not in ("start", "end")},
                       start=dt.datetime.fromisoformat(tight["start"]), end=dt.datetime.fromisoformat(tight["end"]))
    report.quotas, report.booked = tight["provider_quotas"], tight["booked_after_end"]
    report.accept_to_message_hours = tight["accept_to_first_message_hours"]
    out = format_report(report, 5).splitlines()
    start = out.index("Provider quotas per sender (per the provider's window, not per day)")
    assert out[start + 1:start + 4] == [
        "  sender       action    quota                      windows  max used  at quota",
        "  alice        connect   connectsafely 90 a week          1        90         1",
        "  bob          connect   connectsafely 90 a week          1        90         1"]
    assert [x for x in out if x.startswith("Wire (connectsafely): at most")] == [
        "Wire (connectsafely): at most 90 invitations in any week per account (quota 90); asked past a quota: "
        "0 time(s)"]
    (line,) = [x for x in out if x.startswith("Wire: ")]
    assert line.endswith("; they agree, none performed twice")
