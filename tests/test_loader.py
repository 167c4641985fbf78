"""The loader: paths, schema messages, the built model, source hashes, and loading many files."""
from __future__ import annotations

import datetime as dt
import hashlib
import pathlib
import tempfile

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from runner.language.checks import check_sequence
from runner.language.diagnostics import has_errors
from runner.language.loader import build_sequence, build_stored, expand_paths, load_paths, load_sequence
from runner.language.model import (
    ActionStep,
    BranchStep,
    Duration,
    EndStep,
    Pos,
    Target,
    TemplateRef,
    TimeRange,
    WaitForStep,
    WaitStep,
)
from runner.language.paths import find_project_root, templates_dir_for
from runner.language.schemacheck import PathNames, check_schema, load_schema, step_ids
from runner.language.yamlsrc import YamlDoc, load_yaml_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
VALID = ROOT / "tests" / "fixtures" / "valid"
FIXTURE_TEMPLATES = ROOT / "tests" / "fixtures" / "templates"


def project(tmp_path: pathlib.Path, text: str, templates: dict[str, str] | None = None,
            name: str = "s.yaml") -> str:
    """A project in tmp_path with one sequence file (returned) and the given templates."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    for file, body in (templates or {}).items():
        (tmp_path / "templates" / file).write_text(body, encoding="utf-8")
    (tmp_path / "sequences").mkdir(exist_ok=True)
    path = tmp_path / "sequences" / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def messages(diags: list) -> list[str]:
    return [d.message for d in diags]


# --- project root and templates directory ---------------------------------------------------------


def test_project_root_is_the_first_directory_with_config_or_templates(tmp_path: pathlib.Path) -> None:
    (tmp_path / "seqrun.yaml").write_text("version: 1\n")
    deep = tmp_path / "sequences" / "team"
    deep.mkdir(parents=True)
    (deep / "s.yaml").write_text("")
    assert find_project_root(deep / "s.yaml") == tmp_path.resolve()
    assert templates_dir_for(deep / "s.yaml") == tmp_path.resolve() / "templates"
    (deep.parent / "templates").mkdir()
    assert find_project_root(deep / "s.yaml") == deep.parent.resolve()


def test_project_root_accepts_a_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "sequences").mkdir()
    assert find_project_root(tmp_path / "sequences") == tmp_path.resolve()


def test_a_file_called_templates_does_not_make_a_project(tmp_path: pathlib.Path) -> None:
    inner = tmp_path / "outer" / "sequences"
    inner.mkdir(parents=True)
    (inner / "templates").write_text("not a directory")
    (tmp_path / "outer" / "templates").mkdir()
    assert find_project_root(inner / "s.yaml") == (tmp_path / "outer").resolve()


def test_without_a_project_templates_sit_beside_the_sequence_directory(tmp_path: pathlib.Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("runner.language.paths._is_project_root", lambda directory: False)
    seq = tmp_path / "sequences" / "s.yaml"
    assert find_project_root(seq) == tmp_path.resolve()
    assert templates_dir_for(seq) == tmp_path.resolve() / "templates"


# --- naming ---------------------------------------------------------------------------------------


def test_generated_step_ids() -> None:
    raw = [{"action": "visit"}, {"wait": "1 day"}, {"id": "connect", "action": "connect"},
           {"wait_for": "accepted"}, "not a step", {"id": 7, "end": "x"}, {"id": "bye", "end": "x"}]
    assert step_ids(raw) == ["start", "start+1", "connect", "connect+1", "connect+2", "connect+3", "bye"]
    assert step_ids({"not": "a list"}) == []


def test_paths_are_named_by_step_id_and_variant_name() -> None:
    data = {"steps": [{"action": "visit"},
                      {"id": "pitch", "action": "message",
                       "variants": [{"name": "short", "template": "a.j2"}, {"template": "b.j2"}]}],
            "calendar": {"hours": ["x", "y"]}}
    names = PathNames(data)
    assert names.describe(("steps", 0, "action")) == "steps[id=start].action"
    assert names.describe(("steps", 1, "variants", 0, "template")) == "steps[id=pitch].variants[name=short].template"
    assert names.describe(("steps", 1, "variants", 1)) == "steps[id=pitch].variants[1]"
    assert names.describe(("calendar", "hours", 1)) == "calendar.hours[1]"
    assert names.step(("steps", 1, "variants")) == "pitch"
    assert names.step(("calendar",)) is None


# --- schema messages ------------------------------------------------------------------------------

BASE = "version: 1\nname: s\n"


@pytest.mark.parametrize(("body", "expected"), [
    ("steps:\n  - action: message\n    template: a.j2\n    inmail: yes\n",
     ['steps[id=start].inmail: expected true or false, got "yes"']),
    ("limits:\n  visit: {daily: many}\nsteps:\n  - action: visit\n",
     ['limits.visit.daily: expected a whole number, got "many"']),
    ("limits:\n  visit: {daily: 5, gap: 1 day}\nsteps:\n  - action: visit\n",
     ['limits.visit: unknown key "gap" (expected one of: daily, min_gap)']),
    ("exit_when:\n  - {when: replied}\nsteps:\n  - action: visit\n",
     ['exit_when[0]: missing required key "end"']),
    ("exit_when:\n  - 3\nsteps:\n  - action: visit\n",
     ["exit_when[0]: expected one of replied, blocked, got 3"]),
    ("steps:\n  - action: message\n    template: {with_note: a.j2}\n",
     ['steps[id=start].template: missing required key "without_note"']),
    ("steps:\n  - action: message\n    template: [a.j2]\n",
     ["steps[id=start].template: expected text, got a list"]),
    ("steps:\n  - action: tag\n",
     ['steps[id=start]: missing required key "tags"']),
    ("steps:\n  - id: start\n    branch:\n      - connected\n      - default: next\n",
     ['steps[id=start].branch[0]: expected a mapping (key: value pairs), got "connected"']),
    ("steps:\n  - wait_for: accepted\n    timout: 3 days\n",
     ['steps[id=start]: unknown key "timout" (expected one of: id, wait_for, timeout, on_timeout, goto, end)']),
    ("steps:\n  - {action: visit, goto: Visit}\n",
     ['steps[id=start].goto: expected a step id (lower-case letters, digits, "_" and "-"), got "Visit"']),
    ("steps:\n  - {id: 2nd, action: visit}\n",
     ['steps[id=2nd].id: expected a step id of lower-case letters, digits, "_" and "-" starting with a letter, '
      'got "2nd"']),
    ("steps:\n  - {action: visit, wait: 1 day, branch: []}\n",
     ['steps[id=start]: a step does one thing, but this one has "action", "wait" and "branch"; '
      "split it into separate steps"]),
    ("steps:\n  - acton: visit\n",
     ['steps[id=start]: unknown key "acton" (expected one of: id, action, goto, end)']),
    ("steps:\n  - acton: message\n",
     ['steps[id=start]: unknown key "acton" (expected one of: id, action, template, variants, inmail, subject, '
      "goto, end)"]),
    ("senders: []\nsteps:\n  - action: visit\n",
     ["senders: expected at least 1 item, got 0"]),
    ("calendar:\n  hours: [9-17]\nsteps:\n  - action: visit\n",
     ['calendar.hours[0]: expected a time range like "09:00-17:30", got "9-17"']),
    ("calendar:\n  holidays: [24.12.2026]\nsteps:\n  - action: visit\n",
     ['calendar.holidays[0]: expected a date like "2026-12-24", got "24.12.2026"']),
    ("steps:\n  - action: tag\n    tags: [hot stuff]\n",
     ['steps[id=start].tags[0]: expected a tag of letters, digits, "_", ":" and "-", got "hot stuff"']),
    ("steps:\n  - action: message\n    variants:\n      - {name: A, template: a.j2}\n"
     "      - {name: b, template: b.j2}\n",
     ['steps[id=start].variants[name=A].name: expected a variant name of lower-case letters, digits, "_" and "-", '
      'got "A"']),
    ("description: ''\nsteps:\n  - action: message\n    template: a.j2\n    inmail: true\n    subject: ''\n",
     ["steps[id=start].subject: expected non-empty text"]),
    ("steps:\n  - wait: 3\n",
     ['steps[id=start].wait: expected a duration like "3 days", "2 business days", "90 minutes" or "P3D", '
      'got 3 (add a unit, e.g. "3 days")']),
])
def test_schema_messages(tmp_path: pathlib.Path, body: str, expected: list[str]) -> None:
    seq, diags = build_sequence(project(tmp_path, BASE + body))
    assert seq is None
    assert messages(diags) == expected


WHOLE_SCHEMA = Draft202012Validator(load_schema())
FIXTURES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "fixtures").glob("*/*.y*ml"))


@pytest.mark.parametrize("fixture", FIXTURES)
def test_step_by_step_validation_agrees_with_the_whole_schema(fixture: str) -> None:
    doc, _ = load_yaml_file(str(ROOT / fixture))
    if doc is None or not isinstance(doc.data, dict):
        return  # never reaches the schema
    assert (check_schema(doc) == []) == WHOLE_SCHEMA.is_valid(doc.data)


_VALUES = st.sampled_from(["visit", "connect", "message", "conect", "3 days", "0 days", "P2W", "accepted",
                           "replied", "a.j2", "x", "Nope", "next", "https://x.example", 3, -1, True, None,
                           ["a"], [], {"end": "x"}, {"with_note": "a.j2", "without_note": "b.j2"},
                           [{"name": "a", "template": "a.j2"}, {"name": "b", "template": "b.j2"}],
                           [{"when": "connected", "goto": "x"}, {"default": "next"}]])
_KEYS = st.sampled_from(["id", "action", "wait", "wait_for", "branch", "end", "goto", "timeout", "on_timeout",
                         "note", "template", "variants", "inmail", "subject", "tags", "url", "headers_from_env",
                         "wiat", "bogus"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(_KEYS, _VALUES, max_size=4), min_size=1, max_size=3))
def test_step_by_step_validation_agrees_on_any_steps(steps: list[dict[str, object]]) -> None:
    data = {"version": 1, "name": "s", "steps": steps}
    assert (check_schema(YamlDoc(data=data, file="s.yaml")) == []) == WHOLE_SCHEMA.is_valid(data)


_STEP = st.dictionaries(_KEYS, _VALUES, max_size=4)
_DOCS = st.fixed_dictionaries({"version": st.just(1), "name": st.sampled_from(["s", "S"]), "steps": st.lists(
    st.one_of(_STEP, st.sampled_from([{"id": "x", "action": "visit", "goto": "x"}, {"id": "x", "wait": "1 day"},
                                      {"id": "y", "branch": [{"when": "lead.x", "goto": "x"}, {"default": "y"}]},
                                      {"action": "withdraw"}, {"end": "done"}])), min_size=1, max_size=6)},
    optional={"calendar": st.fixed_dictionaries({}, optional={
        "timezone": st.sampled_from(["lead", "Europe/Berlin", "Nowhere/Land", "America"]),
        "hours": st.lists(st.sampled_from(["09:00-12:00", "11:00-24:00", "24:00-25:00", "x"]), max_size=3),
        "holidays": st.lists(st.sampled_from(["2026-02-29", "2028-02-29"]), max_size=2)}),
        "limits": st.fixed_dictionaries({}, optional={
            "connect": st.sampled_from([0, 30, {"daily": 5, "min_gap": "0 h"}]),
            "jitter": st.sampled_from(["1 h", "P0D", 5])}),
        "exit_when": st.lists(st.sampled_from(["replied", {"when": "tags and", "end": "x"},
                                               {"when": "foo", "end": "y"}]), max_size=2),
        "provider": st.sampled_from(["salesflow", "sandbox", "nope"])})


@settings(max_examples=200, deadline=None)
@given(_DOCS)
def test_any_document_gives_diagnostics_not_exceptions(data: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (pathlib.Path(tmp) / "templates").mkdir()
        (pathlib.Path(tmp) / "templates" / "a.j2").write_text("Hi")
        path = pathlib.Path(tmp) / "s.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        seq, diags = build_sequence(str(path))
        assert seq is not None or diags
        if seq is not None:
            check_sequence(seq)
        loaded, all_diags = load_sequence(str(path))
        assert (loaded is None) == has_errors(all_diags)


def test_version_is_checked_first(tmp_path: pathlib.Path) -> None:
    _, diags = build_sequence(project(tmp_path, 'version: "1"\nname: BAD NAME\n'))
    assert messages(diags) == ['version: unsupported version "1"; this seqrun reads version 1']


def test_root_must_be_a_mapping(tmp_path: pathlib.Path) -> None:
    _, diags = build_sequence(project(tmp_path, "just text\n"))
    assert messages(diags) == ['expected a mapping of keys (version, name, steps, ...) at the top of the file, '
                               'got the value "just text"']


def test_a_csv_given_as_a_sequence_is_quoted_by_its_first_line(tmp_path: pathlib.Path) -> None:
    rows = "".join(f"https://www.linkedin.com/in/lead-{i},Lead {i},Company {i} with a long name\n" for i in range(500))
    path = project(tmp_path, "linkedin_profile_url,full_name,company_name\n" + rows, name="leads.csv")
    _, diags = build_sequence(path)
    assert messages(diags) == ['expected a mapping of keys (version, name, steps, ...) at the top of the file, '
                               'got text starting "linkedin_profile_url,full_name,company_name" (line 1 of 501); '
                               "is this a lead CSV? Give the sequence's YAML file here"]
    long_line = "word " * 40
    _, diags = build_sequence(project(tmp_path, long_line + "\n", name="long.yaml"))
    assert messages(diags) == ['expected a mapping of keys (version, name, steps, ...) at the top of the file, '
                               f'got text starting "{long_line[:60]}…"']


def test_schema_errors_are_positioned(tmp_path: pathlib.Path) -> None:
    text = BASE + "steps:\n  - id: follow_up\n    wiat: 3 days\n  - wait: 3 dayz\n"
    _, diags = build_sequence(project(tmp_path, text), display="seq.yaml")
    assert [(d.file, d.line, d.column, d.step) for d in diags] == [
        ("seq.yaml", 5, 5, "follow_up"), ("seq.yaml", 6, 11, "follow_up+1")]


# --- the built model ------------------------------------------------------------------------------


def test_connect_flow_model() -> None:
    path = str(VALID / "connect_flow.yaml")
    seq, diags = load_sequence(path, display="flow.yaml")
    assert diags == []
    assert seq is not None
    assert (seq.name, seq.version, seq.path, seq.provider) == ("founders-q1", 1, path, None)
    assert seq.senders == ("alice", "bob")
    assert [(f.name, f.required) for f in seq.fields] == [("full_name", True), ("company_name", False),
                                                          ("timezone", False)]
    assert seq.field_names == ("linkedin_profile_url", "full_name", "company_name", "timezone")
    cal = seq.calendar
    assert (cal.timezone, cal.fallback, cal.days) == ("lead", "Europe/Berlin", (0, 1, 2, 3, 4))
    assert cal.hours == (TimeRange(dt.time(9), dt.time(12)), TimeRange(dt.time(13), dt.time(17, 30)))
    assert {k: v.daily for k, v in seq.limits.per_action.items()} == {"connect": 20, "message": 40}
    assert seq.limits.per_action["connect"].pos == Pos("flow.yaml", 11, 19)
    assert [(e.name, e.outcome, e.when) for e in seq.exits] == [("replied", "replied", None)]
    assert [s.id for s in seq.steps] == ["start", "visit", "visit+1", "connect", "accepted", "first_message",
                                         "first_message+1", "first_message+2", "first_message+3", "withdraw",
                                         "withdraw+1"]
    assert seq.templates_dir == str(FIXTURE_TEMPLATES)
    assert seq.pos == Pos("flow.yaml", 3, 7)


def test_connect_flow_steps() -> None:
    seq, _ = load_sequence(str(VALID / "connect_flow.yaml"), display="flow.yaml")
    assert seq is not None
    start = seq.step("start")
    assert isinstance(start, BranchStep)
    assert [(c.when.source, c.target.goto) for c in start.cases] == [("connected", "first_message")]
    assert start.default == Target(goto="visit", pos=Pos("flow.yaml", 18, 18))
    wait = seq.step("visit+1")
    assert isinstance(wait, WaitStep)
    assert wait.duration == Duration("1 business day", seconds=86400, business=True, business_days=1)
    connect = seq.step("connect")
    assert isinstance(connect, ActionStep)
    assert connect.note == TemplateRef("note.j2", Pos("flow.yaml", 21, 42))
    accepted = seq.step("accepted")
    assert isinstance(accepted, WaitForStep)
    assert (accepted.event, accepted.timeout.seconds, accepted.on_timeout.goto, accepted.then) == (
        "accepted", 14 * 86400, "withdraw", None)
    first = seq.step("first_message")
    assert isinstance(first, ActionStep) and first.template is not None
    assert (first.template.with_note.name, first.template.without_note.name) == ("thanks.j2", "intro.j2")
    assert first.limit_key == "message"
    end = seq.step("first_message+3")
    assert isinstance(end, EndStep) and end.outcome == "no_reply"


def test_everything_model() -> None:
    seq, diags = load_sequence(str(VALID / "everything.yaml"))
    assert diags == []
    assert seq is not None
    assert seq.provider == "sandbox"
    cal = seq.calendar
    assert (cal.timezone, cal.fallback, cal.days) == ("sender", "UTC", (0, 1, 2, 3, 4, 5))
    assert cal.hours[1] == TimeRange(dt.time(13), dt.time.max)
    assert cal.holidays == frozenset({dt.date(2026, 12, 24), dt.date(2026, 12, 25)})
    limits = seq.limits
    assert limits.per_action["connect"].min_gap == Duration("5 minutes", seconds=300)
    assert limits.jitter == Duration("10 minutes", seconds=600)
    assert (limits.warmup.days, limits.warmup.start) == (14, 0.2)
    custom = seq.exits[1]
    assert (custom.name, custom.outcome, custom.when.source) == ("custom", "customer", "'customer' in tags")
    start = seq.step("start")
    assert isinstance(start, BranchStep)
    assert start.cases[0].target == Target(end="lead_wrote_first", pos=start.cases[0].target.pos)
    assert start.default is None  # default: next
    accepted = seq.step("accepted")
    assert isinstance(accepted, WaitForStep) and accepted.then.goto == "pitch"
    pitch = seq.step("pitch")
    assert isinstance(pitch, ActionStep)
    assert [(v.name, v.weight) for v in pitch.variants] == [("short", 70), ("story", 1)]
    assert pitch.variants[1].template.with_note.name == "story.j2"
    wait_reply = seq.step("wait_reply")
    assert isinstance(wait_reply, WaitForStep) and wait_reply.on_timeout.end == "no_reply"
    assert wait_reply.timeout == Duration("4 business hours", seconds=4 * 3600, business=True)
    inmail = seq.step("inmail")
    assert isinstance(inmail, ActionStep)
    assert (inmail.inmail, inmail.limit_key, inmail.subject) == (
        True, "inmail", "A question for {{ lead.full_name | first_name }}")
    tag = seq.steps[seq.index["inmail"] + 1]
    assert isinstance(tag, ActionStep) and tag.tags == ("hot", "q1:inmail") and tag.limit_key is None
    notify = seq.steps[seq.index["inmail"] + 2]
    assert isinstance(notify, ActionStep)
    assert (notify.url, notify.headers_from_env, notify.then.end) == (
        "https://crm.example.com/hooks/seqrun", {"X-Api-Key": "CRM_API_KEY"}, "handed_over")
    withdraw = seq.step("withdraw")
    assert isinstance(withdraw, ActionStep) and withdraw.then.end == "not_accepted"


def test_defaults_when_calendar_and_limits_are_left_out() -> None:
    seq, _ = load_sequence(str(VALID / "minimal.yml"))
    assert seq is not None
    assert (seq.calendar.timezone, seq.calendar.fallback, seq.calendar.days) == ("lead", "UTC", (0, 1, 2, 3, 4))
    assert seq.calendar.hours == (TimeRange(dt.time(9), dt.time(17)),)
    assert (seq.limits.per_action, seq.limits.warmup, seq.limits.jitter) == ({}, None, None)
    assert (seq.description, seq.senders, seq.fields, seq.exits) == ("", (), (), ())


# --- source hash ----------------------------------------------------------------------------------

HASHED = BASE + "steps:\n  - action: connect\n    note: note.j2\n  - action: message\n    template: intro.j2\n"


def test_source_hash_covers_yaml_and_referenced_templates(tmp_path: pathlib.Path) -> None:
    path = project(tmp_path, HASHED, {"note.j2": "Hi", "intro.j2": "Hello", "unused.j2": "x"})
    first, _ = load_sequence(path)
    assert first is not None
    expected = hashlib.sha256(HASHED.encode())
    for name, body in (("intro.j2", b"Hello"), ("note.j2", b"Hi")):
        expected.update(b"\0" + name.encode() + b"\0" + body)
    assert first.source_hash == expected.hexdigest()
    (tmp_path / "templates" / "unused.j2").write_text("changed")
    assert load_sequence(path)[0].source_hash == first.source_hash
    (tmp_path / "templates" / "intro.j2").write_text("Hello there")
    changed = load_sequence(path)[0].source_hash
    assert changed != first.source_hash
    pathlib.Path(path).write_text(HASHED + "# a comment\n")
    assert load_sequence(path)[0].source_hash not in (first.source_hash, changed)


def test_source_hash_and_texts_cover_the_templates_a_template_includes(tmp_path: pathlib.Path) -> None:
    templates = {"note.j2": "Hi", "intro.j2": "Hello{% include 'sig.j2' %}", "sig.j2": "{% import 'm.j2' as m %}",
                 "m.j2": "", "unused.j2": "x"}
    path = project(tmp_path, HASHED, templates)
    first, _ = load_sequence(path)
    assert first is not None
    assert dict(first.templates) == {k: v for k, v in templates.items() if k != "unused.j2"}
    assert first.source == HASHED
    (tmp_path / "templates" / "m.j2").write_text("{# changed #}")
    assert load_sequence(path)[0].source_hash != first.source_hash


def test_a_stored_version_is_rebuilt_from_its_text_alone(tmp_path: pathlib.Path) -> None:
    path = project(tmp_path, HASHED, {"note.j2": "Hi", "intro.j2": "Hello"})
    first, _ = load_sequence(path)
    assert first is not None
    for name in ("note.j2", "intro.j2"):
        (tmp_path / "templates" / name).unlink()
    again, diags = build_stored(first.source, dict(first.templates), path=path, templates_dir=first.templates_dir,
                                version_hash=first.source_hash)
    assert diags == [] and again is not None
    assert (again.steps, again.templates, again.source_hash) == (first.steps, first.templates, first.source_hash)


# --- errors while building, and what load_sequence returns ----------------------------------------


def test_value_errors_are_all_reported_and_the_model_is_still_built(tmp_path: pathlib.Path) -> None:
    text = BASE + ("calendar: {timezone: Mars/Olympus, hours: ['09:00-12:00', '10:00-11:00']}\n"
                   "steps:\n  - {action: connect, note: nope.j2}\n  - wait: 0 minutes\n"
                   "  - {goto: nowhere, action: visit}\n")
    path = project(tmp_path, text)
    seq, diags = build_sequence(path, display="s.yaml")
    assert seq is not None
    assert [d.format() for d in diags] == [
        's.yaml:3:22: error: calendar.timezone: unknown time zone "Mars/Olympus" '
        '(expected lead, sender or an IANA zone like "Europe/Berlin")',
        's.yaml:3:59: error: calendar.hours[1]: "10:00-11:00" overlaps "09:00-12:00"',
        's.yaml:5:29: error: steps[id=start].note: template "nope.j2" not found in '
        f'{(tmp_path / "templates").resolve()}/',
        's.yaml:6:11: error: steps[id=start+1].wait: a duration must be longer than zero, got "0 minutes"',
    ]
    none, with_checks = load_sequence(path, display="s.yaml")
    assert none is None
    assert messages(with_checks)[-1] == 'steps[id=start+2].goto: unknown step "nowhere"'


def test_every_overlap_of_hours_is_found(tmp_path: pathlib.Path) -> None:
    text = BASE + ('calendar: {hours: ["12:00-13:00", "09:00-17:00", "10:00-11:00", "17:00-24:00"]}\n'
                   "steps:\n  - action: visit\n")
    seq, diags = build_sequence(project(tmp_path, text))
    assert messages(diags) == ['calendar.hours[0]: "12:00-13:00" overlaps "09:00-17:00"',
                               'calendar.hours[2]: "10:00-11:00" overlaps "09:00-17:00"']
    assert seq is not None and [r.start.hour for r in seq.calendar.hours] == [9, 10, 12, 17]


def test_time_zone_suggestions(tmp_path: pathlib.Path) -> None:
    text = BASE + "calendar: {timezone: europe/berlin, fallback: America/NewYork}\nsteps:\n  - action: visit\n"
    _, diags = build_sequence(project(tmp_path, text))
    assert messages(diags) == [
        'calendar.timezone: unknown time zone "europe/berlin"; did you mean "Europe/Berlin"? '
        '(expected lead, sender or an IANA zone like "Europe/Berlin")',
        'calendar.fallback: unknown time zone "America/NewYork"; did you mean "America/New_York"? '
        '(expected an IANA zone like "Europe/Berlin")',
    ]


def test_odd_zone_names_are_errors_not_crashes(tmp_path: pathlib.Path) -> None:
    text = BASE + "calendar: {fallback: ../../etc/passwd, timezone: America}\nsteps:\n  - action: visit\n"
    _, diags = build_sequence(project(tmp_path, text))
    assert [m.split(";")[0].split(" (")[0] for m in messages(diags)] == [
        'calendar.fallback: unknown time zone "../../etc/passwd"', 'calendar.timezone: unknown time zone "America"']


def test_goto_next_and_on_timeout_next_are_errors(tmp_path: pathlib.Path) -> None:
    text = BASE + ("steps:\n  - {action: visit, goto: next}\n"
                   "  - {wait_for: accepted, timeout: 1 day, on_timeout: next}\n")
    seq, diags = build_sequence(project(tmp_path, text))
    assert seq is not None
    assert messages(diags) == [
        'steps[id=start].goto: "next" is not a step; leave this out to go on with the following step',
        'steps[id=start+1].on_timeout: "next" is not a step; leave this out to go on with the following step',
    ]


def test_branch_items_are_checked(tmp_path: pathlib.Path) -> None:
    text = BASE + ("steps:\n  - id: start\n    branch:\n      - {when: connected, goto: a, end: b}\n"
                   "      - {goto: a}\n      - {when: replied, default: next}\n  - {id: a, action: visit}\n")
    _, diags = build_sequence(project(tmp_path, text))
    assert messages(diags) == [
        'steps[id=start].branch[0]: a case goes on with either "goto" or "end", not both',
        'steps[id=start].branch[1]: a case needs "when" and then "goto" or "end" (or is the last item, "default")',
        'steps[id=start].branch[2]: the default item holds only "default"; move "when" to a case of its own',
    ]


def test_load_sequence_returns_the_sequence_with_warnings(tmp_path: pathlib.Path) -> None:
    path = project(tmp_path, BASE + "limits: {visit: 100}\nsteps:\n  - action: visit\n")
    seq, diags = load_sequence(path)
    assert seq is not None
    assert [d.severity for d in diags] == ["warning"]


def test_unreadable_and_directory_paths(tmp_path: pathlib.Path) -> None:
    assert messages(build_sequence(str(tmp_path))[1]) == ["is a directory, not a sequence file"]
    assert messages(build_sequence(str(tmp_path / "gone.yaml"))[1]) == ["cannot read file: No such file or directory"]


# --- many files -----------------------------------------------------------------------------------

GOOD = "version: 1\nname: {name}\nsteps:\n  - action: visit\n"


def tree(tmp_path: pathlib.Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def test_expand_paths_recurses_sorted_and_skips_hidden_and_config(tmp_path: pathlib.Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, {"seq/b.yaml": "", "seq/a.yml": "", "seq/sub/c.yaml": "", "seq/sub2/a.yaml": "",
                    "seq/notes.txt": "", "seq/.hidden.yaml": "", "seq/.git/x.yaml": "", "seq/seqrun.yaml": ""})
    monkeypatch.chdir(tmp_path)
    files, diags = expand_paths(["seq", "seq/b.yaml", "seq/./a.yml"])
    assert diags == []
    assert files == ["seq/a.yml", "seq/b.yaml", "seq/sub/c.yaml", "seq/sub2/a.yaml"]


def test_expand_paths_reports_missing_and_empty(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    files, diags = expand_paths(["nope.yaml", "empty/"])
    assert files == []
    assert [d.format() for d in diags] == ["nope.yaml: error: no such file or directory",
                                           "empty/: error: no .yaml or .yml files in this directory"]


def test_load_paths(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree(tmp_path, {"templates/.keep": "", "sequences/a.yaml": GOOD.format(name="a"),
                    "sequences/b.yaml": GOOD.format(name="a"), "sequences/c.yaml": GOOD.format(name="c") + "oops: 1\n",
                    "sequences/d.yaml": GOOD.format(name="d")})
    monkeypatch.chdir(tmp_path)
    seqs, diags, files = load_paths(["sequences/", "missing/"])
    assert files == 4
    assert [s.path for s in seqs] == ["sequences/a.yaml", "sequences/b.yaml", "sequences/d.yaml"]
    assert [d.format() for d in diags] == [
        "missing/: error: no such file or directory",
        'sequences/b.yaml:2:7: error: name: sequence name "a" is also used by sequences/a.yaml',
        'sequences/c.yaml:5:1: error: unknown key "oops" (expected one of: version, name, description, provider, '
        "senders, fields, calendar, limits, exit_when, steps)",
    ]
