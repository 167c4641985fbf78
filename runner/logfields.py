"""The ids an engine log record carries as fields (`extra=`), beside its message.

`seqrun serve --log-format json` writes them as `lead`, `enrollment`, `sender` and `step`
(runner.server.logs), so that a log search can follow one lead or one sender; text logs show only
the message, which names them too. Ids only: never a lead's data, a message's text or a credential.
"""
from __future__ import annotations

from typing import Any


def ids(*, lead: str | None = None, enrollment: int | None = None, sender: str | None = None,
        step: str | None = None) -> dict[str, Any]:
    """The `extra` of a log call: the ids given (None left out)."""
    given = {"lead": lead, "enrollment": enrollment, "sender": sender, "step": step}
    return {name: value for name, value in given.items() if value is not None}


def of_ctx(ctx: Any, step: str | None = None) -> dict[str, Any]:
    """The ids of a lead being moved (a `runner.engine.steps.Ctx`): its lead, enrollment, sender and step."""
    return ids(lead=ctx.lead.key, enrollment=ctx.enr.id, sender=ctx.sender.name, step=step or ctx.enr.step_id)
