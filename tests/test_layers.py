"""The dependencies between layers point one way: the language modules (reading and checking a
sequence, its templates and its times) never load the store, the project's config or the CSV reader."""
from __future__ import annotations

import subprocess
import sys

LANGUAGE_MODULES = tuple(f"language.{m}" for m in (
    "loader", "model", "checks", "schemacheck", "templates", "templatelint", "jinja", "calendar", "durations", "graph",
    "yamlsrc", "urls", "builder", "diagnostics", "paths"))
NOT_BELOW_LANGUAGE = ("peewee", "runner.store", "runner.project", "runner.leads",
                      "runner.project.discovery")


def loaded_after_importing(modules: tuple[str, ...]) -> set[str]:
    """The modules a fresh interpreter has loaded once it imported `modules` (nothing else runs first)."""
    code = ("import sys\n" + "".join(f"import runner.{m}\n" for m in modules) + "print('\\n'.join(sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def test_language_modules_load_neither_the_store_nor_the_project() -> None:
    loaded = loaded_after_importing(LANGUAGE_MODULES)
    assert {f"runner.{m}" for m in LANGUAGE_MODULES} <= loaded
    assert sorted(m for m in NOT_BELOW_LANGUAGE if m in loaded) == []


def test_each_language_module_alone_loads_neither() -> None:
    for module in LANGUAGE_MODULES:
        loaded = loaded_after_importing((module,))
        assert (module, sorted(m for m in NOT_BELOW_LANGUAGE if m in loaded)) == (module, [])
