"""The SQL types the mappers understand and the one canonical Python form of each.

Row values reach the mappers as the reader decoded them (text or already typed), from the
initial snapshot (psycopg types) or back from the reference state (JSON). Every consumer
compares and serializes values, so each is brought to one canonical form first: uuid -> lower
uuid.UUID, timestamp -> naive datetime in UTC (the schema's `timestamp` columns hold UTC; orjson
writes them with a Z), integer -> int, numeric -> Decimal, boolean -> bool, jsonb -> parsed value
(JSON null as `JSON_NULL`, so it stays distinct from SQL NULL). These are the types the reader
and psycopg already produce, so the common case costs one type check per column.
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson


class SqlType(enum.Enum):
    TEXT = "text"
    INTEGER = "integer"
    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    JSONB = "jsonb"
    UUID = "uuid"
    TIMESTAMP = "timestamp"
    DATE = "date"
    UNKNOWN = "unknown"  # an untyped string literal or NULL, typed by its context like in SQL
    ANY = "any"  # a column whose type the schema does not tell: checked while evaluating


class JsonNull:
    """The JSON value `null` inside a jsonb column, which SQL does not treat as NULL."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "JSON_NULL"

    def __reduce__(self) -> str:
        # pickled by name (the reference state pickles rows): it reads back as the one instance
        # that `is JSON_NULL` checks expect, not as a copy
        return "JSON_NULL"


JSON_NULL = JsonNull()

# PostgreSQL type names (as pglast reports them) -> our types.
TYPE_NAMES: dict[str, SqlType] = {
    "text": SqlType.TEXT, "varchar": SqlType.TEXT, "bpchar": SqlType.TEXT, "name": SqlType.TEXT,
    "int2": SqlType.INTEGER, "int4": SqlType.INTEGER, "int8": SqlType.INTEGER,
    "integer": SqlType.INTEGER, "bigint": SqlType.INTEGER, "smallint": SqlType.INTEGER,
    "numeric": SqlType.NUMERIC, "decimal": SqlType.NUMERIC,
    "bool": SqlType.BOOLEAN, "boolean": SqlType.BOOLEAN,
    "jsonb": SqlType.JSONB, "json": SqlType.JSONB,
    "uuid": SqlType.UUID,
    "timestamp": SqlType.TIMESTAMP, "timestamptz": SqlType.TIMESTAMP,
    "date": SqlType.DATE,
}

_TRUE_WORDS = ("true", "yes", "on", "1")
_FALSE_WORDS = ("false", "no", "off", "0")


def parse_boolean(text: str) -> bool:
    """PostgreSQL's boolin: the words and their unambiguous prefixes, any case, trimmed."""
    word = text.strip().lower()
    if word and word not in ("o",):
        if any(candidate.startswith(word) for candidate in _TRUE_WORDS):
            return True
        if any(candidate.startswith(word) for candidate in _FALSE_WORDS):
            return False
    raise ValueError(f"invalid input syntax for type boolean: {text!r}")


def parse_json(text: str | bytes) -> Any:
    value = orjson.loads(text)
    return JSON_NULL if value is None else value


def parse_timestamp(text: str) -> datetime:
    # The voucher schema's timestamps are `without time zone` holding UTC (SPEC §1).
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def canonical(sql_type: SqlType, value: Any) -> Any:
    """`value` (text as PostgreSQL prints it, or already typed) in its canonical form."""
    if value is None:
        return None
    converter = CANONICAL.get(sql_type)
    return value if converter is None else converter(value)


def _canonical_text(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


def _canonical_integer(value: Any) -> Any:
    return value if type(value) is int else int(value)


def _canonical_numeric(value: Any) -> Any:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _canonical_boolean(value: Any) -> Any:
    return value if isinstance(value, bool) else parse_boolean(str(value))


def _canonical_json(value: Any) -> Any:
    # The reader and psycopg hand jsonb over parsed (a str is a JSON string); only raw bytes
    # are still JSON text.
    return parse_json(value) if isinstance(value, bytes) else value


def _canonical_uuid(value: Any) -> Any:
    return value if type(value) is uuid.UUID else uuid.UUID(str(value))


def _canonical_timestamp(value: Any) -> Any:
    if type(value) is datetime:
        return value if value.tzinfo is None else value.astimezone(UTC).replace(tzinfo=None)
    try:
        return parse_timestamp(value)
    except ValueError:
        return value  # 'infinity' and friends have no datetime; keep PostgreSQL's spelling


def _canonical_date(value: Any) -> Any:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except ValueError:
        return value


CANONICAL = {
    SqlType.TEXT: _canonical_text,
    SqlType.INTEGER: _canonical_integer,
    SqlType.NUMERIC: _canonical_numeric,
    SqlType.BOOLEAN: _canonical_boolean,
    SqlType.JSONB: _canonical_json,
    SqlType.UUID: _canonical_uuid,
    SqlType.TIMESTAMP: _canonical_timestamp,
    SqlType.DATE: _canonical_date,
}


# The Python types of canonical values (NULL aside), for the no-conversion-needed check.
CANONICAL_TYPES: dict[SqlType, tuple[type, ...]] = {
    SqlType.TEXT: (str,),
    SqlType.INTEGER: (int,),
    SqlType.NUMERIC: (Decimal, int),
    SqlType.BOOLEAN: (bool,),
    SqlType.JSONB: (object,),
    SqlType.UUID: (uuid.UUID,),
    SqlType.TIMESTAMP: (datetime,),
    SqlType.DATE: (date,),
}


# Per type, the PostgreSQL type OIDs whose values the reader (`cdc_reader.loaders`) decodes
# straight into that type's canonical form: the canonical check passes, or the conversion would
# give the value back unchanged (timestamp and date text that `fromisoformat` rejects, e.g. BC
# dates, stays text both ways). Rows of a relation whose columns all decode so need no check
# (`TableSchema.decoded_canonical`). Types missing here take any value as it comes (jsonb, and
# columns of types the mappers do not know); a timestamptz column needs the per-row conversion.
DECODED_CANONICAL: dict[SqlType, frozenset[int]] = {
    SqlType.TEXT: frozenset({25, 1043, 1042, 19}),  # text, varchar, bpchar, name
    SqlType.INTEGER: frozenset({20, 21, 23}),  # int8, int2, int4
    SqlType.NUMERIC: frozenset({1700, 20, 21, 23}),  # numeric, and integers (int is canonical)
    SqlType.BOOLEAN: frozenset({16}),
    SqlType.UUID: frozenset({2950}),
    SqlType.TIMESTAMP: frozenset({1114}),  # timestamp without time zone
    SqlType.DATE: frozenset({1082}),
}


def parse_literal(sql_type: SqlType, text: str) -> Any:
    """A string literal cast to `sql_type`, as PostgreSQL's input function reads it."""
    if sql_type in (SqlType.TEXT, SqlType.UNKNOWN, SqlType.ANY):
        return text
    if sql_type is SqlType.INTEGER:
        return int(text.strip())
    if sql_type is SqlType.NUMERIC:
        return Decimal(text.strip())
    if sql_type is SqlType.BOOLEAN:
        return parse_boolean(text)
    if sql_type is SqlType.JSONB:
        return parse_json(text)
    if sql_type is SqlType.UUID:
        return uuid.UUID(text.strip())
    if sql_type is SqlType.TIMESTAMP:
        return parse_timestamp(text.strip())
    return date.fromisoformat(text.strip())


def json_default(value: Any) -> Any:
    """orjson's fallback for the canonical values it does not know."""
    if value is JSON_NULL:
        return None
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"cannot serialize {type(value).__name__}")


def jsonb_text(value: Any) -> str:
    """A jsonb value as PostgreSQL prints it (`->>` on a non-string element, `::text`)."""
    if isinstance(value, dict):
        # jsonb keeps object keys ordered by length, then bytewise.
        keys = sorted(value, key=lambda key: (len(key.encode()), key.encode()))
        return "{" + ", ".join(f"{_json_string(key)}: {jsonb_text(value[key])}" for key in keys) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_text(item) for item in value) + "]"
    if isinstance(value, str):
        return _json_string(value)
    if value is JSON_NULL or value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _json_string(text: str) -> str:
    escaped = "".join(
        _ESCAPES.get(char) or (f"\\u{ord(char):04x}" if ord(char) < 0x20 else char) for char in text
    )
    return f'"{escaped}"'


def json_equal(left: Any, right: Any) -> bool:
    """jsonb equality: like Python's, except that booleans are not numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, (int, float, Decimal)) and isinstance(right, (int, float, Decimal)):
        return left == right
    return type(left) is type(right) and left == right
