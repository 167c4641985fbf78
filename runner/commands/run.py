"""PLACEHOLDER: the `seqrun run` command is being built in this session."""
from __future__ import annotations

import click

from ..diagnostics import UserError


@click.command("run", hidden=True)
def command() -> None:
    raise UserError("seqrun run is not built yet")
