"""`seqrun status` (text and --json) and `seqrun export actions|events` (csv and jsonl) after real runs."""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import pathlib
import types
from zoneinfo import ZoneInfo

import pytest

from runner.store import Enrollment, db, open_store
from test_run_cli import Clock, Run, clock, run  # noqa: F401 - the project of test_run_cli: three leads

UTC = dt.UTC
ACTIONS_HEADER = ("action_id,lead,lead_key,sender,sequence,step,action,variant,template,status,planned_at_utc,"
                  "planned_at_local,performed_at_utc,performed_at_local,lead_timezone,sender_timezone,relationship,"
                  "conversation,charged,provider_id,conversation_id,"
                  "error_kind,error_message,idempotency_key,content")
EVENTS_HEADER = "event_id,kind,source,occurred_at_utc,received_at_utc,lead,lead_key,sender,sequence,data"
BEN = "https://www.linkedin.com/in/ben-okafor"


@pytest.fixture
def invited(tmp_path: pathlib.Path, clock: Clock, run: Run, monkeypatch: pytest.MonkeyPatch) -> dict[str, dt.datetime]:
    """Each invite sent at its own slot, one run each (returned: lead key -> moment); Chloe's
    acceptance, seen at Anna's slot, gets its thank-you at once; then Ben paused by hand, and two hours
    after the last invite his acceptance polled. `seqrun status` reads its clock as that moment too."""
    assert run("run", "--once")[0] == 0
    open_store(str(tmp_path / "seqrun.db"))
    slots = {e.lead.key: e.due_at for e in Enrollment.select()}
    db.close()
    for at in sorted(slots.values()):
        clock.now = at
        assert run("run", "--once")[0] == 0
    assert run("pause", "--lead", BEN, "--reason", "asked to wait")[0] == 0
    clock.now = max(slots.values()) + dt.timedelta(hours=2)
    assert run("run", "--once")[1] == "0 lead(s) processed; 0 step(s); 1 event(s)\n"

    class Frozen(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return clock.now.astimezone(tz)

    monkeypatch.setattr("runner.cli.commands.status.dt", types.SimpleNamespace(datetime=Frozen, timezone=dt.timezone, UTC=dt.UTC))
    return slots


# --- status ---------------------------------------------------------------------------------------

def test_status_text(invited: dict[str, dt.datetime], run: Run) -> None:
    assert run("status") == (0, (
        "intro: 3 lead(s) (active 1, done 1, paused 1)\n"
        "  step                     leads here   done  skipped  failed  in flight\n"
        "  connect                           0      3        0       0          0\n"
        "  accepted                          1      0        0       0          0\n"
        "  thanks                            1      1        0       0          0\n"
        "  thanks+1                          0      0        0       0          0\n"
        "  ended: messaged 1\n"
        "\n"
        "Today per sender (used / limit)\n"
        "  alice        2026-03-03  visit 0/80  connect 3/25  message 1/50  inmail 0/20  withdraw 0/40\n"
        "\n"
        "Needs attention (1)\n"
        f"  {BEN}  [intro @ accepted] paused: lead paused: asked to wait\n"), "")


def test_status_json(invited: dict[str, dt.datetime], run: Run) -> None:
    code, out, err = run("status", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    version = report["sequences"][0]["versions"][0]["version"]
    assert len(version) == 12 and int(version, 16) >= 0  # the start of the file's hash (runner.versions)
    assert report["sequences"] == [{
        "name": "intro", "loaded": True, "states": {"active": 1, "done": 1, "paused": 1},
        "outcomes": {"messaged": 1},
        "steps": [{"id": "connect", "leads_here": 0, "actions": {"done": 3}},
                  {"id": "accepted", "leads_here": 1, "actions": {}},
                  {"id": "thanks", "leads_here": 1, "actions": {"done": 1}},
                  {"id": "thanks+1", "leads_here": 0, "actions": {}}],
        "versions": [{"version": version, "current": True, "stored_at": "2026-03-03T10:00:00+00:00", "leads": 2,
                      "steps": {"accepted": 1, "thanks": 1}, "steps_not_in_file": []}],
        "on_earlier_versions": 0}]
    assert report["usage_today"] == [{
        "sender": "alice", "status": "active", "paused_reason": None, "day": "2026-03-03",
        "used": {"visit": 0, "connect": 3, "message": 1, "inmail": 0, "withdraw": 0},
        "limits": {"visit": 80, "connect": 25, "message": 50, "inmail": 20, "withdraw": 40}}]
    (attention,) = report["attention"]
    assert {k: v for k, v in attention.items() if k != "since"} == {
        "lead": BEN, "sequence": "intro", "step": "accepted", "state": "paused",
        "reason": "paused: lead paused: asked to wait"}
    assert report["attention_total"] == 1


def test_status_of_an_empty_project(clock: Clock, run: Run, tmp_path: pathlib.Path) -> None:
    (tmp_path / "seqrun.db").unlink()
    code, out, _ = run("status", "--sequence", "intro")
    assert code == 0
    assert out.startswith("no leads yet in sequence intro; import some with `seqrun leads import`\n")


# --- export ---------------------------------------------------------------------------------------

def export(run: Run, *args: str) -> str:
    code, out, err = run("export", *args)
    assert (code, err) == (0, "")
    return out


def test_export_actions_csv(invited: dict[str, dt.datetime], run: Run) -> None:
    out = export(run, "actions")
    lines = out.split("\r\n")
    assert lines[0] == ACTIONS_HEADER
    rows = {r["lead_key"]: r for r in csv.DictReader(io.StringIO(out)) if r["action"] == "connect"}
    assert sorted(rows) == ["anna-meyer", "ben-okafor", "chloe-dubois"]
    ben = rows["ben-okafor"]
    new_york = ZoneInfo("America/New_York")
    assert {k: ben[k] for k in ("lead", "sender", "sequence", "step", "action", "template", "status", "lead_timezone",
                                "planned_at_utc", "planned_at_local", "performed_at_utc", "performed_at_local")} == {
        "lead": BEN, "sender": "alice", "sequence": "intro", "step": "connect", "action": "connect",
        "template": "note.j2", "status": "done", "lead_timezone": "America/New_York",
        "planned_at_utc": invited["ben-okafor"].isoformat(),
        "planned_at_local": invited["ben-okafor"].astimezone(new_york).isoformat(),
        "performed_at_utc": invited["ben-okafor"].isoformat(),
        "performed_at_local": invited["ben-okafor"].astimezone(new_york).isoformat()}
    assert ben["performed_at_local"].endswith("-05:00") and ben["performed_at_utc"].endswith("+00:00")
    # What an auditor needs beside it: the sender's zone (its days), the relationship the connect
    # step checked, and that the invite was charged to the connect limit.
    assert {k: ben[k] for k in ("sender_timezone", "relationship", "conversation", "charged")} == {
        "sender_timezone": "Europe/Berlin", "relationship": "not_connected", "conversation": "", "charged": "True"}
    # The name came from a CSV cell "=HYPERLINK(...)": a spreadsheet must not run it.
    assert ben["content"] == "'=HYPERLINK(\"http://evil.example\"), let's connect."
    assert ben["idempotency_key"].endswith(":connect:0:0") and ben["provider_id"].startswith("inv-")
    chloe = rows["chloe-dubois"]
    assert (chloe["lead_timezone"], chloe["performed_at_local"]) == (
        "Europe/Berlin", invited["chloe-dubois"].astimezone(ZoneInfo("Europe/Berlin")).isoformat())
    assert rows["anna-meyer"]["content"] == "Anna Meyer, let's connect."


def test_export_actions_jsonl_keeps_values_raw(invited: dict[str, dt.datetime], run: Run) -> None:
    rows = [json.loads(line) for line in export(run, "actions", "--format", "jsonl").splitlines()]
    assert [list(r) for r in rows] == [ACTIONS_HEADER.split(",")] * 4  # three invites, Chloe's thank-you
    ben = next(r for r in rows if r["lead_key"] == "ben-okafor")
    assert ben["content"] == "=HYPERLINK(\"http://evil.example\"), let's connect."
    assert isinstance(ben["action_id"], int)


def test_export_events_csv_and_jsonl(invited: dict[str, dt.datetime], run: Run, tmp_path: pathlib.Path) -> None:
    out = export(run, "events")
    assert out.split("\r\n")[0] == EVENTS_HEADER
    rows = list(csv.DictReader(io.StringIO(out)))
    # Each acceptance comes two hours after its invite and is polled at the next run: Anna's slot,
    # Ben's slot, and two hours after Ben's.
    two_hours = dt.timedelta(hours=2)
    chloe, anna, ben = invited["chloe-dubois"], invited["anna-meyer"], invited["ben-okafor"]
    assert [(r["lead_key"], r["kind"], r["source"], r["occurred_at_utc"], r["received_at_utc"], r["sender"],
             r["sequence"]) for r in rows] == [
        ("chloe-dubois", "accepted", "poll", (chloe + two_hours).isoformat(), anna.isoformat(), "alice", "intro"),
        ("anna-meyer", "accepted", "poll", (anna + two_hours).isoformat(), ben.isoformat(), "alice", "intro"),
        ("ben-okafor", "accepted", "poll", (ben + two_hours).isoformat(), (ben + two_hours).isoformat(), "alice",
         "intro")]
    assert all(json.loads(r["data"])["invitation_id"].startswith("inv-") for r in rows)

    target = tmp_path / "events.jsonl"
    assert export(run, "events", "--format", "jsonl", "-o", str(target)) == ""
    lines = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [list(r) for r in lines] == [EVENTS_HEADER.split(",")] * 3
    assert [r["event_id"] for r in lines] == [r["event_id"] for r in rows]


def test_export_from_another_directory_takes_time_zones_from_the_database(
        invited: dict[str, dt.datetime], run: Run, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    # Chloé has no time zone: the calendar's fallback (Europe/Berlin) was used when she was invited,
    # and the export says so wherever it runs, not UTC because no project is in sight.
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # no project above it
    out = export(run, "actions", "--db", str(tmp_path / "seqrun.db"))
    rows = {r["lead_key"]: r for r in csv.DictReader(io.StringIO(out)) if r["action"] == "connect"}
    chloe = rows["chloe-dubois"]
    assert (chloe["lead_timezone"], chloe["performed_at_local"]) == (
        "Europe/Berlin", invited["chloe-dubois"].astimezone(ZoneInfo("Europe/Berlin")).isoformat())
    assert (rows["ben-okafor"]["lead_timezone"], rows["anna-meyer"]["lead_timezone"]) == (
        "America/New_York", "Europe/Berlin")


TRANSITIONS_HEADER = "transition_id,enrollment_id,lead,lead_key,sequence,step,entered_at_utc"
ENROLLMENTS_HEADER = ("enrollment_id,lead,lead_key,sequence,sender,sender_timezone,state,step,outcome,started_at_utc,"
                      "finished_at_utc,last_error,paused_reason")


def test_export_transitions_lists_every_step_entered(invited: dict[str, dt.datetime], run: Run) -> None:
    out = export(run, "transitions")
    assert out.split("\r\n")[0] == TRANSITIONS_HEADER
    rows = list(csv.DictReader(io.StringIO(out)))
    anna = [(r["step"], r["entered_at_utc"]) for r in rows if r["lead_key"] == "anna-meyer"]
    # Anna accepts two hours after her invite; the next run, at Ben's slot, sees it and moves her on.
    seen = invited["ben-okafor"]
    assert invited["anna-meyer"] + dt.timedelta(hours=2) <= seen
    assert anna == [("connect", "2026-03-03T10:00:00+00:00"), ("accepted", invited["anna-meyer"].isoformat()),
                    ("thanks", seen.isoformat())]
    ben = [r["step"] for r in rows if r["lead_key"] == "ben-okafor"]
    assert ben == ["connect", "accepted"]  # paused at `accepted` before the acceptance was polled


def test_export_enrollments_gives_state_outcome_and_finish(invited: dict[str, dt.datetime], run: Run,
                                                           clock: Clock) -> None:
    start = clock.now
    for hours in range(3, 48, 3):  # until Anna's thank-you went out in her next open time
        clock.now = start + dt.timedelta(hours=hours)
        assert run("run", "--once")[0] == 0
    out = export(run, "enrollments", "--format", "jsonl")
    rows = {r["lead_key"]: r for r in map(json.loads, out.splitlines())}
    assert list(rows["anna-meyer"]) == ENROLLMENTS_HEADER.split(",")
    anna = rows["anna-meyer"]
    assert {k: anna[k] for k in ("sequence", "sender", "sender_timezone", "state", "step", "outcome",
                                 "started_at_utc", "last_error", "paused_reason")} == {
        "sequence": "intro", "sender": "alice", "sender_timezone": "Europe/Berlin", "state": "done", "step": "thanks+1",
        "outcome": "messaged", "started_at_utc": "2026-03-03T10:00:00+00:00", "last_error": "", "paused_reason": ""}
    assert start < dt.datetime.fromisoformat(anna["finished_at_utc"]) <= clock.now
    ben = rows["ben-okafor"]
    assert (ben["state"], ben["outcome"], ben["finished_at_utc"], ben["paused_reason"]) == (
        "paused", "", "", "lead paused: asked to wait")


def test_export_events_has_blocks_and_unblocks_with_their_time(invited: dict[str, dt.datetime], run: Run,
                                                              clock: Clock) -> None:
    start = clock.now
    clock.now = start + dt.timedelta(hours=3)
    assert run("leads", "block", BEN, "--reason", "asked not to be contacted")[0] == 0
    assert run("leads", "block", "https://www.linkedin.com/in/never-imported")[0] == 0
    clock.now = start + dt.timedelta(hours=4)
    assert run("leads", "unblock", BEN)[0] == 0
    rows = [r for r in csv.DictReader(io.StringIO(export(run, "events"))) if r["kind"] in ("blocked", "unblocked")]
    assert [(r["kind"], r["source"], r["occurred_at_utc"], r["lead"], r["lead_key"], json.loads(r["data"]))
            for r in rows] == [
        ("blocked", "cli", (start + dt.timedelta(hours=3)).isoformat(), BEN, "ben-okafor",
         {"profile_url": BEN, "reason": "asked not to be contacted"}),
        ("blocked", "cli", (start + dt.timedelta(hours=3)).isoformat(), "https://www.linkedin.com/in/never-imported",
         "", {"profile_url": "https://www.linkedin.com/in/never-imported"}),
        ("unblocked", "cli", (start + dt.timedelta(hours=4)).isoformat(), BEN, "ben-okafor", {"profile_url": BEN}),
    ]


def test_status_shows_the_calls_in_flight(invited: dict[str, dt.datetime], run: Run, tmp_path: pathlib.Path,
                                          clock: Clock) -> None:
    from runner.store.sender_calls import start_call
    from runner.store.senders import sender_id_by_name

    open_store(str(tmp_path / "seqrun.db"))
    with db.atomic():
        enrollment = Enrollment.select().first()
        assert start_call(sender_id_by_name("alice") or 0, enrollment.id, f"{enrollment.id}:thanks:2:0",
                          "elsewhere:4242:0a1b2c3d", clock.now)
    db.close()
    code, out, err = run("status")
    assert (code, err) == (0, "")
    assert (f"Calls in flight (at most one per sender account)\n"
            f"  alice  action {enrollment.id}:thanks:2:0 since {clock.now:%Y-%m-%d %H:%M} UTC, by elsewhere pid 4242\n\n"
            ) in out
    code, out, err = run("status", "--json")
    assert json.loads(out)["calls_in_flight"] == [{
        "sender": "alice", "action_key": f"{enrollment.id}:thanks:2:0", "runner": "elsewhere:4242:0a1b2c3d",
        "holder": "elsewhere pid 4242", "started_at": clock.now.isoformat()}]
