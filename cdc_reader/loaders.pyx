# cython: language_level=3, boundscheck=False, wraparound=False
"""Python values from pgoutput's text-format column values, loaded by psycopg's own loaders (the
C code that loads query results), so a change carries what a SELECT of the row returns.

Loaded are the types whose values the mappers and the store understand: bool, bytea, the
integers and oid, float4/8, numeric, date, timestamp, timestamptz (aware, in UTC), uuid, json
and jsonb. Every other type (text types, enums, intervals, arrays, ...) stays text, because
psycopg's values for them (timedelta, lists, ...) are not what events and the reference state
carry. Values Python cannot represent do not stop the stream: 'infinity' becomes the type's max
('-infinity' its min), as psycopg's documentation suggests, and the rest (years BC or past 9999)
stay the server's text. Dates and times must come in DateStyle ISO (the session sets it).
Compiled with Cython (setup.py) for `json_loads`, which runs once per json/jsonb value.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

import orjson
import psycopg
from psycopg.adapt import AdaptersMap, Loader, Transformer
from psycopg.pq import Format

LOADED_TYPES = (
    "bool", "bytea", "int2", "int4", "int8", "oid", "float4", "float8", "numeric", "date",
    "timestamp", "timestamptz", "uuid",
)
_TEXT = Format.TEXT
_TYPES = psycopg.postgres.types
cdef enum:
    LONG_DIGIT_RUN = 19  # digits in a row that may be an integer beyond 64 bits
cdef object _orjson_loads = orjson.loads, _OrjsonError = orjson.JSONDecodeError


def json_loads(data: bytes) -> Any:
    """psycopg's json/jsonb `loads`: orjson, except where it would lose precision or refuse:
    integers beyond 64 bits (a run of 19 digits may be one) become floats in orjson and numbers
    beyond a double's range are errors, while json.loads keeps both as psycopg does."""
    return _json_loads(data)


class JsonTextLoader(Loader):
    """json and jsonb values in text format, parsed by `json_loads` in one compiled call (psycopg's
    own loader runs a Python method and then `loads` for each value)."""

    def load(self, data):
        return _json_loads(data)


cdef object _json_loads(object data):
    if type(data) is not bytes:
        data = bytes(data)
    if not _has_digit_run(PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), LONG_DIGIT_RUN):
        try:
            return _orjson_loads(data)
        except _OrjsonError:
            pass
    return json.loads(data)


cdef bint _has_digit_run(const char* text, Py_ssize_t size, Py_ssize_t length) noexcept:
    """Whether `text` holds `length` ASCII digits in a row. Such a run covers one of every
    `length`-th bytes, so only those are looked at until one is a digit."""
    cdef Py_ssize_t probe = length - 1, start, end
    while probe < size:
        if ord("0") <= text[probe] <= ord("9"):
            start = end = probe
            while start > 0 and ord("0") <= text[start - 1] <= ord("9"):
                start -= 1
            while end + 1 < size and ord("0") <= text[end + 1] <= ord("9"):
                end += 1
            if end - start + 1 >= length:
                return True
            probe = end + length  # the next run lies wholly past this one
        else:
            probe += length
    return False


def _adapters() -> AdaptersMap:
    adapters = AdaptersMap(types=_TYPES)
    # A type without a loader of its own takes the loader of the unknown type: text.
    adapters.register_loader(0, psycopg.adapters.get_loader(0, _TEXT))
    for name in LOADED_TYPES:
        oid = _TYPES[name].oid
        adapters.register_loader(oid, psycopg.adapters.get_loader(oid, _TEXT))
    for name in ("json", "jsonb"):
        adapters.register_loader(name, JsonTextLoader)
    return adapters


ADAPTERS = _adapters()

_AWARE_MAX = datetime.max.replace(tzinfo=timezone.utc)
_AWARE_MIN = datetime.min.replace(tzinfo=timezone.utc)
# type OID -> the values of 'infinity' and '-infinity'
_INFINITY = {
    _TYPES["date"].oid: (date.max, date.min),
    _TYPES["timestamp"].oid: (datetime.max, datetime.min),
    _TYPES["timestamptz"].oid: (_AWARE_MAX, _AWARE_MIN),
}


class RowLoader:
    """Loads the column values of one relation's rows (psycopg's Transformer, its loaders chosen
    once from the relation's type OIDs)."""

    __slots__ = ("type_oids", "load_sequence", "_loaders")

    def __init__(self, type_oids: Sequence[int]) -> None:
        self.type_oids = tuple(type_oids)
        transformer = Transformer(ADAPTERS)
        transformer.set_loader_types(self.type_oids, _TEXT)
        # One C call per row; raises psycopg.DataError on a value Python cannot represent,
        # which `load_each` then handles (`load` does both).
        self.load_sequence = transformer.load_sequence
        self._loaders = tuple(transformer.get_loader(oid, _TEXT).load for oid in self.type_oids)

    def load(self, values: Sequence[bytes | None]) -> Sequence[Any]:
        """Text-format values (None for NULL), one per column, as Python values."""
        try:
            return self.load_sequence(values)
        except psycopg.DataError:
            return self.load_each(values)

    def load_each(self, values: Sequence[bytes | None], keep: Sequence[bool] = ()) -> list[Any]:
        """`load`, value by value; the values that `keep` marks (binary ones) stay as they are."""
        loaded: list[Any] = []
        for index, (value, load, oid) in enumerate(zip(values, self._loaders, self.type_oids)):
            if value is None or (keep and keep[index]):
                loaded.append(value)
                continue
            try:
                loaded.append(load(value))
            except psycopg.DataError:
                loaded.append(_unrepresentable(bytes(value).decode(), oid))
        return loaded


def _unrepresentable(text: str, type_oid: int) -> Any:
    highest, lowest = _INFINITY.get(type_oid, (text, text))
    if text == "infinity":
        return highest
    if text == "-infinity":
        return lowest
    return text  # e.g. "0044-03-15 BC": keep the server's text
