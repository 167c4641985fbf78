"""PLACEHOLDER: the `seqrun export` command is being built in this session."""
from __future__ import annotations

import click

from ..diagnostics import UserError


@click.command("export", hidden=True)
def command() -> None:
    raise UserError("seqrun export is not built yet")
