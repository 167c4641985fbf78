"""`python -m runner` is the same as the `seqrun` command."""
from __future__ import annotations

from runner import main

main()
