"""The sequence language: reading, checking and rendering sequences, templates and times.

Nothing here loads the store or a project (tests/test_layers.py)."""
