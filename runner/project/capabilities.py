"""Can the senders' providers perform every step of a sequence? Checked before anything runs.

`seqrun validate` (when the project's seqrun.yaml is known), `seqrun run` and `seqrun simulate`
refuse a sequence with a step that a sender's provider cannot perform (a profile visit on a
provider without one, an InMail where there is none), naming the step's file and line and the
sender. The providers' abilities are `runner.providers.CAPABILITIES`.
"""
from __future__ import annotations

from collections.abc import Iterable

from runner.language.diagnostics import Diagnostic, UserError, error
from runner.language.model import ActionStep, Sequence
from runner.project.config import SenderConfig
from runner.providers import CAPABILITIES, why_not

#: the ability each provider action needs (an InMail is a message step with `inmail: true`)
PROVIDER_ACTIONS = ("visit", "connect", "message", "withdraw")
_VERBS = {"visit": "visit a profile", "connect": "send an invitation", "message": "send a message",
          "inmail": "send an InMail", "withdraw": "withdraw an invitation"}


def needed(step: ActionStep) -> str | None:
    if step.action not in PROVIDER_ACTIONS:
        return None
    return "inmail" if step.action == "message" and step.inmail else step.action


def check_capabilities(seq: Sequence, senders: Iterable[SenderConfig], *,
                       provider: str | None = None) -> list[Diagnostic]:
    """One error per (step, sender) the sender's provider (or `provider` for all) cannot perform."""
    runs_on = [s for s in senders if not seq.senders or s.name in seq.senders]
    diags: list[Diagnostic] = []
    for step in seq.steps:
        if not isinstance(step, ActionStep) or (ability := needed(step)) is None:
            continue
        for sender in runs_on:
            name = provider or sender.provider
            can = CAPABILITIES.get(name, frozenset())
            if ability not in can:
                reason = why_not(name, ability)
                because = f": {reason}" if reason else f" (it can: {', '.join(sorted(can)) or 'nothing'})"
                diags.append(error(step.pos.file, step.pos.line, step.pos.column,
                                   f"steps[id={step.id}]: sender {sender.name} acts through {name}, which cannot "
                                   f"{_VERBS[ability]}{because}", step=step.id))
            elif step.action == "connect" and step.note is not None and (reason := why_not(name, "note")):
                diags.append(error(step.pos.file, step.pos.line, step.pos.column,
                                   f"steps[id={step.id}].note: sender {sender.name} acts through {name}, which "
                                   f"cannot send a note with the invitation: {reason}", step=step.id))
    return diags


def require_capabilities(sequences: Iterable[Sequence], senders: Iterable[SenderConfig], *,
                         provider: str | None = None) -> None:
    """At the start of `run` and `simulate`: every step of every sequence, or a UserError naming them."""
    senders = list(senders)
    diags = [d for seq in sequences for d in check_capabilities(seq, senders, provider=provider)]
    if diags:
        raise UserError("a sender's provider cannot perform these steps; use another sender or provider for the "
                        "sequence, or remove the steps", diags)
