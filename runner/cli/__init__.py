"""The `seqrun` command line."""
