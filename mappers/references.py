"""References: where a rule finds its customer, campaign, voucher, tenant or payload row.

A reference starts at the changed row (`new.col`, `old.col`, `row.col`, or the whole `new` /
`old` / `row`; `row` is the new row, or the old one when the row goes) and may hop through the
reference state: `new.voucher_id > voucher.campaign_id` looks the voucher up by the value and
takes its `campaign_id`; a trailing `> orders` yields the whole looked-up row. This is a path,
not SQL, so it is split on its separators; conditions are the SQL part of a rule. The mapper
runs a reference as code written in place (mappers/codegen.py, `reference_code`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Row = Mapping[str, Any]
Lookup = Callable[[str, Any], Row | None]
Resolve = Callable[[Row, Row], Any]  # (new, old) -> the referenced value (codegen.reference_function)

SIDES = ("new", "old", "row")


class ReferenceSyntaxError(ValueError):
    """A reference is malformed."""


@dataclass(frozen=True, slots=True)
class Hop:
    table: str
    column: str | None  # None: the whole row


@dataclass(frozen=True, slots=True)
class Reference:
    text: str
    side: str  # "new" | "old" | "row"
    column: str | None  # None: the whole row
    hops: tuple[Hop, ...]

    @property
    def tables(self) -> tuple[str, ...]:
        """The reference-state tables this reference reads."""
        return tuple(hop.table for hop in self.hops)

    @property
    def yields_row(self) -> bool:
        return (self.hops[-1].column if self.hops else self.column) is None


def parse_reference(text: str) -> Reference:
    steps = [step.strip() for step in text.split(">")]
    side, _, column = steps[0].partition(".")
    if side not in SIDES or (column and "." in column) or (_ and not column):
        raise ReferenceSyntaxError(f"reference {text!r} must start with new, old or row (optionally .column)")
    hops = []
    for step in steps[1:]:
        table, dot, hop_column = step.partition(".")
        if not table or (dot and not hop_column) or "." in hop_column:
            raise ReferenceSyntaxError(f"reference {text!r}: a hop is 'table' or 'table.column', not {step!r}")
        hops.append(Hop(table, hop_column or None))
    if hops and column == "":
        raise ReferenceSyntaxError(f"reference {text!r}: a whole row cannot be looked up; name a column")
    for hop in hops[:-1]:
        if hop.column is None:
            raise ReferenceSyntaxError(f"reference {text!r}: only the last hop may name a whole row")
    return Reference(text, side, column or None, tuple(hops))
