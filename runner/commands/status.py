"""PLACEHOLDER: the `seqrun status` command is being built in this session."""
from __future__ import annotations

import click

from ..diagnostics import UserError


@click.command("status", hidden=True)
def command() -> None:
    raise UserError("seqrun status is not built yet")
