"""Python values from pgoutput's text-format column values, chosen once per column by type OID.

`converter_for(type_oid)` returns a function str -> value that yields what psycopg returns for the
same column (uuid.UUID, int, bool, Decimal, datetime, date, parsed JSON...). Unknown types stay
text. Dates and times are parsed in DateStyle ISO, which the replication connection must use (as
PostgreSQL's own subscriber does). Values Python cannot represent (years BC or past 9999) stay
text rather than stopping the stream; 'infinity' maps to the type's max (min for '-infinity'),
as psycopg's documentation suggests. `StreamConverters` is the same for one stream's rows, with
a memory of the ids it parsed last.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timezone
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import orjson

Converter = Callable[[str], Any]

_LONG_DIGIT_RUN = re.compile(r"\d{19}")


def text_value(value: str) -> str:
    """The converter of text types and unknown types: the text itself."""
    return value


def _bool(value: str) -> bool:
    return value == "t"


def _bytea(value: str) -> bytes | str:
    # bytea_output = 'hex' (the default) writes \x followed by hex digits
    return bytes.fromhex(value[2:]) if value.startswith("\\x") else value


_new_object = object.__new__
_set_uuid_int = uuid.UUID.__dict__["int"].__set__
_set_uuid_safety = uuid.UUID.__dict__["is_safe"].__set__
_UUID_SAFETY = uuid.SafeUUID.unknown  # what uuid.UUID(text) sets


def _uuid(value: str) -> uuid.UUID:
    # uuid.UUID(text) accepts braces, URNs and missing dashes, and sets its slots through
    # object.__setattr__; the server always writes the canonical 36 characters, and filling
    # the slots directly is over twice as fast (tests/bench/decode.py). Same value, same type.
    result = _new_object(uuid.UUID)
    _set_uuid_int(result, int(value.replace("-", ""), 16))
    _set_uuid_safety(result, _UUID_SAFETY)
    return result


def _json(value: str) -> Any:
    # orjson turns integers outside the 64-bit range (which json/jsonb allow) into floats;
    # json.loads, which psycopg uses, keeps them exact. A run of 19 digits may be such an integer.
    if _LONG_DIGIT_RUN.search(value) is None:
        return orjson.loads(value)
    return json.loads(value)


def _timestamp(value: str) -> datetime | str:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return _special(value, datetime.max, datetime.min)


_AWARE_MAX = datetime.max.replace(tzinfo=timezone.utc)
_AWARE_MIN = datetime.min.replace(tzinfo=timezone.utc)


def _timestamptz(value: str) -> datetime | str:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return _special(value, _AWARE_MAX, _AWARE_MIN)


def _date(value: str) -> date | str:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return _special(value, date.max, date.min)


def _special(value: str, highest: Any, lowest: Any) -> Any:
    if value == "infinity":
        return highest
    if value == "-infinity":
        return lowest
    return value  # e.g. "0044-03-15 BC": keep the server's text


_UUID_OID = 2950

_CONVERTERS: MappingProxyType[int, Converter] = MappingProxyType({
    16: _bool,  # bool
    17: _bytea,  # bytea
    20: int,  # int8
    21: int,  # int2
    23: int,  # int4
    26: int,  # oid
    114: _json,  # json
    700: float,  # float4
    701: float,  # float8
    1082: _date,  # date
    1114: _timestamp,  # timestamp
    1184: _timestamptz,  # timestamptz
    1700: Decimal,  # numeric
    _UUID_OID: _uuid,  # uuid
    3802: _json,  # jsonb
})


def converter_for(type_oid: int) -> Converter:
    """The function that turns a text-format value of this type into its Python value; text
    types (text, varchar, bpchar, name) and types we do not know return the text unchanged."""
    return _CONVERTERS.get(type_oid, text_value)


class StreamConverters:
    """`converter_for`, for the rows of one replication stream.

    Ids recur from row to row (a tenant's in all its rows, a customer's in its redemptions, a
    row's own in its updates), and parsing a uuid costs more than looking it up: the uuid
    converter remembers the values it parsed last. Rows may share them (UUIDs are immutable).
    """

    def __init__(self, remembered_ids: int = 4096) -> None:
        self._uuid = _remembering(_uuid, remembered_ids)

    def for_type(self, type_oid: int) -> Converter:
        return self._uuid if type_oid == _UUID_OID else converter_for(type_oid)


def _remembering(convert: Converter, capacity: int) -> Converter:
    memory: dict[str, Any] = {}

    def convert_remembering(text: str) -> Any:
        value = memory.get(text)
        if value is None:
            if len(memory) >= capacity:
                memory.clear()  # the ids in use come back within a few rows
            value = memory[text] = convert(text)
        return value

    return convert_remembering
