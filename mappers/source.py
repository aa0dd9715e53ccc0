"""Python source written at run time and compiled once: the mapper's generated functions
(mappers/codegen.py) and the payload objects' builders (mappers/payload.py). `Source` holds the
lines and the values the code refers to by name; `compile_source` runs it with them as its
globals and checks, before the first call, that it reads no name it was not given.
"""

from __future__ import annotations

import builtins
import dis
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import CodeType
from typing import Any


def python_name(text: str) -> str:
    """`text` as a Python name: what is not an ASCII letter, digit or "_" becomes "_", and a
    leading digit gets one before it."""
    return re.sub(r"\W|^(?=\d)", "_", text, flags=re.ASCII)


@dataclass
class Source:
    """Python source being written, with the values it refers to by name."""

    lines: list[str] = field(default_factory=list)
    bindings: dict[str, Any] = field(default_factory=dict)
    level: int = 0
    temporaries: int = 0

    def line(self, text: str) -> None:
        self.lines.append("    " * self.level + text)

    @contextmanager
    def indent(self) -> Iterator[None]:
        self.level += 1
        try:
            yield
        finally:
            self.level -= 1

    def when(self, condition: str, *statements: str) -> None:
        """`if condition:` and its statements."""
        self.line(f"if {condition}:")
        with self.indent():
            for statement in statements:
                self.line(statement)

    def either(self, condition: str, statement: str, otherwise: str) -> None:
        """`if condition:` one statement, `else:` the other."""
        self.when(condition, statement)
        self.line("else:")
        with self.indent():
            self.line(otherwise)

    def bind(self, prefix: str, value: Any) -> str:
        """A global name for `value` (the same name for the same object). The prefix may come
        from the catalog (a payload object's name): it is made a Python name (`python_name`)."""
        prefix = python_name(prefix)
        for name, bound in self.bindings.items():
            if bound is value and name.startswith(prefix):
                return name
        name = f"{prefix}_{len(self.bindings)}"
        self.bindings[name] = value
        return name

    def temporary(self) -> str:
        """A fresh local name (for a condition's intermediate values: `_v<n>`)."""
        self.temporaries += 1
        return f"_v{self.temporaries}"

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def compile_source(out: Source, runtime: dict[str, Any], filename: str) -> dict[str, Any]:
    """Executes the source with its bindings and `runtime` as globals; returns them. A global
    name the code reads that neither binds is an error here, not at the first change."""
    names: dict[str, Any] = {**runtime, **out.bindings}
    code = compile(out.text(), filename, "exec")
    defined = {instruction.argval for instruction in dis.get_instructions(code) if instruction.opname == "STORE_NAME"}
    missing = _global_names(code) - defined - names.keys() - vars(builtins).keys()
    if missing:
        raise NameError(f"generated code reads unbound names: {', '.join(sorted(missing))}")
    exec(code, names)  # noqa: S102 - our own generated source
    return names


def _global_names(code: CodeType) -> set[str]:
    """The global names read by the code and the functions it defines."""
    found = {instruction.argval for instruction in dis.get_instructions(code)
             if instruction.opname == "LOAD_GLOBAL"}
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            found |= _global_names(constant)
    return found
