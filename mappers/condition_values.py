"""What the generated condition code calls where SQL's semantics have no single Python
expression (mappers/conditions.py writes the rest in place): a jsonb field, and a comparison
whose operand types are known only at run time."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from mappers.sqltypes import JSON_NULL, SqlType, jsonb_text, parse_literal


def compare_typed_at_run_time(compare: Callable[[Any, Any], bool], a: Any, b: Any) -> bool:
    """A comparison of two non-NULL values of which one may be an untyped literal (`Untyped`),
    typed by the other, as SQL types an unknown literal by what it meets."""
    if type(b) is Untyped:
        b = b.like(a)
    elif type(a) is Untyped:
        a = a.like(b)
    return compare(a, b)


class Untyped:
    """An untyped literal compared with a column of unknown type: typed by the value it meets."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def like(self, value: Any) -> Any:
        if isinstance(value, bool):
            return parse_literal(SqlType.BOOLEAN, self.text)
        if isinstance(value, int):
            return parse_literal(SqlType.INTEGER, self.text)
        if isinstance(value, (dict, list)):
            return parse_literal(SqlType.JSONB, self.text)
        if isinstance(value, uuid.UUID):
            return parse_literal(SqlType.UUID, self.text)
        return self.text


def json_field(container: Any, selector: Any, as_text: bool) -> Any:
    """`container -> selector` (`->>` with `as_text`): the element, None when either is NULL or
    there is no such element; `->>` gives a JSON null as NULL and other elements as their text."""
    if container is None or selector is None:
        return None
    element = _json_element(container, selector)
    if not as_text or element is None:
        return element
    if element is JSON_NULL:
        return None
    return element if isinstance(element, str) else jsonb_text(element)


def _json_element(container: Any, selector: Any) -> Any:
    """The element, JSON_NULL for a JSON null element, None (SQL NULL) when there is none."""
    if isinstance(selector, str):
        if not isinstance(container, dict) or selector not in container:
            return None
        element = container[selector]
    else:
        if not isinstance(container, (dict, list)):
            container = [container]  # jsonb subscripts a scalar as a one-element array
        if not isinstance(container, list) or not -len(container) <= selector < len(container):
            return None
        element = container[selector]
    return JSON_NULL if element is None else element
