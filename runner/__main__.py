"""`python -m runner` is the same as the `seqrun` command."""
from __future__ import annotations

from .cli import main

main()
