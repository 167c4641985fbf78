"""Versions of a sequence: a lead runs the exact version it started on, whatever the files say now.

A version is the sequence's YAML text and the text of every template it uses (those they include
too), named by `Sequence.source_hash`. Importing leads stores the version they start on
(`remember`); an enrollment's `sequence_hash` names it. The engine runs each lead on its own
version (`Runtime.sequence_for`, which rebuilds a stored version with `load_version` and caches it
by hash), so inserting, removing or renaming a step, or rewording a template, never changes what a
lead already in the sequence does: nothing is repeated, nothing stranded. Only the calendar and the
limits are the sequence's current ones for every lead: they are promises about the sequence as a
whole (a lowered limit holds at once).

`edit_report` compares the files with the store before anything runs (`seqrun run`, and `seqrun
validate` when the project has a database): which leads stay on an earlier version, and which of
them stand on a step the edit removed, renamed or shifted; `absent_report` (run only) names the
sequences with running leads that no file defines any more. `seqrun leads migrate` (`runner.migrate`)
moves them to the current version.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
from collections import defaultdict
from collections.abc import Mapping

from runner.language.diagnostics import Diagnostic, warning
from runner.language.loader import build_stored
from runner.language.model import ActionStep, BranchStep, EndStep, Sequence, Step, WaitForStep, WaitStep
from runner.language.schemacheck import plural
from runner.store.versions import running_steps, running_versions, save_version, stored_version, version_dates

log = logging.getLogger(__name__)


def remember(seq: Sequence, now: dt.datetime) -> None:
    """Store the version `seq` is (once; inside the caller's transaction)."""
    save_version(hash=seq.source_hash, sequence=seq.name, path=seq.path, source=seq.source,
                 templates=dict(seq.templates), templates_dir=seq.templates_dir, now=now)


def load_version(version_hash: str) -> Sequence | None:
    """A stored version rebuilt from its text, or None when it is not stored or no longer loads."""
    stored = stored_version(version_hash)
    if stored is None:
        return None
    seq, diags = build_stored(stored.source, stored.templates, path=stored.path, templates_dir=stored.templates_dir,
                              version_hash=version_hash)
    if seq is None:
        log.error("version %s of sequence %s does not load any more: %s", version_hash[:12], stored.sequence,
                  "; ".join(d.format() for d in diags if d.severity == "error"))
    return seq


def with_current_policy(old: Sequence, current: Sequence | None) -> Sequence:
    """An earlier version, under the current calendar and limits of its sequence (see the docstring)."""
    if current is None:
        return old
    return dataclasses.replace(old, calendar=current.calendar, limits=current.limits)


# --- comparing steps ------------------------------------------------------------------------------

def describe(step: Step) -> str:
    """What a step does, in a few words: `message thanks.j2`, `wait 3 days`, `end messaged`."""
    if isinstance(step, ActionStep):
        if step.action == "connect":
            return f"connect with note {step.note.name}" if step.note else "connect without a note"
        if step.action == "message":
            kind = "InMail" if step.inmail else "message"
            if step.variants:
                return f"{kind} with variants {', '.join(v.name for v in step.variants)}"
            names = [t.name for t in step.template.all()] if step.template else []
            return f"{kind} {' / '.join(names)}"
        if step.action == "tag":
            return f"tag {', '.join(step.tags)}"
        return step.action
    if isinstance(step, WaitStep):
        return f"wait {step.duration.text}"
    if isinstance(step, WaitForStep):
        return f"wait for {step.event}"
    if isinstance(step, BranchStep):
        return "branch on " + ", ".join(c.when.source for c in step.cases) if step.cases else "branch"
    assert isinstance(step, EndStep)
    return f"end {step.outcome}"


def same_step(old: Sequence, new: Sequence, step_id: str) -> bool:
    """`step_id` names a step in both versions and it does the same thing (a lead may go on there)."""
    if step_id not in old.index or step_id not in new.index:
        return False
    return does_the_same(old.step(step_id), new.step(step_id))


def does_the_same(a: Step, b: Step) -> bool:
    """Two steps, of one version or two, do the same thing (whatever their ids and places)."""
    if describe(a) != describe(b):
        return False
    if isinstance(a, ActionStep) and isinstance(b, ActionStep):
        return _same_refs(a, b)  # the variants' weights and the InMail subject count too
    return True


def _same_refs(a: ActionStep, b: ActionStep) -> bool:
    # TemplateRefs carry positions, which move with any edit above them: compare names only.
    def names(s: ActionStep) -> tuple[object, ...]:
        return (s.note.name if s.note else None,
                tuple(t.name for t in s.template.all()) if s.template else (),
                tuple((v.name, v.weight, tuple(t.name for t in v.template.all())) for v in s.variants),
                s.inmail, s.subject, s.tags)
    return names(a) == names(b)


def is_positional(step_id: str) -> bool:
    """Ids the loader made up from a step's place (`accepted+2`): they move when steps are inserted."""
    return "+" in step_id


# --- the report before a run ----------------------------------------------------------------------

def edit_report(sequences: Mapping[str, Sequence]) -> list[Diagnostic]:
    """Warnings about the running leads of `sequences` that run an earlier version than the file.

    Nothing here is an error: such a lead goes on exactly as it started, so an edit can neither
    repeat nor strand an action. But the person editing must know that the edit does not reach
    those leads until they are moved (`seqrun leads migrate`), and where a move needs a step map.
    """
    groups: dict[str, dict[str, dict[str | None, int]]] = defaultdict(dict)
    running: dict[str, int] = defaultdict(int)
    for name, version, count in running_versions():
        if name in sequences:
            running[name] += count
            if version != sequences[name].source_hash:
                groups[name][version] = running_steps(name, version)
    diags: list[Diagnostic] = []
    for name, versions in sorted(groups.items()):
        diags += _report_sequence(sequences[name], versions, running[name])
    return diags


def absent_report(sequences: Mapping[str, Sequence]) -> list[Diagnostic]:
    """Warnings about running leads of sequences that no file defines any more (`seqrun run` only:
    validate may be given a few files of a project). Such leads are paused when due."""
    versions: dict[str, list[str]] = defaultdict(list)
    running: dict[str, int] = defaultdict(int)
    for name, version, count in running_versions():
        if name not in sequences:
            versions[name].append(version)
            running[name] += count
    diags = []
    for name, hashes in sorted(versions.items()):
        stored = [v for v in (stored_version(h) for h in hashes) if v is not None]
        file = shown(max(stored, key=lambda v: v.created_at).path) if stored else "sequences"
        diags.append(warning(file, 0, 0, f"{plural(running[name], 'running lead')} of sequence {name}: no file in "
                                         "sequences/ defines that sequence any more (its file removed, or its name "
                                         f"changed?); they are paused when due until a sequence named {name} is back"))
    return diags


def shown(path: str) -> str:
    """A file as messages show it: relative to the current directory when inside it."""
    here = os.getcwd() + os.sep
    return os.path.relpath(path) if os.path.isabs(path) and path.startswith(here) else path


def _report_sequence(seq: Sequence, versions: dict[str, dict[str | None, int]], running: int) -> list[Diagnostic]:
    file = shown(seq.path)
    at_name = (file, seq.pos.line, seq.pos.column)
    earlier = sum(sum(steps.values()) for steps in versions.values())
    move = f"seqrun leads migrate --sequence {seq.name}"
    diags = [warning(*at_name, f"{earlier} of the {plural(running, 'running lead')} of sequence {seq.name} started "
                               f"on an earlier version of this file and {'keeps' if earlier == 1 else 'keep'} to it "
                               f"until moved with `{move}`")]
    dates = version_dates(versions)
    for version, steps in sorted(versions.items(), key=lambda kv: (dates.get(kv[0], dt.datetime.max.replace(
            tzinfo=dt.UTC)), kv[0])):
        old = load_version(version)
        for step_id, count in sorted(steps.items(), key=lambda kv: kv[0] or ""):
            if step_id is None:
                continue
            leads = plural(count, "lead")
            if old is None:
                diags.append(warning(*at_name, f"{leads} at step {step_id} run a version of sequence {seq.name} "
                                               "that is not stored (imported before seqrun kept versions); they "
                                               f"are paused when due until moved with `{move}`"))
                continue
            diags += _report_step(seq, file, old, step_id, count, move)
    return diags


def _report_step(seq: Sequence, file: str, old: Sequence, step_id: str, count: int, move: str) -> list[Diagnostic]:
    if step_id not in old.index or same_step(old, seq, step_id):
        return []  # the same step in both: a move takes them there without a map
    was = describe(old.step(step_id))
    one = count == 1
    stand = f"{plural(count, 'lead')} {'stands' if one else 'stand'}"
    hint = (f"{'it keeps to its' if one else 'they keep to their'} version; to move {'it' if one else 'them'}, "
            f"map the step: `{move} --map {step_id}=STEP`")
    if step_id in seq.index:
        step = seq.step(step_id)
        why = "a positional id that moved" if is_positional(step_id) else "an id whose step changed"
        return [warning(file, step.pos.line, step.pos.column,
                        f"steps[id={step_id}]: {stand} at {step_id} ({was}) in the version {'it' if one else 'they'} "
                        f"started on; in this file {step_id} is {describe(step)} ({why}): {hint}", step_id)]
    return [warning(file, seq.pos.line, seq.pos.column,
                    f"{stand} at step {step_id} ({was}), which this file no longer has (removed or renamed): {hint}")]
