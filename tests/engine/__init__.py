"""Interpreter tests: `Engine.tick` on real SQLite stores, a virtual clock and the sandbox or stubs."""
