"""Template lint, context, rendering, output checks and the check against a lead CSV."""
from __future__ import annotations

import collections
import os
import pathlib

import pytest

from runner.language.jinja import company, first_name
from runner.language.model import (
    ActionStep,
    Calendar,
    FieldSpec,
    Limits,
    MessageTemplate,
    Pos,
    Sequence,
    TemplateRef,
    Variant,
)
from runner.language.templates import (
    TemplateRenderError,
    build_context,
    check_output,
    check_sequence_templates,
    pick_variant,
    preview_facts,
    preview_lead,
    render_message,
    render_note,
)
from runner.project.templaterows import check_templates_for_leads

FIXTURE = pathlib.Path(__file__).parent / "fixtures" / "templates" / "project"
YAML = "sequences/s.yaml"
FIELDS = (("full_name", False), ("company_name", False))


def pos(line: int, column: int = 5) -> Pos:
    return Pos(YAML, line, column)


def ref(name: str, line: int) -> TemplateRef:
    return TemplateRef(name, pos(line, 11))


def note_step(step_id: str, template: str, line: int = 3) -> ActionStep:
    return ActionStep(step_id, pos(line), "connect", note=ref(template, line))


def message_step(step_id: str, template: str, line: int = 5, **kwargs: object) -> ActionStep:
    return ActionStep(step_id, pos(line), "message", template=MessageTemplate(default=ref(template, line)), **kwargs)


def make_seq(templates_dir: pathlib.Path, *steps: ActionStep, fields: tuple[tuple[str, bool], ...] = FIELDS) -> Sequence:
    return Sequence(
        name="s", version=1, path=YAML, source_hash="", description="", provider=None, senders=(),
        fields=tuple(FieldSpec(name, required, pos(2)) for name, required in fields),
        calendar=Calendar(), limits=Limits(), exits=(), steps=steps, templates_dir=str(templates_dir), pos=pos(1, 1),
    )


@pytest.fixture
def project(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    """An empty project directory, also the working directory (diagnostics show relative paths)."""
    (tmp_path / "templates").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(project: pathlib.Path, name: str, text: str) -> None:
    (project / "templates" / name).write_text(text, encoding="utf-8")


def lint(project: pathlib.Path, *steps: ActionStep, **kwargs: object) -> list[str]:
    seq = make_seq(project / "templates", *steps, **kwargs)  # type: ignore[arg-type]
    return [d.format() for d in check_sequence_templates(seq)]


def context(seq: Sequence, invited_with_note: bool | None = True, **lead: str) -> dict[str, object]:
    fields = {"linkedin_profile_url": "https://www.linkedin.com/in/jane", **lead}
    return build_context(seq, fields, preview_facts(invited_with_note=invited_with_note),
                         {"name": "alice", "full_name": "Alice Example"})


# --- filters -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("full_name", "expected"), [
    ("Dr. Jane van der Berg", "Jane"),
    ("李雷", "李雷"),
    ("", ""),
    ("JANE DOE", "Jane"),
    ("o'neil", "O'Neil"),
    ("jean-pierre dupont", "Jean-Pierre"),
    ("JOSÉ GARCÍA", "José"),
    ("McKenzie Taylor", "McKenzie"),
    ("Dr.", ""),
    ("   ", ""),
])
def test_first_name(full_name: str, expected: str) -> None:
    assert first_name(full_name) == expected


def test_company_drops_legal_suffixes() -> None:
    assert company("Acme GmbH") == "Acme"
    assert company("Foo, Inc.") == "Foo"
    assert company("腾讯") == "腾讯"


# --- lint --------------------------------------------------------------------------------------------


def test_clean_templates_have_no_diagnostics(project: pathlib.Path) -> None:
    write(project, "note.j2", 'Hi {{ lead.full_name | first_name | fallback("there") }}, glad to connect!\n')
    write(project, "intro.j2", "{% if connected and lead.company_name %}At {{ lead.company_name }}?{% endif %}\n"
                               "{{ sender.full_name }} / {{ sequence.name }} / {{ tags | join(', ') }}\n")
    assert lint(project, note_step("connect", "note.j2"), message_step("intro", "intro.j2")) == []


def test_syntax_error_is_reported_at_the_template_line_with_jinjas_message(project: pathlib.Path) -> None:
    write(project, "intro.j2", "Hello\n\n{% if connected %}\n{{ lead.full_name }\n")
    assert lint(project, message_step("intro", "intro.j2")) == [
        "templates/intro.j2:4:1: error: unexpected '}'",
    ]


def test_undeclared_lead_field_names_the_step_and_the_declared_fields(project: pathlib.Path) -> None:
    write(project, "intro.j2", "Hi,\n\nhow is life as {{ lead.title }}?\n")
    assert lint(project, message_step("intro", "intro.j2")) == [
        "templates/intro.j2:3:1: error: lead.title is not a declared field (used by step intro of sequence s); "
        "declared fields: linkedin_profile_url, full_name, company_name (add it under `fields:`)",
    ]


def test_item_access_to_an_undeclared_field_is_caught_too(project: pathlib.Path) -> None:
    write(project, "intro.j2", "Hi {{ lead['nickname'] }}\n")
    assert lint(project, message_step("intro", "intro.j2"))[0].startswith(
        "templates/intro.j2:1:1: error: lead.nickname is not a declared field")


def test_unknown_names_get_a_suggestion(project: pathlib.Path) -> None:
    write(project, "intro.j2", "{% if conected %}hi{% endif %}\n{% set x = 1 %}{{ x }}{% for t in tags %}{{ loop.index }}{% endfor %}")
    assert lint(project, message_step("intro", "intro.j2")) == [
        'templates/intro.j2:1:1: error: unknown name "conected" (did you mean "connected"?) (used by step intro '
        "of sequence s); templates can use lead, sender, sequence and the facts connected, invite_pending, invited, "
        "invited_with_note, accepted, conversation_exists, replied, lead_messaged_first, days_since_last_message, "
        "messages_sent, blocked, tags",
    ]


def test_unknown_sender_attribute(project: pathlib.Path) -> None:
    write(project, "intro.j2", "Best,\n{{ sender.fullname }}\n")
    assert lint(project, message_step("intro", "intro.j2")) == [
        'templates/intro.j2:2:1: error: sender.fullname does not exist (used by step intro of sequence s); '
        "sender has: name, full_name",
    ]


def test_unknown_filters_and_tests_are_errors_even_inside_if(project: pathlib.Path) -> None:
    # Jinja itself only notices an unknown filter inside an `if` when the branch runs.
    write(project, "intro.j2", "{% if replied %}\n{{ lead.full_name | firstname }}\n{% endif %}\n"
                               "{{ lead.company_name is shiny }}\n{{ mystery }}\n")
    assert lint(project, message_step("intro", "intro.j2")) == [
        'templates/intro.j2:2:1: error: unknown filter "firstname" (did you mean "first_name"?) (used by step '
        "intro of sequence s); seqrun adds the filters first_name, last_name, fallback, company to Jinja's "
        "built-in ones",
        'templates/intro.j2:4:1: error: unknown test "shiny" (used by step intro of sequence s)',
        'templates/intro.j2:5:1: error: unknown name "mystery" (used by step intro of sequence s); templates can '
        "use lead, sender, sequence and the facts connected, invite_pending, invited, invited_with_note, accepted, "
        "conversation_exists, replied, lead_messaged_first, days_since_last_message, messages_sent, blocked, tags",
    ]


def test_a_template_used_by_several_steps_is_reported_once(project: pathlib.Path) -> None:
    write(project, "bump.j2", "{{ lead.title }}\n")
    steps = (message_step("first", "bump.j2", 5), message_step("second", "bump.j2", 6))
    assert lint(project, *steps) == [
        "templates/bump.j2:1:1: error: lead.title is not a declared field (used by steps first, second of "
        "sequence s); declared fields: linkedin_profile_url, full_name, company_name (add it under `fields:`)",
    ]


def test_missing_template_is_reported_at_the_reference_in_the_yaml(project: pathlib.Path) -> None:
    step = ActionStep("thanks", pos(9), "message", template=MessageTemplate(
        with_note=ref("thanks.j2", 11), without_note=ref("intro.j2", 12)))
    write(project, "intro.j2", "Hello there\n")
    assert lint(project, step) == [
        f'sequences/s.yaml:11:11: error: steps[id=thanks].template.with_note: template "thanks.j2" not found in '
        f"templates{os.sep}",
    ]


def test_variants_are_checked(project: pathlib.Path) -> None:
    write(project, "a.j2", "Hi {{ lead.role }}\n")
    write(project, "b.j2", "Hello there\n")
    step = ActionStep("bump", pos(7), "message", variants=(
        Variant("a", MessageTemplate(default=ref("a.j2", 8)), 1, pos(8)),
        Variant("b", MessageTemplate(default=ref("missing.j2", 9)), 1, pos(9)),
    ))
    assert lint(project, step) == [
        'sequences/s.yaml:9:11: error: steps[id=bump].variants[name=b].template: template "missing.j2" not found '
        f"in templates{os.sep}",
        "templates/a.j2:1:1: error: lead.role is not a declared field (used by step bump of sequence s); declared "
        "fields: linkedin_profile_url, full_name, company_name (add it under `fields:`)",
    ]


def test_a_note_whose_fixed_text_is_over_300_characters_can_never_fit(project: pathlib.Path) -> None:
    write(project, "long.j2", "{# a comment does not count #}\nHi {{ lead.full_name }}, " + "x" * 300 + "\n")
    # Text inside an `if` counts only as much as the shortest arm.
    write(project, "fits.j2", "Hi,{% if connected %}" + "y" * 400 + "{% else %}short{% endif %}\n")
    assert lint(project, note_step("connect", "long.j2"), note_step("again", "fits.j2", 4)) == [
        "templates/long.j2:1:1: error: the fixed text of this connect note is already 305 characters before any "
        "field is filled in; LinkedIn allows 300 (used by step connect of sequence s)",
    ]


def test_included_templates_are_checked_at_their_own_lines(project: pathlib.Path) -> None:
    write(project, "intro.j2", "Hello\n{% include 'signature.j2' %}\n{% include 'nowhere.j2' %}\n")
    write(project, "signature.j2", "Best,\n{{ sender.nickname }}\n")
    assert lint(project, message_step("intro", "intro.j2")) == [
        'templates/intro.j2:3:1: error: included template "nowhere.j2" not found',
        "templates/signature.j2:2:1: error: sender.nickname does not exist (used by step intro of sequence s); "
        "sender has: name, full_name",
    ]


def test_inmail_subject_problems_are_reported_at_the_step(project: pathlib.Path) -> None:
    write(project, "inmail.j2", "Hello there\n")
    broken = message_step("in1", "inmail.j2", 20, inmail=True, subject="About {{ lead.company_name }")
    undeclared = message_step("in2", "inmail.j2", 30, inmail=True, subject="About {{ lead.team }}")
    assert lint(project, broken, undeclared) == [
        "sequences/s.yaml:20:5: error: steps[id=in1].subject: unexpected '}'",
        "sequences/s.yaml:30:5: error: steps[id=in2].subject: lead.team is not a declared field (used by step in2 "
        "of sequence s); declared fields: linkedin_profile_url, full_name, company_name (add it under `fields:`)",
    ]


def test_template_that_is_not_utf8(project: pathlib.Path) -> None:
    (project / "templates" / "intro.j2").write_bytes(b"Gr\xfc\xdfe\n")
    assert lint(project, message_step("intro", "intro.j2", 5)) == [
        'sequences/s.yaml:5:11: error: steps[id=intro].template: template "intro.j2" is not valid UTF-8',
    ]


# --- context and rendering ---------------------------------------------------------------------------


def test_render_note_and_message(project: pathlib.Path) -> None:
    write(project, "note.j2", "{# note #}\nHi {{ lead.full_name | first_name }}, glad to connect!\n\n")
    write(project, "intro.j2", "Hi {{ lead.full_name | first_name }},\n\nhow is {{ lead.company_name | company }}?\n"
                               "{{ sender.full_name }}\n")
    seq = make_seq(project / "templates", note_step("connect", "note.j2"), message_step("intro", "intro.j2"))
    ctx = context(seq, full_name="JANE DOE", company_name="Acme GmbH")
    note = render_note(seq, seq.steps[0], ctx)  # type: ignore[arg-type]
    assert note is not None and (note.text, note.template, note.length) == ("Hi Jane, glad to connect!", "note.j2", 25)
    message = render_message(seq, seq.steps[1], ctx, invited_with_note=True, lead_key="jane")  # type: ignore[arg-type]
    assert message.text == "Hi Jane,\n\nhow is Acme?\nAlice Example"
    assert (message.template, message.variant, message.subject) == ("intro.j2", None, None)


def test_connect_without_note_renders_nothing(project: pathlib.Path) -> None:
    seq = make_seq(project / "templates", ActionStep("connect", pos(3), "connect"))
    assert render_note(seq, seq.steps[0], context(seq)) is None  # type: ignore[arg-type]


def test_with_note_and_without_note_pick_by_how_the_invite_was_sent(project: pathlib.Path) -> None:
    write(project, "thanks.j2", "Thanks for accepting!")
    write(project, "intro.j2", "Nice to meet you.")
    step = ActionStep("first", pos(5), "message", template=MessageTemplate(
        with_note=ref("thanks.j2", 6), without_note=ref("intro.j2", 7)))
    seq = make_seq(project / "templates", step)
    assert render_message(seq, step, context(seq), invited_with_note=True, lead_key="k").text == "Thanks for accepting!"
    assert render_message(seq, step, context(seq, False), invited_with_note=False, lead_key="k").text == "Nice to meet you."


def test_inmail_subject_is_rendered(project: pathlib.Path) -> None:
    write(project, "inmail.j2", "Hello {{ lead.full_name | first_name }}")
    step = message_step("in", "inmail.j2", inmail=True, subject="  CRM at {{ lead.company_name | company }} ")
    seq = make_seq(project / "templates", step)
    rendered = render_message(seq, step, context(seq, full_name="Li Lei", company_name="Foo, Inc."),
                              invited_with_note=False, lead_key="k")
    assert (rendered.text, rendered.subject) == ("Hello Li", "CRM at Foo")


def render_text(project: pathlib.Path, source: str, invited_with_note: bool = True, name: str = "t.j2",
                **lead: str) -> str:
    # The environment caches compiled templates per directory (templates do not change under a
    # running process): a test rendering two different sources uses two file names.
    write(project, name, source)
    seq = make_seq(project / "templates", message_step("m", name))
    return render_message(seq, seq.steps[0], context(seq, invited_with_note, **lead),  # type: ignore[arg-type]
                          invited_with_note=invited_with_note, lead_key="k").text


def render_error(project: pathlib.Path, source: str, name: str = "t.j2", **lead: str) -> tuple[str, int, str]:
    with pytest.raises(TemplateRenderError) as info:
        render_text(project, source, name=name, **lead)
    return info.value.template, info.value.line, str(info.value)


def test_missing_optional_field_is_false_in_if_and_filled_by_fallback(project: pathlib.Path) -> None:
    source = ('Hi {{ lead.full_name | first_name | fallback("there") }}'
              '{% if lead.company_name %} at {{ lead.company_name }}{% endif %}.'
              '{% if lead.company_name != "Acme" %} Not Acme.{% endif %} {{ lead.company_name | default("-") }}')
    assert render_text(project, source) == "Hi there. Not Acme. -"
    assert render_text(project, source, full_name="Jane Doe", company_name="Initech") == \
        "Hi Jane at Initech. Not Acme. Initech"


def test_printing_a_missing_optional_field_fails_with_advice(project: pathlib.Path) -> None:
    assert render_error(project, "Hello,\n\nhow is {{ lead.company_name }}?") == (
        "t.j2", 3,
        'message from t.j2 failed at line 3: lead.company_name is empty for this lead; write '
        '{{ lead.company_name | fallback("...") }} or put it inside {% if lead.company_name %}',
    )


def test_empty_name_with_first_name_is_caught_as_a_greeting_without_a_name(project: pathlib.Path) -> None:
    source = "Hi {{ lead.full_name | first_name }},\n\nquick question."
    assert render_error(project, source, full_name="") == (
        "t.j2", 0,
        'message from t.j2 has a greeting without a name: "Hi ," (is the name empty for this lead? use '
        '| fallback("there"))',
    )
    assert render_text(project, source, full_name="Dr. Jane van der Berg") == "Hi Jane,\n\nquick question."


def test_misspelled_field_fails_strictly(project: pathlib.Path) -> None:
    assert render_error(project, "Hi {{ lead.ful_name }}", full_name="Jane") == (
        "t.j2", 1,
        "message from t.j2 failed at line 1: lead.ful_name does not exist; lead has: linkedin_profile_url, "
        "full_name, company_name",
    )
    assert render_error(project, "Hi\n{{ lead_name }}", name="u.j2")[2] == \
        "message from u.j2 failed at line 2: 'lead_name' is undefined"


@pytest.mark.parametrize("source", [
    "{{ ''.__class__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ lead.__init__ }}",
    "{{ lead._values }}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_sandbox_refuses_python_internals(project: pathlib.Path, source: str) -> None:
    _, _, message = render_error(project, source)
    assert message.startswith("message from t.j2 failed at line 1: ")
    assert "unsafe" in message or "has no attribute" in message or "undefined" in message


def test_template_runtime_errors_become_render_errors(project: pathlib.Path) -> None:
    assert render_error(project, "a\nb\n{{ 1 / 0 }}") == (
        "t.j2", 3, "message from t.j2 failed at line 3: ZeroDivisionError: division by zero")


@pytest.mark.parametrize(("text", "problem"), [
    ("", "is empty"),
    (" \n\t ", "is empty"),
    ("Hi , how are you?", 'has a greeting without a name: "Hi ,"'),
    ("Hello !", 'has a greeting without a name: "Hello !"'),
    ("Dear \nthanks", 'has a greeting without a name: "Dear "'),
    ("Bonjour , merci", 'has a greeting without a name: "Bonjour ,"'),
    ("Hi {{ company }}", 'still contains "{{" after rendering'),
    ("Price: 100 }}", 'still contains "}}" after rendering'),
    ("{% raw %}", 'still contains "{%" after rendering'),
])
def test_output_a_human_would_be_embarrassed_by_is_refused(text: str, problem: str) -> None:
    with pytest.raises(TemplateRenderError) as info:
        check_output(text.strip(), "message from t.j2", "t.j2", 8000)
    assert str(info.value) == f"message from t.j2 {problem}" + (
        ' (is the name empty for this lead? use | fallback("there"))' if "greeting" in problem else "")


@pytest.mark.parametrize("text", ["Hi, Jane!", "Hi! Great to meet you.", "Hello Jane,", "This is hi-fi.", "李雷, hi"])
def test_ordinary_greetings_pass(text: str) -> None:
    check_output(text, "message from t.j2", "t.j2", 8000)


def test_lead_data_cannot_smuggle_template_tags(project: pathlib.Path) -> None:
    assert render_error(project, "About {{ lead.company_name }}", company_name="{{ evil }}")[2] == \
        'message from t.j2 still contains "{{" after rendering'


def test_note_length_counts_characters_after_stripping(project: pathlib.Path) -> None:
    write(project, "note.j2", "\n  {{ lead.company_name }}  \n\n")
    seq = make_seq(project / "templates", note_step("connect", "note.j2"))
    step = seq.steps[0]
    note = render_note(seq, step, context(seq, None, company_name="é" * 300))  # type: ignore[arg-type]
    assert note is not None and note.length == 300
    with pytest.raises(TemplateRenderError) as info:
        render_note(seq, step, context(seq, None, company_name="é" * 301))  # type: ignore[arg-type]
    assert str(info.value) == "connect note from note.j2 is 301 characters; LinkedIn allows 300"


def test_message_over_8000_characters_is_refused(project: pathlib.Path) -> None:
    assert len(render_text(project, "{{ lead.company_name }}", company_name="x" * 8000)) == 8000
    assert render_error(project, "{{ lead.company_name }}", company_name="x" * 8001)[2] == \
        "message from t.j2 is 8001 characters; LinkedIn allows 8000"


# --- variants ----------------------------------------------------------------------------------------


def ab_step(weights: tuple[int, int] = (70, 30)) -> ActionStep:
    return ActionStep("bump", pos(7), "message", variants=(
        Variant("a", MessageTemplate(default=ref("a.j2", 8)), weights[0], pos(8)),
        Variant("b", MessageTemplate(default=ref("b.j2", 9)), weights[1], pos(9)),
    ))


def test_pick_variant_is_stable_across_runs_and_machines() -> None:
    # sha256 is the same everywhere: these picks must never change, or running leads would switch arms.
    step = ab_step()
    picks = [pick_variant(step, key).name for key in ("jane-doe", "li-lei", "oneil", "sn:ACwAA123", "x")]  # type: ignore[union-attr]
    assert picks == ["a", "a", "a", "a", "b"]
    assert pick_variant(message_step("m", "t.j2"), "jane-doe") is None


def test_pick_variant_follows_the_weights() -> None:
    step = ab_step()
    counts = collections.Counter(pick_variant(step, f"lead-{i}").name for i in range(20_000))  # type: ignore[union-attr]
    assert 0.68 < counts["a"] / 20_000 < 0.72


def test_pick_variant_depends_on_the_step() -> None:
    a, b = ab_step((1, 1)), ActionStep("other", pos(7), "message", variants=ab_step((1, 1)).variants)
    differ = sum(pick_variant(a, f"k{i}") != pick_variant(b, f"k{i}") for i in range(1000))
    assert 400 < differ < 600


def test_render_message_uses_the_leads_variant(project: pathlib.Path) -> None:
    write(project, "a.j2", "Short one.")
    write(project, "b.j2", "Long story.")
    step = ab_step()
    seq = make_seq(project / "templates", step)
    rendered = render_message(seq, step, context(seq), invited_with_note=False, lead_key="x")
    assert (rendered.text, rendered.template, rendered.variant) == ("Long story.", "b.j2", "b")


# --- the fixture project: previews and the check against leads.csv ----------------------------------


def fixture_sequence() -> Sequence:
    """sequences/preview.yaml of the fixture project, built by hand."""
    path = "sequences/preview.yaml"

    def at(name: str, line: int) -> TemplateRef:
        return TemplateRef(name, Pos(path, line, 5))

    steps = (
        ActionStep("connect", Pos(path, 13, 5), "connect", note=at("note.j2", 13)),
        ActionStep("thanks", Pos(path, 15, 5), "message", template=MessageTemplate(
            with_note=at("thanks.j2", 17), without_note=at("intro.j2", 17))),
        ActionStep("bump", Pos(path, 19, 5), "message", variants=(
            Variant("short", MessageTemplate(default=at("short.j2", 22)), 70, Pos(path, 22, 9)),
            Variant("story", MessageTemplate(default=at("story.j2", 23)), 30, Pos(path, 23, 9)))),
        ActionStep("inmail", Pos(path, 25, 5), "message", template=MessageTemplate(default=at("inmail.j2", 29)),
                   inmail=True, subject="CRM data at {{ lead.company_name | company | fallback('your team') }}"),
    )
    return Sequence(
        name="preview", version=1, path=path, source_hash="", description="", provider=None, senders=(),
        fields=(FieldSpec("full_name", False, Pos(path, 4, 3)), FieldSpec("company_name", False, Pos(path, 5, 3))),
        calendar=Calendar(), limits=Limits(), exits=(), steps=steps, templates_dir=str(FIXTURE / "templates"),
        pos=Pos(path, 1, 1),
    )


def test_fixture_templates_lint_clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURE)
    assert check_sequence_templates(fixture_sequence()) == []


def test_check_templates_for_leads_reports_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURE)
    assert [d.format() for d in check_templates_for_leads(fixture_sequence(), "leads.csv")] == [
        'leads.csv:3: error: row 3 (https://www.linkedin.com/in/no-name-lead): message from intro.j2 has a '
        'greeting without a name: "Hi ," (is the name empty for this lead? use | fallback("there"))',
        "leads.csv:5: error: row 5 (linkedin.com/in/long-company): connect note from note.j2 is 330 characters; "
        "LinkedIn allows 300",
    ]


def test_check_templates_for_leads_includes_csv_problems_and_skips_bad_rows(tmp_path: pathlib.Path) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url,full_name\nhttps://example.com/jane,\nhttps://www.linkedin.com/in/bob,Bob\n",
                   encoding="utf-8")
    shown = str(csv)
    assert [d.format() for d in check_templates_for_leads(fixture_sequence(), shown)] == [
        f'{shown}:2: error: row 2: linkedin_profile_url "https://example.com/jane" is not a LinkedIn profile URL '
        '(host "example.com" is not linkedin.com)',
    ]


def test_preview_lead_shows_both_invite_cases_and_the_leads_variant() -> None:
    seq = fixture_sequence()
    lead = {"linkedin_profile_url": "https://www.linkedin.com/in/li-lei", "full_name": "李雷", "company_name": "腾讯"}
    previews = preview_lead(seq, lead, "li-lei", {"name": "alice"})
    assert [(p.step, p.kind, p.case, p.variant, p.template) for p in previews] == [
        ("connect", "note", None, None, "note.j2"),
        ("thanks", "message", "with_note", None, "thanks.j2"),
        ("thanks", "message", "without_note", None, "intro.j2"),
        ("bump", "message", None, "short", "short.j2"),
        ("inmail", "InMail", None, None, "inmail.j2"),
    ]
    assert all(p.error is None for p in previews)
    assert previews[2].rendered is not None
    assert previews[2].rendered.text == "Hi 李雷,\n\nI'm reaching out to a few operations leaders like you at 腾讯 about CRM data quality."
    assert previews[4].rendered is not None and previews[4].rendered.subject == "CRM data at 腾讯"
    every = preview_lead(seq, lead, "li-lei", {"name": "alice"}, all_variants=True)
    assert [p.variant for p in every if p.step == "bump"] == ["short", "story"]


# --- the template-lint corpus, through `seqrun validate` ---------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINT = pathlib.Path("tests/fixtures/templates/lint")
LINT_FILES = sorted(p.name for p in (ROOT / LINT).glob("*.yaml"))


@pytest.mark.parametrize("name", LINT_FILES)
def test_lint_corpus(name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`seqrun validate tests/fixtures/templates/lint/X.yaml`, run from the repository root, prints
    exactly the lines of X.expected (the templates are in tests/fixtures/templates/)."""
    from runner.cli.main import main

    monkeypatch.chdir(ROOT)
    path = LINT / name
    code = main(["validate", str(path)])
    lines = capsys.readouterr().out.splitlines()
    expected = (ROOT / path.with_suffix(".expected")).read_text(encoding="utf-8").splitlines()
    assert (code, lines[:-1]) == (1, expected)


def test_validate_with_leads_reports_rows(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from runner.cli.main import main

    monkeypatch.chdir(FIXTURE)
    assert main(["validate", "sequences/preview.yaml", "--leads", "leads.csv"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        'leads.csv:3: error: row 3 (https://www.linkedin.com/in/no-name-lead): message from intro.j2 has a '
        'greeting without a name: "Hi ," (is the name empty for this lead? use | fallback("there"))',
        "leads.csv:5: error: row 5 (linkedin.com/in/long-company): connect note from note.j2 is 330 characters; "
        "LinkedIn allows 300",
        "2 errors in 1 file",
    ]


def test_compile_errors_jinja_finds_late_are_reported(project: pathlib.Path) -> None:
    write(project, "intro.j2", "{% block a %}x{% endblock %}\n{% block a %}{{ mystery }}{% endblock %}\n")
    assert lint(project, message_step("intro", "intro.j2")) == [
        "templates/intro.j2:2:1: error: block 'a' defined twice",
        'templates/intro.j2:2:1: error: unknown name "mystery" (used by step intro of sequence s); templates can use '
        "lead, sender, sequence and the facts connected, invite_pending, invited, invited_with_note, accepted, "
        "conversation_exists, replied, lead_messaged_first, days_since_last_message, messages_sent, blocked, tags",
    ]


def test_field_names_are_never_shadowed_by_methods(project: pathlib.Path) -> None:
    write(project, "t.j2", "{{ lead.items }} {{ lead.keys }} {{ lead.get }} {{ 'items' in lead }} {{ 'get' in lead }}")
    seq = make_seq(project / "templates", message_step("m", "t.j2"), fields=(("items", True), ("keys", True),
                                                                             ("get", False)))
    ctx = build_context(seq, {"linkedin_profile_url": "u", "items": "3 items", "keys": "two keys", "get": " "},
                        preview_facts(invited_with_note=False), {"name": "alice"})
    with pytest.raises(TemplateRenderError) as info:
        render_message(seq, seq.steps[0], ctx, invited_with_note=False, lead_key="k")  # type: ignore[arg-type]
    assert str(info.value) == ('message from t.j2 failed at line 1: lead.get is empty for this lead; write '
                               '{{ lead.get | fallback("...") }} or put it inside {% if lead.get %}')
    write(project, "u.j2", "{{ lead.items }} {{ lead.keys }} {{ 'items' in lead }} {{ 'get' in lead }}")
    step = message_step("m", "u.j2")
    assert render_message(seq, step, ctx, invited_with_note=False, lead_key="k").text == "3 items two keys True False"


def test_check_templates_for_leads_renders_for_every_sender(monkeypatch: pytest.MonkeyPatch,
                                                             tmp_path: pathlib.Path) -> None:
    monkeypatch.chdir(FIXTURE)
    csv = tmp_path / "leads.csv"
    csv.write_text("linkedin_profile_url,full_name\nhttps://www.linkedin.com/in/jane-doe,Jane Doe\n", encoding="utf-8")
    seq = fixture_sequence()
    assert check_templates_for_leads(seq, str(csv), senders=[{"name": "a"}, {"name": "b"}]) == []
