"""`seqrun simulate` on the shipped example sequences: the funnel, the usage table and a clean audit."""
from __future__ import annotations

import datetime as dt
import json
import pathlib

import pytest

from runner.cli.main import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
EDGES = str(ROOT / "sequences" / "edges-full-flow.yaml")
AB = str(ROOT / "sequences" / "two-senders-ab.yaml")
CLEAN = "Audit: no action outside its window, no limit exceeded, nothing sent after a reply, nothing sent twice"


def simulate(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_simulate_prints_the_funnel_and_a_clean_audit(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = simulate(capsys, EDGES, "--leads", "300", "--days", "30", "--start", "2026-03-02", "--seed", "4")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "Simulated edges-full-flow: 300 leads over 30 days from Mon 2026-03-02 (seed 4)"
    assert lines[2] == "Funnel by step"
    assert lines[3].split() == ["step", "kind", "entered", "done", "skipped", "failed", "waiting"]
    funnel = {line.split()[0]: line.split() for line in lines[4:lines.index("", 4)]}
    assert list(funnel) == ["check", "visit", "visit+1", "connect", "accepted", "first_message", "first_message+1",
                            "follow_up", "follow_up+1", "last_touch", "last_touch+1", "last_touch+2", "withdraw",
                            "withdraw+1", "pending", "cool_down", "hand_over"]
    # every lead starts at the check, and comes back to it after a cool-down
    assert funnel["check"][1] == "branch" and int(funnel["check"][2]) == 300 + int(funnel["cool_down"][2])
    assert "Outcomes" in lines and "Actions per sender per day (against the sequence's daily limit)" in lines
    outcomes = lines[lines.index("Outcomes") + 1:lines.index("", lines.index("Outcomes"))]
    assert sum(int(line.split()[-2]) for line in outcomes) == 300  # ended + still in sequence
    assert any(line.split()[0] == "not_accepted" for line in outcomes)
    usage = lines[lines.index("Actions per sender per day (against the sequence's daily limit)") + 2:]
    senders = {line.split()[0] for line in usage[:8] if line.startswith("  ") and line.split()[0] in ("alice", "bob")}
    assert senders == {"alice", "bob"}
    assert any(line.startswith("Acceptance to first message: median ") for line in lines)
    assert lines[-1] == CLEAN


def test_simulate_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = simulate(capsys, EDGES, "--leads", "200", "--days", "20", "--start", "2026-03-02", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert (report["sequence"], report["leads"], report["days"]) == ("edges-full-flow", 200, 20)
    assert (report["start"], report["end"]) == ("2026-03-02T00:00:00+00:00", "2026-03-22T00:00:00+00:00")
    assert report["violations"] == []
    assert sum(report["states"].values()) == 200
    assert sum(report["outcomes"].values()) == report["states"].get("done", 0) + report["states"].get("failed", 0)
    assert [s["id"] for s in report["steps"]][:4] == ["check", "visit", "visit+1", "connect"]
    limits = {"visit": 60, "connect": 20, "message": 40, "withdraw": 20}
    for row in report["usage"]:
        assert row["used"] <= row["limit"] <= limits[row["action"]]  # warm-up included in the limit
    assert report["ticks"] > 0 and report["transitions"] > 0


def test_simulate_an_ab_test_with_two_senders(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_API_KEY", raising=False)  # simulate posts nothing, so it needs no key
    code, out, err = simulate(capsys, AB, "--leads", "300", "--days", "21", "--start", "2026-03-02", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["violations"] == []
    (variants,) = report["variants"].values()
    assert set(variants) == {"short", "story"} and variants["short"] > variants["story"]  # weights 60 / 40
    assert {row["sender"] for row in report["usage"]} == {"alice", "bob"}
    # As documented: the notify step's variable stands in as a placeholder; no lead fails on it.
    crm = next(step for step in report["steps"] if step["id"] == "crm")
    assert crm["done"] > 0 and crm["failed"] == 0


def test_simulate_refuses_two_lead_sources(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    leads = tmp_path / "leads.csv"
    leads.write_text("linkedin_profile_url\nhttps://www.linkedin.com/in/anna\n", encoding="utf-8")
    code, out, err = simulate(capsys, EDGES, "--leads", "10", "--leads-file", str(leads))
    assert (code, out) == (2, "")
    assert err == ("Usage: seqrun simulate [OPTIONS] SEQUENCE\nTry 'seqrun simulate --help' for help.\n\n"
                   "Error: use either --leads or --leads-file, not both\n")


def test_simulate_keeps_its_store_for_export(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "sim.db"
    assert simulate(capsys, EDGES, "--leads", "40", "--days", "5", "--start", "2026-03-02", "--db", str(store))[0] == 0
    monkeypatch.chdir(ROOT)
    assert main(["export", "actions", "--db", str(store), "--format", "jsonl"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and {r["sequence"] for r in rows} == {"edges-full-flow"}
    code, _, err = simulate(capsys, EDGES, "--leads", "40", "--days", "5", "--db", str(store))
    assert (code, err) == (1, f'error: database "{store}" already holds leads; simulate needs a new file\n')


def test_simulate_shows_queues_that_outlast_the_period(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = simulate(capsys, EDGES, "--leads", "800", "--days", "3", "--start", "2026-03-02", "--json")
    assert code == 0
    booked = json.loads(out)["booked_after_end"]
    visits = {b["sender"]: b for b in booked if b["action"] == "visit"}
    assert set(visits) == {"alice", "bob"}
    assert all(b["until"] > "2026-03-12" and b["leads"] > 100 for b in visits.values())
    code, out, _ = simulate(capsys, EDGES, "--leads", "800", "--days", "3", "--start", "2026-03-02")
    lines = out.splitlines()
    start = lines.index("Queues past the end (leads holding a paced slot; more senders or higher limits shorten them)")
    queued = [line.split() for line in lines[start + 1:lines.index("", start)]]
    assert {(row[0], row[1]) for row in queued} >= {("alice", "visit"), ("bob", "visit")}
    assert all(row[3:6] == ["leads,", "booked", "until"] for row in queued)


def test_a_thank_you_after_an_acceptance_does_not_wait_behind_the_queue(capsys: pytest.CaptureFixture[str]) -> None:
    # 3,000 leads on warming-up senders: the already-connected leads' first messages and the follow-ups
    # fill the message slots, and the first message after an acceptance still goes out within hours
    # (the fast lane; in the plain first-come queue the median here was about 50 hours).
    code, out, _ = simulate(capsys, EDGES, "--leads", "3000", "--days", "21", "--start", "2026-03-02", "--json")
    report = json.loads(out)
    assert code == 0 and report["violations"] == []
    hours = report["accept_to_first_message_hours"]
    assert hours["count"] > 20 and hours["median"] < 24


def test_an_expired_session_is_renewed_by_the_simulated_person_and_reported_first(
        capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every sender's session expires on its first call: without a person to renew it, the whole
    # campaign would stand still for the whole month with no word in the report.
    project = tmp_path / "p"
    (project / "sequences").mkdir(parents=True)
    (project / "templates").mkdir()
    for p in (ROOT / "templates").glob("*.j2"):
        (project / "templates" / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    (project / "sequences" / "edges-full-flow.yaml").write_text(pathlib.Path(EDGES).read_text(encoding="utf-8"),
                                                                encoding="utf-8")
    (project / "seqrun.yaml").write_text(
        "version: 1\nsenders:\n  - {name: alice, provider: sandbox, account_id: acc-alice, timezone: Europe/Berlin}\n"
        "sandbox: {errors: {AUTH_EXPIRED: 0.002}}\n", encoding="utf-8")
    code, out, err = simulate(capsys, str(project / "sequences" / "edges-full-flow.yaml"), "--leads", "200",
                              "--days", "10", "--start", "2026-03-02", "--reauth-after", "6", "--json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["reauth_after_hours"] == 6
    pauses = report["sender_pauses"]
    assert pauses and all(p["sender"] == "alice" and p["reason"] == "auth expired" for p in pauses)
    for p in pauses[:-1]:
        assert p["hours"] == 6.0 and p["until"] is not None
    # the leads went on after each renewal: most of them are past their first step
    assert report["steps"][1]["entered"] > 150

    code, out, err = simulate(capsys, str(project / "sequences" / "edges-full-flow.yaml"), "--leads", "200",
                              "--days", "10", "--start", "2026-03-02", "--reauth-after", "6")
    lines = out.splitlines()
    assert lines[2] == ("Senders paused (no actions while paused; a person renews an expired session after 6 h, "
                        "see --reauth-after)")
    first = dt.datetime.fromisoformat(pauses[0]["from"])
    assert lines[3] == (f"  alice           6.0 h  auth expired: {first:%a %Y-%m-%d %H:%M} UTC to "
                        f"{first + dt.timedelta(hours=6):%a %Y-%m-%d %H:%M}")
    total = sum(p["hours"] for p in pauses)
    assert f"  alice        paused {total:.1f} h in total ({100 * total / 240:.0f}% of the simulated time)" in lines


def test_follow_ups_have_a_reply_yield_of_their_own(capsys: pytest.CaptureFixture[str]) -> None:
    # Replies are drawn per message received (decaying along the sequence), not once per lead: a
    # lead who ignored the first message may answer a follow-up, and the report shows each yield.
    args = (EDGES, "--leads", "300", "--days", "30", "--start", "2026-03-02", "--seed", "4", "--reply-rate", "0.5",
            "--accept-rate", "0.8")
    code, out, err = simulate(capsys, *args, "--json")
    assert (code, err) == (0, "")
    yields = {m["step"]: m for m in json.loads(out)["replies_per_message"]}
    assert list(yields) == ["first_message", "follow_up", "last_touch"]
    rates = [yields[s]["replies"] / yields[s]["sent"] for s in yields]
    assert all(yields[s]["replies"] > 0 for s in yields)
    assert rates[0] > rates[1] > rates[2]  # the decay
    code, out, err = simulate(capsys, *args)
    lines = out.splitlines()
    i = lines.index("Replies per message (each reply counts for the last message before it)")
    assert lines[i + 1].split() == ["step", "sent", "replies", "yield"]
    first = yields["first_message"]
    assert lines[i + 2].split() == ["first_message", str(first["sent"]), str(first["replies"]),
                                    f"{100 * first['replies'] / first['sent']:.1f}%"]


def test_simulate_never_writes_into_the_project_database(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # A project whose database holds no leads yet (its senders only): simulated leads and actions
    # would be mixed into it, and `run` would then see them.
    (tmp_path / "sequences").mkdir()
    (tmp_path / "templates").mkdir()
    (tmp_path / "seqrun.yaml").write_text("version: 1\nsenders:\n  - {name: alice, provider: sandbox, "
                                          "account_id: acc-alice}\n", encoding="utf-8")
    (tmp_path / "sequences" / "s.yaml").write_text("version: 1\nname: s\nsteps:\n  - {id: visit, action: visit}\n",
                                                   encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEQRUN_DB", raising=False)
    assert main(["senders", "list"]) == 0  # creates seqrun.db with the senders
    capsys.readouterr()
    before = (tmp_path / "seqrun.db").read_bytes()
    for target in ("seqrun.db", "./seqrun.db", "seqrun.yaml"):
        code, out, err = simulate(capsys, "sequences/s.yaml", "--leads", "5", "--days", "1", "--db", target)
        assert (code, out) == (1, "")
        what = "the project's configuration" if target == "seqrun.yaml" else "the database"
        assert err == f"error: will not write the simulation to {target}: it is {what}; choose another file\n"
    assert (tmp_path / "seqrun.db").read_bytes() == before
