"""Semantic checks over built sequences: flow, loops, reachability, providers, limits, conditions."""
from __future__ import annotations

import pathlib

import pytest

from runner.language.checks import check_project, check_sequence
from runner.language.loader import build_sequence
from runner.language.model import Sequence

HEAD = "version: 1\nname: s\nfields:\n  full_name: required\n"


def build(tmp_path: pathlib.Path, body: str, name: str = "s.yaml") -> Sequence:
    (tmp_path / "templates").mkdir(exist_ok=True)
    (tmp_path / "templates" / "m.j2").write_text("Hi {{ lead.full_name }}", encoding="utf-8")
    path = tmp_path / name
    path.write_text(HEAD + body, encoding="utf-8")
    seq, diags = build_sequence(str(path), display=name)
    assert seq is not None, diags
    assert diags == []
    return seq


def check(tmp_path: pathlib.Path, body: str) -> list[str]:
    """`LINE:COL: severity: message` for each finding, sorted by position."""
    diags = sorted(check_sequence(build(tmp_path, body)), key=lambda d: d.sort_key())
    return [f"{d.line}:{d.column}: {d.severity}: {d.message}" for d in diags]


# --- ids and targets ------------------------------------------------------------------------------


def test_duplicate_ids(tmp_path: pathlib.Path) -> None:
    body = "steps:\n  - {id: a, action: visit}\n  - {id: a, action: connect}\n  - {id: a, end: done}\n"
    assert check(tmp_path, body) == [
        '7:5: error: steps[id=a]: duplicate step id "a" (first used on line 6)',
        '8:5: error: steps[id=a]: duplicate step id "a" (first used on line 6)',
    ]


def test_explicit_start_after_a_first_step_without_id(tmp_path: pathlib.Path) -> None:
    body = "steps:\n  - action: visit\n  - {id: start, action: connect}\n"
    assert check(tmp_path, body) == [
        '7:5: error: steps[id=start]: duplicate step id "start" (first used on line 6); '
        'a first step without an id is called "start"']


def test_unknown_targets_everywhere(tmp_path: pathlib.Path) -> None:
    body = ("steps:\n"
            "  - id: start\n    branch:\n      - {when: connected, goto: mesage}\n      - default: zzz\n"
            "  - {id: message, action: message, template: m.j2, goto: qqq}\n"
            "  - {wait_for: replied, timeout: 1 day, on_timeout: mesage, goto: message}\n")
    assert check(tmp_path, body) == [
        '8:33: error: steps[id=start].branch[0].goto: unknown step "mesage"; did you mean "message"?',
        '9:18: error: steps[id=start].branch[1].default: unknown step "zzz"',
        '10:58: error: steps[id=message].goto: unknown step "qqq"',
        '11:53: error: steps[id=message+1].on_timeout: unknown step "mesage"; did you mean "message"?',
    ]


# --- loops ----------------------------------------------------------------------------------------


def test_self_loop(tmp_path: pathlib.Path) -> None:
    body = "steps:\n  - {id: again, action: tag, tags: [x], goto: again}\n"
    assert check(tmp_path, body) == [
        '6:47: error: steps[id=again].goto: jumps back to "again" with no wait or wait_for on the way, so a lead '
        "would loop forever (again -> again); add a wait to the loop"]


def test_loop_through_fall_through_is_reported_once_at_its_last_step(tmp_path: pathlib.Path) -> None:
    body = ("steps:\n"
            "  - {id: ask, action: message, template: m.j2}\n"
            "  - {action: tag, tags: [asked]}\n"
            "  - id: check\n    branch:\n      - {when: replied, goto: ask}\n      - default: ask\n")
    assert check(tmp_path, body) == [
        '10:31: error: steps[id=check].branch[0].goto: jumps back to "ask" with no wait or wait_for on the way, '
        "so a lead would loop forever (ask -> ask+1 -> check -> ask); add a wait to the loop"]


@pytest.mark.parametrize("pause", ["  - wait: 1 day\n", "  - {wait_for: replied, timeout: 3 days}\n"])
def test_loops_with_a_wait_are_fine(tmp_path: pathlib.Path, pause: str) -> None:
    body = ("steps:\n  - {id: ask, action: message, template: m.j2}\n" + pause
            + "  - id: check\n    branch:\n      - {when: messages_sent < 3, goto: ask}\n"
            + "      - default: {end: done}\n")
    assert check(tmp_path, body) == []


# --- reachability ---------------------------------------------------------------------------------


def test_a_run_of_unreachable_steps_is_reported_once(tmp_path: pathlib.Path) -> None:
    body = ("steps:\n  - {action: visit, goto: last}\n  - {id: lost, action: connect}\n  - wait: 1 day\n"
            "  - {id: last, end: done}\n")
    assert check(tmp_path, body) == ["7:5: warning: steps[id=lost]: step is never reached"]


def test_steps_after_an_end(tmp_path: pathlib.Path) -> None:
    body = ("steps:\n  - {action: visit, end: visited}\n  - {id: named, action: connect}\n"
            "  - {end: x}\n  - {action: withdraw}\n")
    assert check(tmp_path, body) == [
        "7:5: warning: steps[id=named]: step is never reached: the step before it ends the sequence, and no goto, "
        "on_timeout or branch points here",
        "9:5: warning: steps[id=named+2]: step is never reached: the step before it ends the sequence, and this step "
        "has no id for a goto, on_timeout or branch to point at",
    ]


def test_an_unreachable_loop_is_reported(tmp_path: pathlib.Path) -> None:
    body = ("steps:\n  - {end: done}\n  - {id: a, action: visit}\n  - {wait: 1 day, goto: a}\n")
    assert check(tmp_path, body) == [
        "7:5: warning: steps[id=a]: step is never reached: the step before it ends the sequence, and no goto, "
        "on_timeout or branch points here"]


def test_no_reachability_warnings_while_a_target_is_unknown(tmp_path: pathlib.Path) -> None:
    body = "steps:\n  - {action: visit, goto: withdrawl}\n  - {id: withdraw, action: withdraw}\n"
    assert check(tmp_path, body) == ['6:27: error: steps[id=start].goto: unknown step "withdrawl"; '
                                     'did you mean "withdraw"?']


def test_withdraw_needs_a_connect_on_every_path(tmp_path: pathlib.Path) -> None:
    guarded = ("steps:\n  - {action: connect}\n  - {wait_for: accepted, timeout: 14 days, on_timeout: withdraw}\n"
               "  - {end: accepted}\n  - {id: withdraw, action: withdraw}\n")
    assert check(tmp_path, guarded) == []
    unguarded = "steps:\n  - {action: withdraw}\n  - {action: connect}\n"
    assert check(tmp_path, unguarded) == [
        "6:5: warning: steps[id=start]: withdraw can be reached without a connect step before it, so there may be "
        "no invite of this sequence to withdraw"]
    # `invite: any` withdraws whatever invite is pending: no invite of this sequence is needed.
    assert check(tmp_path, "steps:\n  - {action: withdraw, invite: any}\n  - {action: connect}\n") == []


# --- providers and limits -------------------------------------------------------------------------


def test_provider_capabilities(tmp_path: pathlib.Path) -> None:
    body = ("provider: salesflow\nsteps:\n  - {action: visit}\n  - {action: tag, tags: [a]}\n"
            "  - {action: notify, url: 'https://x.example'}\n  - {action: connect}\n")
    assert check(tmp_path, body) == ["7:5: error: steps[id=start]: the salesflow provider cannot visit profiles"]
    assert check(tmp_path, body.replace("salesflow", "edges")) == []
    assert check(tmp_path, body.replace("provider: salesflow\n", "")) == []


@pytest.mark.parametrize(("limits", "expected"), [
    ("{visit: 80, connect: 25, message: 50, inmail: 900, withdraw: 900}", []),
    ("{connect: 26}", ["5:19: warning: limits.connect: 26 per day is above LinkedIn's documented classic-account "
                       "ceiling of 25 per day"]),
    ("{visit: {daily: 501}}", ["5:17: warning: limits.visit: 501 per day is above LinkedIn's documented "
                               "classic-account ceiling of 80 per day (and above the Sales Navigator ceiling of 500)"]),
    ("{message: 0}", []),  # no message step uses it
    ("{connect: 0}", ["5:19: warning: limits.connect: a daily limit of 0 means no connect step ever runs; leads "
                      "would wait there forever"]),
])
def test_limits(tmp_path: pathlib.Path, limits: str, expected: list[str]) -> None:
    assert check(tmp_path, f"limits: {limits}\nsteps:\n  - action: connect\n") == expected


def test_wait_for_replied_is_preempted_only_by_a_replied_exit(tmp_path: pathlib.Path) -> None:
    steps = "steps:\n  - {id: w, wait_for: replied, timeout: 3 days}\n"
    assert check(tmp_path, "exit_when: [blocked]\n" + steps) == []
    assert check(tmp_path, "exit_when: [replied]\n" + steps) == [
        '7:5: warning: steps[id=w]: this wait for "replied" never goes on when the lead replies: the "replied" exit '
        "in exit_when ends the sequence first; only the timeout path is taken"]


# --- conditions -----------------------------------------------------------------------------------


def test_condition_names(tmp_path: pathlib.Path) -> None:
    body = ("exit_when:\n  - {when: \"lead.linkedin_profile_url and sequence.name and sender.full_name\", end: a}\n"
            "  - {when: \"sender.email or lead['title'] or lead.full_name\", end: b}\n"
            "  - {when: \"x or connectd or range(3) | length > days_since_last_message\", end: c}\n"
            "steps:\n  - action: visit\n")
    facts = ("connected, invite_pending, invited, invited_with_note, accepted, conversation_exists, replied, "
             "lead_messaged_first, days_since_last_message, messages_sent, blocked, tags")
    assert check(tmp_path, body) == [
        "7:12: error: exit_when[1].when: lead.title is not a declared field; declared fields: "
        "linkedin_profile_url, full_name (add it under `fields:`)",
        "7:12: error: exit_when[1].when: sender.email does not exist; sender has: name, full_name",
        f'8:12: error: exit_when[2].when: unknown name "connectd" (did you mean "connected"?); conditions can use '
        f"lead, sender, sequence and the facts {facts}",
        f'8:12: error: exit_when[2].when: unknown name "x"; conditions can use lead, sender, sequence and the facts '
        f"{facts}",
    ]


def test_branch_conditions_are_checked(tmp_path: pathlib.Path) -> None:
    body = ("steps:\n  - id: start\n    branch:\n      - {when: connected, goto: a}\n"
            "      - {when: lead.company, goto: a}\n      - default: next\n  - {id: a, action: visit}\n")
    assert check(tmp_path, body) == [
        "9:16: error: steps[id=start].branch[1].when: lead.company is not a declared field; declared fields: "
        "linkedin_profile_url, full_name (add it under `fields:`)"]


# --- across files ---------------------------------------------------------------------------------


def test_sequence_names_are_unique_across_files(tmp_path: pathlib.Path) -> None:
    one, two, three = (build(tmp_path, "steps:\n  - action: visit\n", name=f"{n}.yaml") for n in ("a", "b", "c"))
    diags = check_project([one, two, three])
    assert [d.format() for d in diags] == [
        'b.yaml:2:7: error: name: sequence name "s" is also used by ' + str(tmp_path / "a.yaml"),
        'c.yaml:2:7: error: name: sequence name "s" is also used by ' + str(tmp_path / "a.yaml"),
    ]
