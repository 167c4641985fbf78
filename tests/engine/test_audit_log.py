"""What the audit log keeps with each action and step, checked on whole runs (issue: a complete audit log)."""
from __future__ import annotations

from runner.report import export_rows
from runner.store import MODELS, Transition, db

from .conftest import HarnessFactory, lead_row, sequence_yaml
from .test_flows import SEED_000, finished


def test_actions_keep_zones_relationship_charge_and_a_started_conversation(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_000.format(note="")))
    h.enroll(lead_row("anna", timezone="America/New_York"))
    h.run(days=2, stop=lambda: finished(h, "anna"))
    rows = {r["action"]: r for r in export_rows("actions")}
    assert {k: rows["connect"][k] for k in ("lead_timezone", "sender_timezone", "relationship", "conversation",
                                            "charged")} == {
        "lead_timezone": "America/New_York", "sender_timezone": "Europe/Berlin", "relationship": "not_connected",
        "conversation": "", "charged": True}
    message = rows["message"]
    assert (message["relationship"], message["conversation"], message["charged"]) == ("connected", "started", True)
    assert message["conversation_id"] != ""


def test_first_message_after_an_invite_with_note_goes_into_the_existing_conversation(
        make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_000.format(note=", note: note.j2")))
    h.enroll(lead_row("anna"))  # no zone: the calendar's fallback, as used, is what the log keeps
    h.run(days=2, stop=lambda: finished(h))
    message = next(r for r in export_rows("actions") if r["action"] == "message")
    assert (message["conversation"], message["lead_timezone"]) == ("existing", "Europe/Berlin")
    assert message["conversation_id"] == h.enrollment("anna").facts["conversation_id"]


def test_every_step_entered_is_a_transition(make_harness: HarnessFactory) -> None:
    h = make_harness(sequence_yaml("s", SEED_000.format(note="")))
    h.enroll(lead_row("anna", timezone="Europe/Berlin"))
    h.run(days=2, stop=lambda: finished(h))
    steps = [(t.step_id, t.entered_at) for t in Transition.select().order_by(Transition.id)]
    assert [s for s, _ in steps] == ["connect", "accepted", "first_message", "first_message+1"]
    assert [at for _, at in steps] == sorted(at for _, at in steps)
    enr = h.enrollment("anna")
    assert steps[-1][1] == enr.step_entered_at


def test_the_models_match_the_migrated_schema(make_harness: HarnessFactory, backend: str) -> None:
    make_harness(sequence_yaml("s", SEED_000.format(note="")))
    for model in MODELS:
        table = model._meta.table_name
        if backend == "sqlite":
            columns = {row[1] for row in db.execute_sql(f"PRAGMA table_info({table})").fetchall()}
        else:
            columns = {row[0] for row in db.execute_sql(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = ?", (table,)).fetchall()}
        assert columns == {f.column_name for f in model._meta.sorted_fields}, table
