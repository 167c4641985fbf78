"""One module per `seqrun` subcommand; each exposes `command` (or `COMMANDS`)."""
