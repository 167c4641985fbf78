"""The JSON schema agrees with the registries and is fit for editors (descriptions, closed objects)."""
from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

from runner.language import model
from runner.language.schemacheck import load_schema
from runner.providers import CAPABILITIES

ROOT = pathlib.Path(__file__).resolve().parent.parent
SCHEMA = load_schema()
DEFS = SCHEMA["$defs"]


def walk(schema: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every subschema with its location, skipping `if` clauses (conditions, not definitions)."""
    if isinstance(schema, dict):
        yield where, schema
        for key, value in schema.items():
            if key == "if":
                continue
            if key in ("properties", "$defs"):
                for name, sub in value.items():
                    yield from walk(sub, f"{where}/{key}/{name}")
            else:
                yield from walk(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, item in enumerate(schema):
            yield from walk(item, f"{where}/{i}")


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    return DEFS[ref.rsplit("/", 1)[1]] if ref else schema


def test_shipped_copy_is_identical() -> None:
    packaged = (ROOT / "runner" / "data" / "sequence.schema.json").read_bytes()
    assert (ROOT / "schemas" / "sequence.schema.json").read_bytes() == packaged
    assert json.loads(packaged) == SCHEMA


def test_shipped_config_schema_copy_is_identical() -> None:
    packaged = (ROOT / "runner" / "data" / "config.schema.json").read_bytes()
    assert (ROOT / "schemas" / "config.schema.json").read_bytes() == packaged


def test_action_enum_matches_model() -> None:
    generic = next(then["properties"]["action"]["enum"] for rule in DEFS["step"]["allOf"]
                   if "enum" in (then := rule["then"]).get("properties", {}).get("action", {}))
    assert tuple(generic) == model.ACTIONS
    assert {name[: -len("_step")] for name in DEFS if name.endswith("_step")} == (
        set(model.ACTIONS) | {"wait", "wait_for", "branch", "end"})


def test_wait_for_enum_matches_model() -> None:
    assert tuple(DEFS["wait_for_step"]["properties"]["wait_for"]["enum"]) == model.WAIT_EVENTS


def test_provider_enum_matches_registry() -> None:
    assert set(SCHEMA["properties"]["provider"]["enum"]) == set(CAPABILITIES)


def test_exit_enum_matches_model() -> None:
    assert tuple(DEFS["exit"]["oneOf"][0]["enum"]) == model.BUILTIN_EXITS


def test_weekdays_and_limits_match_model() -> None:
    assert tuple(DEFS["calendar"]["properties"]["days"]["items"]["enum"]) == model.WEEKDAYS
    limited = set(DEFS["limits"]["properties"]) - {"jitter", "warmup"}
    assert limited == set(model.LIMITED_ACTIONS)


def test_every_property_has_a_description() -> None:
    properties = [(f"{where}/properties/{name}", sub) for where, schema in walk(SCHEMA)
                  for name, sub in schema.get("properties", {}).items()]
    missing = [where for where, sub in properties if "description" not in sub and "description" not in resolve(sub)]
    assert missing == []
    assert len(properties) > 80  # the walk really visits the step definitions


def test_every_object_is_closed() -> None:
    """Objects with declared keys reject others; maps declare what their values may be."""
    open_objects = [where for where, schema in walk(SCHEMA)
                    if schema.get("type") == "object" and "properties" in schema
                    and schema.get("additionalProperties") is not False]
    maps_without_value_schema = [where for where, schema in walk(SCHEMA)
                                 if schema.get("type") == "object" and "properties" not in schema
                                 and "allOf" not in schema and "additionalProperties" not in schema]
    assert open_objects == []
    assert maps_without_value_schema == []
