"""JSON columns: a document's text is exactly json.dumps' (sorted keys, compact, not ASCII-escaped,
anything else as its str), whichever way it is built (issue 6 builds documents without json.dumps)."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from runner.store.fields import JSONField


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


@pytest.mark.parametrize("value", [
    {},
    {"b": 1, "a": [1, 2.5, float("nan"), float("inf"), None, True, 10**30, (1, 2)], "é": "ü\n\"\u2028",
     "t": dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "n": {"z": {}, "y": []}},
    {1: "x", 2: 3},
    {True: 1, False: 2},
    [3, {"b": 1, "a": 2}],
    "text",
])
def test_a_document_is_stored_as_json_dumps_writes_it(value: Any) -> None:
    assert JSONField().db_value(value) == _dumps(value)


def test_what_json_dumps_refuses_is_refused() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ValueError, match="Circular reference detected"):
        JSONField().db_value(loop)
    with pytest.raises(TypeError, match="'<' not supported"):
        JSONField().db_value({1: "x", "2": 3})
