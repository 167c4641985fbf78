"""Column types: UTC datetimes stored as fixed-width text, and JSON documents stored as text."""
from __future__ import annotations

import datetime as dt
import json
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any, TypeVar

import peewee

_FMT = "%Y-%m-%d %H:%M:%S.%f"
T = TypeVar("T")


#: Texts of times converted lately, both ways: a tick writes and reads the same few times (its
#: `now`, the slots it plans) for every lead. (A datetime is immutable, so one may be shared. Only
#: UTC datetimes are kept: in another zone, two different instants may be equal keys, as equality
#: within one zone ignores `fold`.)
_TEXTS: dict[dt.datetime, str] = {}
_TIMES: dict[str, dt.datetime] = {}
_KEPT = 4096


def to_db_time(value: dt.datetime) -> str:
    """Aware datetime -> naive-UTC text that sorts correctly as a string."""
    if value.tzinfo is not dt.UTC:
        return _to_db_time(value)
    text = _TEXTS.get(value)
    return _keep(_TEXTS, value, _to_db_time(value)) if text is None else text


def _to_db_time(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: seqrun stores only timezone-aware times")
    utc = value.astimezone(dt.UTC)
    if utc.year < 1000:  # (strftime does not pad such years: keep its text)
        return utc.strftime(_FMT)
    return utc.replace(tzinfo=None).isoformat(" ", "microseconds")  # the same text as _FMT, several times faster


def from_db_time(value: str) -> dt.datetime:
    time = _TIMES.get(value)
    return _keep(_TIMES, value, _from_db_time(value)) if time is None else time


def _keep(kept: dict[Any, T], key: Any, value: T) -> T:
    """Remember `value` under `key` (at most `_KEPT` entries: all dropped when full) and return it."""
    if len(kept) >= _KEPT:
        kept.clear()
    kept[key] = value
    return value


def _from_db_time(value: str) -> dt.datetime:
    # fromisoformat reads "YYYY-MM-DD HH:MM:SS.ffffff" and is far faster than strptime; reading the
    # zone with it is several times faster than `replace(tzinfo=...)` afterwards (text that already
    # names a zone, or is a date alone, takes the second way, as before).
    try:
        parsed = dt.datetime.fromisoformat(value + "+00:00")
    except ValueError:
        parsed = None
    if parsed is not None and parsed.tzinfo is not None:  # (a date alone drops the zone)
        return parsed
    return dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)


#: The JSON decoder's own scanner: what `json.loads` ends up calling, without its layers around it
#: (half the time of reading a lead's facts, and every woken lead's row has several documents).
_SCAN = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def read_json(text: Any) -> Any:
    """`json.loads(text)`: the document the text holds. Text that is not exactly one document with
    nothing around it (no whitespace either, as this store writes them), and anything that is not
    text, goes through `json.loads`, which reads it, or raises, as it always did."""
    if type(text) is not str:
        return json.loads(text)  # (bytes, and whatever else a driver may give)
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


class UTCDateTimeField(peewee.Field):
    field_type = "TEXT"

    if TYPE_CHECKING:  # peewee is `Any` to mypy: on a model, the field reads and takes any value, as peewee's do
        def __get__(self, instance: object, owner: Any) -> Any: ...
        def __set__(self, instance: object, value: Any) -> None: ...

    def db_value(self, value: dt.datetime | str | None) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return to_db_time(value)

    def python_value(self, value: str | None) -> dt.datetime | None:
        return None if value is None else from_db_time(value)


class JSONField(peewee.TextField):
    if TYPE_CHECKING:  # as UTCDateTimeField's
        def __get__(self, instance: object, owner: Any) -> Any: ...
        def __set__(self, instance: object, value: Any) -> None: ...

    def db_value(self, value: Any) -> str | None:
        if value is None:
            return None
        if type(value) is dict and c_make_encoder is not None:
            # What the json.dumps below does for a document, without building a JSONEncoder for each
            # (a tick writes the facts of every lead): its C encoder, with its arguments.
            return "".join(c_make_encoder({}, str, encode_basestring, None, ":", ",", True, False, True)(value, 0))
        # default=str: provider payloads may carry datetimes and the like; store them as text.
        return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else read_json(value)


class IntBooleanField(peewee.Field):
    """A boolean kept as INTEGER 0/1, as the migrations declare it on both backends (Postgres does
    not take True for an integer column)."""
    field_type = "INTEGER"

    if TYPE_CHECKING:  # as UTCDateTimeField's
        def __get__(self, instance: object, owner: Any) -> Any: ...
        def __set__(self, instance: object, value: Any) -> None: ...

    def db_value(self, value: Any) -> int | None:
        return None if value is None else int(bool(value))

    def python_value(self, value: Any) -> bool | None:
        return None if value is None else bool(value)
